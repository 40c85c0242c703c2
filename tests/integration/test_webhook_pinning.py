"""A production delivery connects to the addresses it checked, over real TLS: a receiver on 127.0.0.1 with a
certificate from a private CA for names that resolve nowhere, so a delivery reaches it only through the
address it was given, and only with the name checked against the certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app.domain.webhooks.delivery import post, resolve
from tests.certificates import certificate, new_key, write

pytestmark = pytest.mark.anyio

# Under .test, which never resolves (RFC 2606); the receiver's certificate names the first two.
NAME = "hooks.quickvisit.test"
OTHER_NAME = "api.quickvisit.test"
UNCERTIFIED_NAME = "elsewhere.quickvisit.test"


@dataclass
class TlsReceiver:
    port: int
    ca: Path
    hosts: list[str] = field(default_factory=list)  # each request's Host header
    server_names: list[str | None] = field(default_factory=list)  # each TLS handshake's SNI
    connections: set[int] = field(default_factory=set)  # the client ports requests came from

    def url(self, name: str) -> str:
        return f"https://{name}:{self.port}/in"


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsReceiver]:
    certs = tmp_path_factory.mktemp("webhook-tls")
    ca_key, server_key = new_key(), new_key()
    write(certs, "ca", certificate("Test private CA", ca_key, None), ca_key)
    issued = certificate("receiver", server_key, ("Test private CA", ca_key), names=(NAME, OTHER_NAME))
    write(certs, "server", issued, server_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.crt", certs / "server.key")
    state = TlsReceiver(port=0, ca=certs / "ca.crt")

    def note_server_name(_socket: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
        state.server_names.append(server_name)

    context.sni_callback = note_server_name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps a connection open unless the client asks to close it

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hosts.append(self.headers.get("Host", ""))
            state.connections.add(self.client_address[1])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, object]:
            connection, address = super().get_request()
            return context.wrap_socket(connection, server_side=True), address

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def trusting_client(tls_receiver: TlsReceiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=tls_receiver.ca)) as client:
        yield client


@pytest.fixture(autouse=True)
def fresh(tls_receiver: TlsReceiver) -> None:
    tls_receiver.hosts.clear()
    tls_receiver.server_names.clear()
    tls_receiver.connections.clear()


async def send(client: httpx.AsyncClient, url: str, addresses: list[str]) -> httpx.Response:
    return await post(client, url, addresses, b"{}", {"Content-Type": "application/json"}, 5.0)


async def test_the_names_resolve_nowhere() -> None:
    # What the other tests rest on: a request reaches the receiver only through the address given.
    for name in (NAME, OTHER_NAME, UNCERTIFIED_NAME):
        with pytest.raises(OSError):
            await resolve(name, 443)


async def test_a_pinned_delivery_reaches_the_address_with_the_name_in_host_and_tls(
    tls_receiver: TlsReceiver, trusting_client: httpx.AsyncClient
) -> None:
    response = await send(trusting_client, tls_receiver.url(NAME), ["127.0.0.1"])
    assert response.status_code == 204
    assert tls_receiver.hosts == [f"{NAME}:{tls_receiver.port}"]
    assert tls_receiver.server_names == [NAME]


async def test_the_certificate_is_checked_against_the_name_not_the_address(
    tls_receiver: TlsReceiver, trusting_client: httpx.AsyncClient
) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await send(trusting_client, tls_receiver.url(UNCERTIFIED_NAME), ["127.0.0.1"])
    assert tls_receiver.hosts == []


async def test_two_names_at_one_address_never_share_a_connection(
    tls_receiver: TlsReceiver, trusting_client: httpx.AsyncClient
) -> None:
    for name in (NAME, OTHER_NAME, NAME):
        assert (await send(trusting_client, tls_receiver.url(name), ["127.0.0.1"])).status_code == 204
    assert tls_receiver.server_names == [NAME, OTHER_NAME, NAME]  # a TLS session of its own each time
    assert len(tls_receiver.connections) == 3


async def test_an_address_that_refuses_the_connection_gives_way_to_the_next(
    tls_receiver: TlsReceiver, trusting_client: httpx.AsyncClient
) -> None:
    # Nothing listens on 127.0.0.2 (the receiver is bound to 127.0.0.1 only): refused, then the next.
    response = await send(trusting_client, tls_receiver.url(NAME), ["127.0.0.2", "127.0.0.1"])
    assert response.status_code == 204
    assert tls_receiver.hosts == [f"{NAME}:{tls_receiver.port}"]
    with pytest.raises(httpx.ConnectError):
        await send(trusting_client, tls_receiver.url(NAME), ["127.0.0.2"])
