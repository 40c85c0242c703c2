"""POST /api/secret-scanning/github: GitHub's secret-scanning partner reports of our keys found in public.

Not behind the API-key guard: a report is authenticated by GitHub's signature over its raw body. The checks
come before any change: the address's rate limit (429), the body's size (413), the signature (401, or 503
while GitHub's keys cannot be had), the report's shape (422, mapped with the other domain errors). Then every live key in it is revoked at once,
and the answer is GitHub's feedback array, which says which tokens were ours and live, never whose.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Router, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import HeaderParameter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.problems import ApiProblem, problem_handler
from app.domain.api_keys import leaks
from app.domain.api_keys.authentication import KeyStore
from app.domain.api_keys.rate_limit import SLIDING_WINDOW_SCRIPT, decision_from_reply
from app.domain.api_keys.services import ApiKeyService
from app.lib.clock import Clock
from app.lib.github_signatures import GitHubPublicKeys, KeysUnavailable, SignatureError

logger = logging.getLogger(__name__)

PATH: Final = "/api/secret-scanning"
# Reports per client address per minute; GitHub sends one per batch of findings, so this is generous.
REPORTS_PER_MINUTE: Final = 120
_WINDOW_US: Final = 60 * 1_000_000
KEYS_RETRY_AFTER_S: Final = 30


class TokenFeedbackOut(msgspec.Struct):
    token_hash: str
    token_type: str
    label: str


async def _over_rate_limit(redis: Redis, address: str) -> int:
    """0 while the address may send another report, else the seconds until it may: at most
    REPORTS_PER_MINUTE in any 60 seconds, by the API keys' sliding-window script. Fails open (logged)."""
    script = redis.register_script(SLIDING_WINDOW_SCRIPT)  # EVALSHA, and EVAL after NOSCRIPT
    try:
        reply = await script(keys=[f"secret-scanning:{{{address}}}"], args=[REPORTS_PER_MINUTE, _WINDOW_US])
        decision = decision_from_reply(reply, REPORTS_PER_MINUTE)
    except (RedisError, OSError) as exc:
        logger.warning("secret-scanning rate limit is failing open: Redis is unreachable (%s)", exc)
        return 0
    return 0 if decision.allowed else max(decision.reset_seconds, 1)


@post("/github", request_max_body_size=leaks.MAX_REPORT_BYTES, status_code=200, include_in_schema=False)
async def github_report(
    request: Request[Any, Any, Any],
    db_session: NamedDependency[AsyncSession],
    redis: NamedDependency[Redis],
    key_store: NamedDependency[KeyStore],
    clock: NamedDependency[Clock],
    github_keys: NamedDependency[GitHubPublicKeys],
    key_identifier: Annotated[
        str | None, HeaderParameter(name="Github-Public-Key-Identifier", required=False)
    ] = None,
    signature: Annotated[
        str | None, HeaderParameter(name="Github-Public-Key-Signature", required=False)
    ] = None,
) -> list[TokenFeedbackOut]:
    address = request.client.host if request.client else "unknown"
    if wait := await _over_rate_limit(redis, address):
        raise ApiProblem(
            429,
            "rate_limited",
            f"Too many reports from this address; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    body = await request.body()
    try:
        await github_keys.verify(key_identifier, signature, body)
    except SignatureError as exc:
        raise ApiProblem(401, "invalid_signature", f"The report is not signed by GitHub: {exc}.") from exc
    except KeysUnavailable as exc:
        logger.error("cannot verify a secret-scanning report: %s", exc)
        raise ApiProblem(
            503,
            "signature_keys_unavailable",
            "GitHub's public keys cannot be had right now, so the report cannot be verified. Retry later.",
            headers={"Retry-After": str(KEYS_RETRY_AFTER_S)},
        ) from exc
    tokens = leaks.parse_report(body)
    feedback = await ApiKeyService(session=db_session).handle_leak_report(
        key_store, tokens, now=clock(), reporter_address=address
    )
    revoked = sum(item.label == "true_positive" for item in feedback)
    if revoked:
        logger.warning("secret scanning: %d live key(s) found in public and revoked", revoked)
    return [TokenFeedbackOut(item.token_hash, item.token_type, item.label) for item in feedback]


def create_secret_scanning_router(key_store: KeyStore, github_keys: GitHubPublicKeys) -> Router:
    return Router(
        path=PATH,
        route_handlers=[github_report],
        dependencies={
            "key_store": Provide(lambda: key_store, sync_to_thread=False),
            "github_keys": Provide(lambda: github_keys, sync_to_thread=False),
        },
        exception_handlers={HTTPException: problem_handler, Exception: problem_handler},
        include_in_schema=False,
    )
