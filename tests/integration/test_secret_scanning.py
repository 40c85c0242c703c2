"""GitHub secret-scanning reports: signed reports revoke live keys at once; forged or malformed ones change nothing.

The signer is a P-256 key pair made here and published in a keys file of GitHub's shape, read by the app
through GITHUB_SECRET_SCANNING_KEYS_FILE, as an air-gapped install would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.asgi import create_app
from app.domain.api_keys import leaks, rules
from app.domain.api_keys.models import ApiKey, LeakedKeyAlert
from app.domain.audit.models import AuditEvent
from app.lib.db import transaction
from app.settings import Settings
from tests.api_helpers import assert_problem, bearer, key_id_of, make_key
from tests.fixtures.app import alchemy_of, dispose_engines
from tests.fixtures.staff import PASSWORD, Staff, csrf_token, sign_in
from tests.secret_scanning_helpers import LEAK_URL, REPORT_PATH, REPORTED_TYPE, GitHubSigner, report_body

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
HTMX = {"HX-Request": "true"}


@pytest.fixture
def signer() -> GitHubSigner:
    return GitHubSigner()


@pytest.fixture
def settings(settings: Settings, signer: GitHubSigner, tmp_path: Path) -> Settings:
    """The suite's settings, with GitHub's keys read from a file holding the test signer's public key."""
    keys_file = signer.write_keys_file(tmp_path / "github-keys.json")
    return dataclasses.replace(settings, github_secret_scanning_keys_file=keys_file)


async def post_report(client: Client, signer: GitHubSigner, body: bytes, **headers: str) -> Any:
    return await client.post(REPORT_PATH, content=body, headers={**signer.headers(body), **headers})


async def key_row(app: Litestar, key: str) -> ApiKey:
    async with transaction(alchemy_of(app)) as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == rules.hash_key(key)))
    assert row is not None
    return row


async def audit_events(app: Litestar) -> list[AuditEvent]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.created_at))).all())


async def alerts(app: Litestar) -> list[LeakedKeyAlert]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(LeakedKeyAlert).order_by(LeakedKeyAlert.created_at))).all())


async def count(app: Litestar, model: Any) -> int:
    async with transaction(alchemy_of(app)) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def unknown_key() -> str:
    """Well formed, right checksum, issued by nobody."""
    return rules.generate_key()


