"""Delivering the outbox: claim what is due, POST it signed, and record the attempt.

At least once, by event id: a worker claims a delivery for a lease (longer than the 10 s timeout), and a
worker that dies mid-attempt leaves it to be tried again once the lease is over, with the same event id and
body, so a receiver that keeps the ids it has seen processes each event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.audit.services import Actor, AuditLogService
from app.domain.webhooks import rules
from app.domain.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.lib.clock import Clock
from app.lib.db import own_transaction, writer_engine

logger = logging.getLogger(__name__)

DELIVERY_ACTOR = Actor(label="Webhook delivery")
USER_AGENT = "QuickVisit-Webhooks/1"
BATCH = 20

Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The host's addresses; OSError when it has none, as for a name that cannot be a DNS name at all
    (an empty or over-long label fails IDNA encoding with UnicodeError before any lookup)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except UnicodeError as exc:
        raise socket.gaierror(socket.EAI_NONAME, f"not a host name: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: uuid.UUID
    lease: datetime
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Deliverer:
    engine: AsyncEngine
    clock: Clock
    secret_key: str
    production: bool
    client: httpx.AsyncClient
    resolve: Resolve = resolve
    batch: int = BATCH
    timeout_s: float = rules.TIMEOUT_S

    async def run(self) -> int:
        """Deliver what is due now, up to a batch; the number of attempts made."""
        claimed = await self._claim(self.batch)
        # One delivery's failure (its lease runs out and it is retried) must not cut the others short.
        outcomes = await asyncio.gather(*(self._deliver(item) for item in claimed), return_exceptions=True)
        for item, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.error(
                    "webhooks: delivery %s failed, retried after its lease",
                    item.delivery_id,
                    exc_info=outcome,
                )
        return len(claimed)

    async def _claim(self, limit: int) -> list[Claimed]:
        now = self.clock()
        lease = now + rules.LEASE
        async with own_transaction(writer_engine(self.engine)) as session:
            rows = (
                await session.execute(
                    select(WebhookDelivery.id, WebhookDelivery.attempts)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until <= now),
                        WebhookEndpoint.enabled.is_(True),
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )
            ).all()
            for row in rows:
                # Counted when taken: an attempt cut short by a crash may have reached the receiver.
                await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id)
                    .values(leased_until=lease, attempts=row.attempts + 1, updated_at=now)
                )
        return [Claimed(row.id, lease, row.attempts + 1) for row in rows]

    async def _deliver(self, claimed: Claimed) -> None:
        async with own_transaction(self.engine) as session:
            row = (
                await session.execute(
                    select(WebhookEvent, WebhookEndpoint)
                    .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.id == claimed.delivery_id)
                )
            ).first()
        if row is None:  # the endpoint was removed since the claim, and its deliveries with it
            return
        event, endpoint = row.WebhookEvent, row.WebhookEndpoint
        outcome = await self.send(endpoint, event)
        await self._record(claimed, event, endpoint, outcome)

    async def send(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        problem, addresses = await self.checked(endpoint.url)
        if problem:
            return Outcome(None, f"refused: {problem}", took())
        body = event.body.encode()
        secret = rules.secret_for(self.secret_key, endpoint.secret_salt)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            rules.EVENT_ID_HEADER: str(event.id),
            rules.SIGNATURE_HEADER: rules.signature(secret, int(self.clock().timestamp()), body),
        }
        try:
            response = await post(self.client, endpoint.url, addresses, body, headers, self.timeout_s)
        except httpx.TimeoutException:
            return Outcome(None, "timeout", took())
        except httpx.HTTPError as error:
            return Outcome(None, f"connection error: {type(error).__name__}", took())
        return Outcome(response.status_code, "", took())

    async def checked(self, url: str) -> tuple[str | None, list[str]]:
        """Why this URL may not be called now (SSRF), or None and, in production, the addresses checked,
        which the delivery then connects to."""
        if problem := rules.url_problem(url, production=self.production):
            return problem, []
        if not self.production:
            return None, []
        parts = urlsplit(url)
        assert parts.hostname is not None  # checked by url_problem
        try:
            addresses = await self.resolve(parts.hostname, parts.port or 443)
        except OSError:
            return "the host name does not resolve", []
        if not addresses or rules.refused_addresses(addresses):
            return f"{parts.hostname} resolves to a private, loopback or link-local address", []
        return None, addresses

    async def _record(
        self, claimed: Claimed, event: WebhookEvent, endpoint: WebhookEndpoint, outcome: Outcome
    ) -> None:
        now = self.clock()
        delivered = outcome.status_code is not None and 200 <= outcome.status_code < 300
        refused = outcome.error.startswith("refused")
        retry_at = (
            rules.next_attempt(event.created_at, now, claimed.attempt)
            if not delivered and not refused and rules.is_retryable(outcome.status_code)
            else None
        )
        async with own_transaction(writer_engine(self.engine)) as session:
            # The endpoint first, so that its deliveries' records queue on it rather than deadlock; NO KEY
            # UPDATE on PostgreSQL: attempts referencing it (KEY SHARE) need not wait.
            current = await session.get(WebhookEndpoint, endpoint.id, with_for_update={"key_share": True})
            if current is None:
                return
            # Fenced by the lease: a worker that outlived it records nothing over its successor's attempt.
            values: dict[str, object] = {"leased_until": None, "updated_at": now}
            if delivered:
                values |= {"status": "delivered", "delivered_at": now}
            elif retry_at is not None:
                values |= {"next_attempt_at": retry_at}
            else:
                values |= {"status": "failed"}
            result = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.leased_until == claimed.lease
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return
            session.add(
                WebhookAttempt(
                    delivery_id=claimed.delivery_id,
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    event_type=event.type,
                    attempt=claimed.attempt,
                    status_code=outcome.status_code,
                    error=outcome.error[:500],
                    duration_ms=outcome.duration_ms,
                    created_at=now,
                    updated_at=now,
                )
            )
            if delivered:
                current.failing_since = None
            else:
                current.failing_since = current.failing_since or now
                if current.enabled and now - current.failing_since >= rules.DISABLE_AFTER:
                    current.enabled = False
                    current.disabled_reason = "Every delivery failed for 3 days."
                    await AuditLogService(session=session).record(
                        current.organization_id,
                        DELIVERY_ACTOR,
                        "webhook_endpoint.disabled",
                        current.id,
                        current.url,
                        {
                            "reason": current.disabled_reason,
                            "failing_since": current.failing_since.isoformat(),
                        },
                    )
                    logger.warning("webhooks: disabled endpoint %s after 3 days of failures", current.id)


async def post(
    client: httpx.AsyncClient,
    url: str,
    addresses: Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> httpx.Response:
    """POST `body` to `url`, never following a redirect. Given addresses, connects to them (the next when one
    refuses the connection) instead of resolving the host name again: a name re-pointed at a private address
    between the check and the connection (DNS rebinding) cannot reach it. The name still goes in the Host
    header and TLS (SNI and the certificate check). Such a connection is closed after its answer: a pooled one
    is keyed by address, and another host name at that address must get a TLS session checked for its own."""
    if not addresses:
        return await client.post(
            url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False
        )
    target = httpx.URL(url)
    pinned_headers = {**headers, "Host": target.netloc.decode("ascii"), "Connection": "close"}
    extensions = {"sni_hostname": target.raw_host.decode("ascii")}

    async def to(address: str) -> httpx.Response:
        return await client.post(
            target.copy_with(host=address),
            content=body,
            headers=pinned_headers,
            timeout=timeout_s,
            follow_redirects=False,
            extensions=extensions,
        )

    for address in addresses[:-1]:
        with contextlib.suppress(httpx.ConnectError):
            return await to(address)
    return await to(addresses[-1])
