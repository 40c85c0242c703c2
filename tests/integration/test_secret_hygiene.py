"""The full key never reaches a log line: not while it is created, used, counted or rejected."""

from __future__ import annotations

import logging
import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.settings import Settings
from tests.api_helpers import bearer, key_id_of
from tests.fixtures.staff import csrf_token
from tests.usage_helpers import counted_requests, eventually, running_worker

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def test_no_log_line_contains_the_key(
    admin_client: Client, app: Litestar, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, from every logger, SAQ's job payloads included
    for name in ("saq", "app", "litestar", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    created = await admin_client.post(
        "/settings/api-keys",
        data={"name": "Logged?", "scopes": ["read"], "_csrf_token": csrf_token(admin_client)},
        headers={"HX-Request": "true"},
    )
    match = re.search(r"qv_pk_[0-9A-Za-z]{38}", created.text)
    assert match is not None
    key = match.group(0)
    async with running_worker(settings):
        await admin_client.get("/api/v1/services", headers=bearer(key))
        await admin_client.get("/api/v1/services", headers={"X-API-Key": key})
        await admin_client.get("/api/v1/packages/nope", headers=bearer(key))
        await admin_client.post("/api/v1/reservations", headers=bearer(key), json={})  # lacks the write scope
        await admin_client.get(
            "/api/v1/services", headers=bearer(key[:-1] + ("A" if key[-1] != "A" else "B"))
        )
        key_id = await key_id_of(app, key)
        await eventually(lambda: _counted(app, key_id, 4))

    logged = caplog.text
    # The capture saw the work: SQL, the worker's job, the requests.
    assert "api_keys" in logged and "fold_usage" in logged and "/api/v1/services" in logged
    assert key not in logged
    assert key[6:] not in logged  # nor its random part without the prefix
    assert key[6:30] not in logged


async def _counted(app: Litestar, key_id: object, expected: int) -> bool:
    return await counted_requests(app, key_id=key_id) == expected