def bad_checksum(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


def feedback(token: str, label: str, token_type: str = REPORTED_TYPE) -> dict[str, str]:
    return {"token_hash": rules.hash_key(token), "token_type": token_type, "label": label}


# --- What a signed report does -----------------------------------------------------------------------


async def test_a_signed_report_revokes_a_live_key_and_its_next_request_gets_401(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    assert (await client.get("/api/v1/services", headers=bearer(key))).status_code == 200

    response = await post_report(client, signer, report_body(key))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [feedback(key, "true_positive")]
    assert_problem(await client.get("/api/v1/services", headers=bearer(key)), 401, "key_revoked")

    (event,) = [event for event in await audit_events(app) if event.action == "api_key.revoked"]
    assert event.actor_label == "GitHub secret scanning"
    assert event.actor_user_id is None
    assert event.ip_address  # the reporter's address, as for any revocation
    assert event.organization_id == studio.organization.id
    assert event.subject_id == await key_id_of(app, key)
    assert event.details["reason"] == (
        f"revoked automatically: found public at {LEAK_URL}, reported by GitHub secret scanning"
    )
    (alert,) = await alerts(app)
    assert alert.organization_id == studio.organization.id
    assert alert.api_key_id == event.subject_id
    assert alert.url == LEAK_URL
    assert alert.dismissed_at is None
    assert key not in repr(event.details) + event.subject_label + alert.key_label


async def test_each_kind_of_token_gets_its_label_and_only_live_keys_change(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff, signer: GitHubSigner
) -> None:
    live = await make_key(app, studio)
    theirs = await make_key(app, other_studio)
    revoked = await make_key(app, studio)
    assert (await post_report(client, signer, report_body(revoked))).json()[0]["label"] == "true_positive"
    revoked_at = (await key_row(app, revoked)).revoked_at
    unknown, typo = unknown_key(), bad_checksum(await make_key(app, studio))
    events_before = len(await audit_events(app))
    junk = "qv_pk_not-a-key"

    body = report_body(live, revoked, unknown, typo, theirs, junk)
    response = await post_report(client, signer, body)

    assert response.status_code == 200, response.text
    assert response.json() == [
        feedback(live, "true_positive"),
        feedback(revoked, "false_positive"),
        feedback(unknown, "false_positive"),
        feedback(typo, "false_positive"),
        feedback(theirs, "true_positive"),
        feedback(junk, "false_positive"),
    ]
    # Never whose key it was: nothing about either organization in the answer.
    for staff in (studio, other_studio):
        for secret in (str(staff.organization.id), staff.organization.slug, staff.organization.name):
            assert secret not in response.text
    assert set(response.json()[0]) == {"token_hash", "token_type", "label"}

    for key in (live, theirs):
        assert_problem(await client.get("/api/v1/services", headers=bearer(key)), 401, "key_revoked")
    assert (await key_row(app, revoked)).revoked_at == revoked_at  # reported again: unchanged
    new_events = (await audit_events(app))[events_before:]
    assert sorted((event.organization_id, event.subject_id) for event in new_events) == sorted(
        [
            (studio.organization.id, await key_id_of(app, live)),
            (other_studio.organization.id, await key_id_of(app, theirs)),
        ]
    )
    # Each organization is alerted about its own key only.
    by_org = {alert.organization_id: alert.api_key_id for alert in await alerts(app)}
    assert by_org[other_studio.organization.id] == await key_id_of(app, theirs)


async def test_reporting_a_revoked_key_again_is_a_false_positive_and_writes_nothing(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    first = await post_report(client, signer, report_body(key))
    assert first.json() == [feedback(key, "true_positive")]
    events, alert_count = len(await audit_events(app)), await count(app, LeakedKeyAlert)

    again = await post_report(client, signer, report_body(key, key))

    assert again.json() == [feedback(key, "false_positive"), feedback(key, "false_positive")]
    assert len(await audit_events(app)) == events
    assert await count(app, LeakedKeyAlert) == alert_count


async def test_a_key_listed_twice_in_one_report_is_revoked_once(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    response = await post_report(client, signer, report_body(key, key))
    assert response.json() == [feedback(key, "true_positive"), feedback(key, "true_positive")]
    assert await count(app, LeakedKeyAlert) == 1
    assert [event.action for event in await audit_events(app)].count("api_key.revoked") == 1


async def test_two_reports_racing_on_one_key_revoke_it_once(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    body = report_body(key)
    responses = await asyncio.gather(*(post_report(client, signer, body) for _ in range(2)))
    labels = sorted(response.json()[0]["label"] for response in responses)
    assert labels == ["false_positive", "true_positive"]
    assert await count(app, LeakedKeyAlert) == 1
    assert [event.action for event in await audit_events(app)].count("api_key.revoked") == 1


async def test_an_expired_key_is_a_false_positive(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    from datetime import UTC, datetime, timedelta

    key = await make_key(app, studio, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    response = await post_report(client, signer, report_body(key))
    assert response.json() == [feedback(key, "false_positive")]
    assert (await key_row(app, key)).revoked_at is None
    assert await count(app, LeakedKeyAlert) == 0


async def test_control_characters_in_the_url_and_type_are_dropped_before_they_are_stored(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    body = report_body(key, url="https://github.com/a/b\u0000/c\n", token_type="qv\u0000key")
    response = await post_report(client, signer, body)
    assert response.json() == [feedback(key, "true_positive", token_type="qvkey")]
    (alert,) = await alerts(app)
    assert alert.url == "https://github.com/a/b/c"


# --- Forged and malformed reports change nothing ------------------------------------------------------


async def assert_nothing_changed(client: Client, app: Litestar, key: str) -> None:
    assert (await client.get("/api/v1/services", headers=bearer(key))).status_code == 200
    assert (await key_row(app, key)).revoked_at is None
    assert await count(app, LeakedKeyAlert) == 0
    assert [event.action for event in await audit_events(app)] == ["api_key.created"]


async def test_a_tampered_body_is_refused_with_401_and_nothing_is_revoked(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    signed = report_body(unknown_key())
    tampered = report_body(key)
    response = await client.post(REPORT_PATH, content=tampered, headers=signer.headers(signed))
    assert_problem(response, 401, "invalid_signature")
    await assert_nothing_changed(client, app, key)


async def test_a_wrong_key_identifier_is_refused_with_401_and_nothing_is_revoked(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    body = report_body(key)
    response = await client.post(REPORT_PATH, content=body, headers=signer.headers(body, identifier="f" * 64))
    assert_problem(response, 401, "invalid_signature")
    await assert_nothing_changed(client, app, key)


@pytest.mark.parametrize(
    "case", ["no headers", "no signature", "not base64", "another private key", "signature of nothing"]
)
async def test_a_missing_or_bad_signature_is_refused_with_401(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner, case: str
) -> None:
    key = await make_key(app, studio)
    body = report_body(key)
    headers = signer.headers(body)
    if case == "no headers":
        headers = {"Content-Type": "application/json"}
    elif case == "no signature":
        del headers["Github-Public-Key-Signature"]
    elif case == "not base64":
        headers["Github-Public-Key-Signature"] = "%%% not base64 %%%"
    elif case == "another private key":
        headers["Github-Public-Key-Signature"] = signer.signature(
            body, ec.generate_private_key(ec.SECP256R1())
        )
    else:
        headers["Github-Public-Key-Signature"] = signer.signature(b"")
    assert_problem(await client.post(REPORT_PATH, content=body, headers=headers), 401, "invalid_signature")
    await assert_nothing_changed(client, app, key)


async def test_any_key_github_publishes_may_sign(
    app: Litestar, studio: Staff, signer: GitHubSigner, settings: Settings, tmp_path: Path
) -> None:
    """GitHub lists older keys beside the current one; a report signed by a listed older key counts."""
    older = ec.generate_private_key(ec.SECP256R1())
    assert settings.github_secret_scanning_keys_file is not None
    signer.write_keys_file(settings.github_secret_scanning_keys_file, ("older-key", older))
    key = await make_key(app, studio)
    body = report_body(key)
    async with AsyncTestClient(app) as client:
        headers = {
            "Github-Public-Key-Identifier": "older-key",
            "Github-Public-Key-Signature": signer.signature(body, older),
        }
        response = await client.post(REPORT_PATH, content=body, headers=headers)
    assert response.json() == [feedback(key, "true_positive")]


async def test_a_body_over_1_mib_is_refused_with_413(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    items = [{"token": key, "type": "t", "url": "https://x" + "y" * 1000, "source": "s"}] * 1100
    body = json.dumps(items).encode()
    assert len(body) > leaks.MAX_REPORT_BYTES
    assert_problem(await post_report(client, signer, body), 413, "payload_too_large")
    await assert_nothing_changed(client, app, key)


async def test_more_than_1000_tokens_are_refused_with_422(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    body = report_body(key, *[unknown_key() for _ in range(1000)])
    assert len(body) <= leaks.MAX_REPORT_BYTES
    assert_problem(await post_report(client, signer, body), 422, "too_many_tokens")
    await assert_nothing_changed(client, app, key)


async def test_1000_tokens_are_answered(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    key = await make_key(app, studio)
    body = report_body(key, *[unknown_key() for _ in range(999)])
    response = await post_report(client, signer, body)
    assert response.status_code == 200
    labels = [item["label"] for item in response.json()]
    assert labels == ["true_positive"] + ["false_positive"] * 999


@pytest.mark.parametrize("body", [b"not json", b'{"token": "x"}', b'[{"type": "t"}]', b"[1]"])
async def test_a_signed_body_that_is_not_a_report_is_refused_with_422(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner, body: bytes
) -> None:
    key = await make_key(app, studio)
    assert_problem(await post_report(client, signer, body), 422, "invalid_report")
    await assert_nothing_changed(client, app, key)


async def test_reports_are_rate_limited_per_address(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    from app.api.secret_scanning import REPORTS_PER_MINUTE

    body = report_body(unknown_key())
    for _ in range(REPORTS_PER_MINUTE):
        # Forged ones count too: that is what the limit is for.
        assert (await client.post(REPORT_PATH, content=body)).status_code == 401
    key = await make_key(app, studio)
    refused = await post_report(client, signer, report_body(key))
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    await assert_nothing_changed(client, app, key)


# --- GitHub's keys cannot be had: refused, never accepted -------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_when_githubs_keys_cannot_be_fetched_reports_get_503_and_nothing_changes(
    settings: Settings, studio: Staff, signer: GitHubSigner
) -> None:
    unreachable = dataclasses.replace(
        settings,
        github_secret_scanning_keys_file=None,
        github_secret_scanning_keys_url=f"http://127.0.0.1:{closed_port()}/meta/public_keys/secret_scanning",
    )
    application = create_app(unreachable)
    try:
        key = await make_key(application, studio)
        async with AsyncTestClient(application) as client:
            body = report_body(key)
            response = await post_report(client, signer, body)
            problem = assert_problem(response, 503, "signature_keys_unavailable")
            assert "Retry later" in problem["detail"]
            assert response.headers["retry-after"]
            assert (await client.get("/api/v1/services", headers=bearer(key))).status_code == 200
    finally:
        await dispose_engines(application)


# --- The banner on the API Keys pages ----------------------------------------------------------------


async def leak(client: Client, app: Litestar, staff: Staff, signer: GitHubSigner) -> tuple[str, uuid.UUID]:
    key = await make_key(app, staff)
    assert (await post_report(client, signer, report_body(key))).json()[0]["label"] == "true_positive"
    return key, await key_id_of(app, key)


def banner_ids(html: str) -> list[str]:
    return re.findall(r'id="leak-alert-([0-9a-f-]{36})"', html)


async def test_every_admin_sees_the_banner_until_one_dismisses_it(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    from app.domain.accounts.services import NewUser, UserService

    async with transaction(alchemy_of(app)) as session:
        second = await UserService(session=session).create_user(
            studio.organization, NewUser("second-admin@studio.test", PASSWORD, "admin")
        )
    key, key_id = await leak(client, app, studio, signer)
    (alert,) = await alerts(app)

    await sign_in(client, studio.admin)
    index = await client.get("/settings/api-keys")
    assert banner_ids(index.text) == [str(alert.id)]
    assert "was found in public and has been revoked" in index.text
    assert f'href="{LEAK_URL}"' in index.text
    assert rules.display_prefix(key) in index.text and key not in index.text
    # The row says Revoked, nothing else.
    row = re.search(rf'<tr id="key-{key_id}">.*?</tr>', index.text, re.S)
    assert row is not None and '<span class="badge revoked">Revoked</span>' in row.group(0)
    usage = await client.get(f"/settings/api-keys/{key_id}/usage")
    assert banner_ids(usage.text) == [str(alert.id)]

    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, second)
    assert banner_ids((await client.get("/settings/api-keys")).text) == [str(alert.id)]
    dismissed = await client.post(
        f"/settings/api-keys/alerts/{alert.id}/dismiss", headers={**HTMX, "x-csrftoken": csrf_token(client)}
    )
    assert dismissed.status_code == 200
    assert dismissed.text == ""
    assert "Alert dismissed" in dismissed.headers["hx-trigger"]
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})

    await sign_in(client, studio.admin)
    assert banner_ids((await client.get("/settings/api-keys")).text) == []
    assert banner_ids((await client.get(f"/settings/api-keys/{key_id}/usage")).text) == []
    (alert,) = await alerts(app)
    assert alert.dismissed_by_id == second.id and alert.dismissed_at is not None


async def test_dismiss_works_as_a_plain_form_and_returns_to_the_page_it_came_from(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    _key, key_id = await leak(client, app, studio, signer)
    _key, other_key_id = await leak(client, app, studio, signer)
    first, second = await alerts(app)
    await sign_in(client, studio.admin)
    token = csrf_token(client)
    key_page = f"/settings/api-keys/{key_id}/usage"
    assert banner_ids((await client.get(key_page)).text) == [str(first.id)]  # only this key's banner

    back = await client.post(
        f"/settings/api-keys/alerts/{first.id}/dismiss",
        data={"_csrf_token": token, "return_to": key_page},
        follow_redirects=False,
    )
    assert back.status_code == 303 and back.headers["location"] == key_page
    elsewhere = await client.post(
        f"/settings/api-keys/alerts/{second.id}/dismiss",
        data={"_csrf_token": token, "return_to": "https://evil.example/"},
        follow_redirects=False,
    )
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/settings/api-keys"
    assert banner_ids((await client.get("/settings/api-keys")).text) == []
    assert other_key_id != key_id


async def test_only_the_organizations_admins_see_or_dismiss_its_banner(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff, signer: GitHubSigner
) -> None:
    await leak(client, app, studio, signer)
    (alert,) = await alerts(app)

    await sign_in(client, other_studio.admin)
    assert banner_ids((await client.get("/settings/api-keys")).text) == []
    response = await client.post(
        f"/settings/api-keys/alerts/{alert.id}/dismiss", headers={**HTMX, "x-csrftoken": csrf_token(client)}
    )
    assert response.status_code == 404
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})

    await sign_in(client, studio.staff)
    response = await client.post(
        f"/settings/api-keys/alerts/{alert.id}/dismiss", headers={**HTMX, "x-csrftoken": csrf_token(client)}
    )
    assert response.status_code == 403
    (alert,) = await alerts(app)
    assert alert.dismissed_at is None


async def test_the_audit_log_page_says_why_the_key_was_revoked(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    await leak(client, app, studio, signer)
    await sign_in(client, studio.admin)
    page = await client.get("/settings/audit-log")
    assert "GitHub secret scanning" in page.text
    assert (
        f"revoked automatically: found public at {LEAK_URL}, reported by GitHub secret scanning" in page.text
    )


async def test_the_alert_outlives_its_key(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner
) -> None:
    _key, key_id = await leak(client, app, studio, signer)
    await sign_in(client, studio.admin)
    await client.post(
        f"/settings/api-keys/{key_id}/delete",
        data={"_csrf_token": csrf_token(client), "confirm_name": "Test key"},
    )
    (alert,) = await alerts(app)
    assert alert.api_key_id is None
    assert banner_ids((await client.get("/settings/api-keys")).text) == [str(alert.id)]


async def test_no_log_line_contains_a_reported_key(
    client: Client, app: Litestar, studio: Staff, signer: GitHubSigner, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    for name in ("app", "litestar", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    live, unknown = await make_key(app, studio), unknown_key()
    forged = report_body(unknown)
    await client.post(REPORT_PATH, content=forged, headers={"Github-Public-Key-Identifier": "x"})
    response = await post_report(client, signer, report_body(live, unknown))
    assert [item["label"] for item in response.json()] == ["true_positive", "false_positive"]
    assert caplog.records
    for key in (live, unknown):
        assert key not in caplog.text
