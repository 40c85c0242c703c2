"""Webhooks end to end: events written with their change, delivered signed by the worker, retried with
backoff, refused for private addresses in production, and an endpoint failing for 3 days disabled."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.models import AuditEvent
from app.domain.audit.services import CLI_ACTOR
from app.domain.errors import InvalidFields
from app.domain.webhooks import rules, services
from app.domain.webhooks.delivery import Claimed, Deliverer
from app.domain.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.lib.clock import SettableClock
from app.lib.db import transaction
from app.settings import PROJECT_ROOT
from tests.api_helpers import bearer, key_id_of, make_key
from tests.booking_helpers import bookable_service, booking, days_ahead, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff
from tests.webhook_helpers import add_endpoint, deliverer, receiver

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def book(
    client: Client, key: str, service: Any, at: str, idempotency_key: str, days: int = 2
) -> dict[str, Any]:
    response = await client.post(
        RESERVATIONS,
        json=booking(service, local(days_ahead(days), at)),
        headers=bearer(key, **{"Idempotency-Key": idempotency_key}),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def rows(app: Litestar, model: Any) -> list[Any]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(model))).all())


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver([503, 429]) as hook:
        added = await add_endpoint(app, studio, hook.url)
        created = await book(client, key, service, "10:00", "k1")
        worker = deliverer(app, clock, http_client)
        assert await worker.run() == 1
        assert await worker.run() == 0  # not due yet: backing off
        for _ in range(2):
            clock.advance(rules.LONGEST_WAIT)
            assert await worker.run() == 1
        clock.advance(rules.LONGEST_WAIT)
        assert await worker.run() == 0  # delivered: nothing more

    assert len(hook.received) == 3 and len(set(hook.event_ids)) == 1
    bodies = {item.body for item in hook.received}
    assert len(bodies) == 1
    event = json.loads(bodies.pop())
    assert event["id"] == hook.event_ids[0] and event["type"] == "reservation.created"
    assert event["data"]["id"] == created["id"] and event["data"]["status"] == "confirmed"
    assert "manage_url" not in event["data"]  # the customer's link is no one else's
    for item in hook.received:
        assert item.headers["content-type"] == "application/json"
        assert rules.verify(
            added.secret, item.headers["quickvisit-signature"], item.body, int(clock().timestamp()), 10**6
        )
        assert not rules.verify(
            added.secret + "x",
            item.headers["quickvisit-signature"],
            item.body,
            int(clock().timestamp()),
            10**6,
        )
    (delivery,) = await rows(app, WebhookDelivery)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    attempts = sorted(await rows(app, WebhookAttempt), key=lambda attempt: attempt.attempt)
    assert [(a.attempt, a.status_code, a.event_type) for a in attempts] == [
        (1, 503, "reservation.created"),
        (2, 429, "reservation.created"),
        (3, 200, "reservation.created"),
    ]


async def test_cancel_and_key_events_each_arrive_once(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver() as hook:
        await add_endpoint(app, studio, hook.url, ["reservation.cancelled", "api_key.revoked"])
        created = await book(client, key, service, "10:00", "k1")  # not subscribed: no event
        for attempt in ("c1", "c2"):  # cancelling twice changes once
            cancelled = await client.post(
                f"{RESERVATIONS}/{created['id']}/cancel", headers=bearer(key, **{"Idempotency-Key": attempt})
            )
            assert cancelled.status_code == 200
        key_id = await key_id_of(app, key)
        async with transaction(alchemy_of(app)) as session:
            keys = ApiKeyService(session=session)
            revoked = await keys.revoke(await keys.get(key_id), actor=CLI_ACTOR, now=clock())
            await keys.revoke(revoked, actor=CLI_ACTOR, now=clock())  # again: nothing happens
        leaked = await make_key(app, studio)
        leaked_id = await key_id_of(app, leaked)
        async with transaction(alchemy_of(app)) as session:
            await ApiKeyService(session=session).revoke_found_in_public(
                leaked_id, url="https://github.com/x/y", now=clock()
            )
        worker = deliverer(app, clock, http_client)
        await worker.run()
    events = sorted((json.loads(item.body) for item in hook.received), key=lambda event: event["created_at"])
    assert sorted(event["type"] for event in events) == [
        "api_key.revoked",
        "api_key.revoked",
        "reservation.cancelled",
    ]
    assert len({event["id"] for event in events}) == 3 and len(hook.received) == 3
    cancelled_event = next(event for event in events if event["type"] == "reservation.cancelled")
    assert cancelled_event["data"]["status"] == "cancelled" and cancelled_event["data"]["id"] == created["id"]
    revocations = [event["data"] for event in events if event["type"] == "api_key.revoked"]
    assert {data["id"] for data in revocations} == {
        str(key_id),
        str(leaked_id),
    }
    assert all(key not in item.body.decode() and leaked not in item.body.decode() for item in hook.received)


async def test_a_leak_report_sends_api_key_leaked(
    app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        await add_endpoint(app, studio, hook.url, ["api_key.leaked"])
        leaked = await make_key(app, studio)
        leaked_id = await key_id_of(app, leaked)
        async with transaction(alchemy_of(app)) as session:
            await ApiKeyService(session=session).revoke_found_in_public(
                leaked_id, url="https://github.com/x/y", now=clock()
            )
        await deliverer(app, clock, http_client).run()
    (event,) = (json.loads(item.body) for item in hook.received)
    assert event["type"] == "api_key.leaked" and event["data"]["url"] == "https://github.com/x/y"
    assert event["data"]["prefix"] == leaked[:14] and leaked not in json.dumps(event)


async def test_a_refused_booking_writes_no_event(
    client: Client, app: Litestar, studio: Staff, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver() as hook:
        await add_endpoint(app, studio, hook.url)
        await book(client, key, service, "10:00", "k1")
        taken = await client.post(
            RESERVATIONS,
            json=booking(service, local(days_ahead(2), "10:00")),
            headers=bearer(key, **{"Idempotency-Key": "k2"}),
        )
        assert taken.status_code == 409
    assert [event.type for event in await rows(app, WebhookEvent)] == ["reservation.created"]


async def test_client_errors_are_not_retried_and_three_days_of_failures_disable_the_endpoint(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio, capacity=50)
    key = await make_key(app, studio)
    with receiver([410] + [500] * 200) as hook:
        await add_endpoint(app, studio, hook.url)
        worker = deliverer(app, clock, http_client)
        await book(client, key, service, "10:00", "first")
        assert await worker.run() == 1
        (gone,) = await rows(app, WebhookDelivery)
        assert (gone.status, gone.attempts) == ("failed", 1)  # a 410 is an answer: no retry
        await book(client, key, service, "10:00", "second")
        # Retries for 24 hours, then the delivery has failed; the endpoint keeps failing for 3 days.
        for _ in range(40):
            clock.advance(timedelta(hours=2))
            await worker.run()
        deliveries = await rows(app, WebhookDelivery)
        assert {delivery.status for delivery in deliveries} == {"failed"}
        (endpoint,) = await rows(app, WebhookEndpoint)
        assert endpoint.enabled and endpoint.failing_since is not None
        clock.advance(timedelta(days=2))
        await book(client, key, service, "10:00", "third", days=10)  # ahead of the moved clock
        await worker.run()
    (endpoint,) = await rows(app, WebhookEndpoint)
    assert not endpoint.enabled and "3 days" in endpoint.disabled_reason
    audit = [event for event in await rows(app, AuditEvent) if event.action == "webhook_endpoint.disabled"]
    assert len(audit) == 1 and audit[0].subject_id == endpoint.id
    async with transaction(alchemy_of(app)) as session:
        retried = await session.scalar(select(func.max(WebhookDelivery.attempts)))
    assert retried is not None and 5 < retried < 40  # backed off: far fewer tries than wake-ups


async def test_a_timeout_is_retried(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver() as hook:
        await add_endpoint(app, studio, hook.url)
        await book(client, key, service, "10:00", "k1")
        hook.hold = threading.Event()
        worker = deliverer(app, clock, http_client, timeout_s=0.2)
        assert await worker.run() == 1
        hook.hold.set()
        hook.hold = None
        clock.advance(rules.LONGEST_WAIT)
        assert await worker.run() == 1
    attempts = sorted(await rows(app, WebhookAttempt), key=lambda attempt: attempt.attempt)
    assert [(a.status_code, a.error) for a in attempts] == [(None, "timeout"), (200, "")]
    assert len(set(hook.event_ids)) == 1


# --- SSRF -------------------------------------------------------------------------------------------


def resolving_to(*addresses: str) -> Any:
    async def resolve(_host: str, _port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.5",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",  # noqa: S104  (an address refused, nothing bound)
    ],
)
async def test_production_refuses_urls_resolving_to_private_addresses(address: str) -> None:
    problem = await services.check_url(
        "https://hooks.example.com/in", production=True, resolver=resolving_to(address)
    )
    assert problem is not None and "private" in problem
    mixed = await services.check_url(
        "https://hooks.example.com/in", production=True, resolver=resolving_to("93.184.216.34", address)
    )
    assert mixed is not None  # one private address among public ones is enough to refuse


async def test_production_takes_https_to_public_addresses_only() -> None:
    public = resolving_to("93.184.216.34")
    assert await services.check_url("https://hooks.example.com/in", production=True, resolver=public) is None
    assert "https" in (
        await services.check_url("http://hooks.example.com/in", production=True, resolver=public) or ""
    )
    assert await services.check_url("http://127.0.0.1:8080/in", production=True, resolver=public) is not None
    # Outside production, plain http is for loopback only.
    assert await services.check_url("http://127.0.0.1:8080/in", production=False) is None
    assert await services.check_url("http://localhost:8080/in", production=False) is None
    assert await services.check_url("http://hooks.example.com/in", production=False) is not None
    for bad in (
        "ftp://example.com/",
        "https://",
        "https://user:pw@example.com/",
        "not a url",
        "https://example.com:99999/",
    ):
        assert await services.check_url(bad, production=False) is not None, bad


async def test_adding_a_refused_url_is_a_field_error(app: Litestar, studio: Staff) -> None:
    async with transaction(alchemy_of(app)) as session:
        with pytest.raises(InvalidFields) as refused:
            await services.add(
                session,
                studio.organization.id,
                "https://internal.example.com/",
                ["reservation.created", "nope"],
                secret_key="k" * 32,
                production=True,
                actor=CLI_ACTOR,
                resolver=resolving_to("10.0.0.5"),
            )
    assert [error.pointer for error in refused.value.errors] == ["/url", "/events"]
    assert await rows(app, WebhookEndpoint) == []


async def test_production_delivery_refuses_a_host_that_now_resolves_privately(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    """DNS can change after the endpoint was added: each delivery checks again."""
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver() as hook:
        await add_endpoint(app, studio, hook.url.replace("http://127.0.0.1", "https://localhost"))
        await book(client, key, service, "10:00", "k1")
        worker = deliverer(app, clock, http_client, production=True, resolve=resolving_to("127.0.0.1"))
        assert await worker.run() == 1
    assert hook.received == []
    (attempt,) = await rows(app, WebhookAttempt)
    assert attempt.status_code is None and attempt.error.startswith("refused")
    (delivery,) = await rows(app, WebhookDelivery)
    assert delivery.status == "failed"


async def test_production_delivery_connects_to_the_address_it_checked_not_to_a_second_answer(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    """DNS rebinding: a name that answers a public address for the check and a private one after it. The
    delivery resolves once and connects to what it checked, with the name in Host and TLS. The receiver
    stands in for a public host this test cannot reach."""
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    lookups: list[str] = []

    async def rebinding(host: str, _port: int) -> list[str]:
        lookups.append(host)
        return answers[min(len(lookups), len(answers)) - 1]

    sent: list[httpx.Request] = []

    def public_host(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    await add_endpoint(app, studio, "https://hooks.example.com:8443/in")
    await book(client, key, service, "10:00", "k1")
    async with httpx.AsyncClient(transport=httpx.MockTransport(public_host)) as http_client:
        worker = deliverer(app, clock, http_client, production=True, resolve=rebinding)
        assert await worker.run() == 1
    assert lookups == ["hooks.example.com"]
    (request,) = sent
    assert str(request.url) == "https://93.184.216.34:8443/in"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["connection"] == "close"
    (delivery,) = await rows(app, WebhookDelivery)
    assert delivery.status == "delivered"


# --- A worker killed mid-delivery -------------------------------------------------------------------


async def test_a_worker_killed_mid_delivery_leaves_it_to_be_delivered_once_by_event_id(
    client: Client,
    app: Litestar,
    studio: Staff,
    clock: SettableClock,
    http_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    settings = app.state.settings
    with receiver() as hook:
        hook.hold = threading.Event()  # the first delivery is held until the worker is dead
        added = await add_endpoint(app, studio, hook.url)
        await book(client, key, service, "10:00", "k1")
        environment = {name: value for name, value in os.environ.items() if name not in ("PORT",)}
        environment.update(
            APP_ENV="dev",
            DATABASE_URL=settings.database_url,
            REDIS_URL=settings.redis_url,
            SECRET_KEY=settings.secret_key,
            DATA_DIR=str(tmp_path / "worker"),
        )
        log = (tmp_path / "worker.log").open("w")
        worker = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "saq"),
            "app.workers.worker_settings",
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            arrived = await asyncio.to_thread(hook.arrived.wait, 60)
            assert arrived, (tmp_path / "worker.log").read_text()
        finally:
            worker.kill()  # SIGKILL: no cleanup, the attempt is cut short mid-request
            await worker.wait()
            log.close()
        hook.hold.set()
        hook.hold = None
        (held,) = await rows(app, WebhookDelivery)
        assert (held.status, held.attempts) == ("pending", 1) and held.leased_until is not None

        worker_in_test = deliverer(app, clock, http_client)
        assert await worker_in_test.run() == 0  # still leased by the dead worker
        clock.set(held.leased_until)
        assert await worker_in_test.run() == 1
        clock.advance(rules.LONGEST_WAIT)
        assert await worker_in_test.run() == 0

    assert len(hook.received) == 2 and len(set(hook.event_ids)) == 1  # the same event, by its id
    assert hook.received[0].body == hook.received[1].body
    assert all(
        rules.verify(added.secret, item.headers["quickvisit-signature"], item.body, int(time.time()), 3600)
        for item in hook.received
    )
    (delivery,) = await rows(app, WebhookDelivery)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [(attempt.attempt, attempt.status_code) for attempt in await rows(app, WebhookAttempt)] == [
        (2, 200)
    ]


@pytest.mark.parametrize("url", ["https://a..com/in", "https://" + "a" * 64 + ".example.com/in"])
async def test_a_host_name_that_cannot_be_looked_up_does_not_resolve(url: str) -> None:
    # An empty or over-long label: the real resolver fails before any DNS query.
    assert "does not resolve" in (await services.check_url(url, production=True) or "")


async def test_an_endpoint_removed_after_its_delivery_was_claimed_costs_the_others_nothing(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock, http_client: httpx.AsyncClient
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    with receiver() as kept, receiver() as removed:
        await add_endpoint(app, studio, kept.url)
        gone = await add_endpoint(app, studio, removed.url)
        await book(client, key, service, "10:00", "k1")
        endpoint_id = gone.endpoint.id

        class RemovingAfterTheClaim(Deliverer):
            async def _claim(self, limit: int) -> list[Claimed]:
                claimed = await super()._claim(limit)
                async with transaction(alchemy_of(app)) as session:
                    endpoint = await session.get_one(WebhookEndpoint, endpoint_id)
                    await services.remove(session, endpoint, actor=CLI_ACTOR)
                return claimed

        made = deliverer(app, clock, http_client)
        worker = RemovingAfterTheClaim(
            **{item.name: getattr(made, item.name) for item in dataclasses.fields(made)}
        )
        assert await worker.run() == 2
    assert len(kept.received) == 1 and removed.received == []
    (delivery,) = await rows(app, WebhookDelivery)
    assert delivery.status == "delivered"
