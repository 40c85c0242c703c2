"""GitHub's signatures on secret-scanning reports, and the cache of its public keys."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.lib.github_signatures import (
    GitHubPublicKeys,
    KeysUnavailable,
    SignatureError,
    parse_keys,
    url_source,
    verify,
)
from tests.secret_scanning_helpers import GitHubSigner

pytestmark = pytest.mark.anyio
BODY = b'[{"token":"qv_pk_x","type":"t","url":"u","source":"content"}]'


@pytest.fixture
def signer() -> GitHubSigner:
    return GitHubSigner()


def document(signer: GitHubSigner, *others: tuple[str, ec.EllipticCurvePrivateKey]) -> bytes:
    return json.dumps(signer.keys_document(*others)).encode()


def test_a_signature_by_the_key_verifies_and_any_change_fails(signer: GitHubSigner) -> None:
    key = parse_keys(document(signer))[signer.identifier]
    verify(key, signer.signature(BODY), BODY)
    with pytest.raises(SignatureError):
        verify(key, signer.signature(BODY), BODY + b" ")
    with pytest.raises(SignatureError):
        verify(key, signer.signature(BODY, ec.generate_private_key(ec.SECP256R1())), BODY)
    with pytest.raises(SignatureError):
        verify(key, "not base64!", BODY)


def test_keys_that_are_not_p256_public_keys_are_left_out(signer: GitHubSigner) -> None:
    other_curve = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other_curve.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    listed = signer.keys_document()
    listed["public_keys"] += [
        {"key_identifier": "p384", "key": pem, "is_current": False},
        {"key_identifier": "junk", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
    ]
    assert set(parse_keys(json.dumps(listed).encode())) == {signer.identifier}


@pytest.mark.parametrize("text", [b"", b"[]", b'{"public_keys": "x"}', b"<html>"])
def test_a_document_not_in_githubs_shape_means_no_keys(text: bytes) -> None:
    with pytest.raises(KeysUnavailable):
        parse_keys(text)


class Source:
    """What GitHub would answer, counted: the cache's behaviour is in how often it asks."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.fetches = 0
        self.fail = False

    async def __call__(self) -> bytes:
        self.fetches += 1
        if self.fail:
            raise KeysUnavailable("down")
        return self.body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_keys_are_fetched_once_and_cached_until_the_ttl(signer: GitHubSigner) -> None:
    source, clock = Source(document(signer)), Clock()
    keys = GitHubPublicKeys(source, ttl_s=3600, clock=clock)
    signature = signer.signature(BODY)
    await asyncio.gather(*(keys.verify(signer.identifier, signature, BODY) for _ in range(5)))
    assert source.fetches == 1
    clock.now += 3599
    await keys.verify(signer.identifier, signature, BODY)
    assert source.fetches == 1
    clock.now += 2
    await keys.verify(signer.identifier, signature, BODY)
    assert source.fetches == 2


async def test_an_unknown_identifier_refetches_at_most_once_a_minute(signer: GitHubSigner) -> None:
    source, clock = Source(document(signer)), Clock()
    keys = GitHubPublicKeys(source, refetch_interval_s=60, clock=clock)
    await keys.verify(signer.identifier, signer.signature(BODY), BODY)
    for _ in range(3):
        with pytest.raises(SignatureError):
            await keys.verify("rotated", signer.signature(BODY), BODY)
    assert source.fetches == 1  # forged identifiers cannot make us hammer GitHub

    rotated = ec.generate_private_key(ec.SECP256R1())
    source.body = document(signer, ("rotated", rotated))
    clock.now += 61
    await keys.verify("rotated", signer.signature(BODY, rotated), BODY)  # GitHub's new key is picked up
    assert source.fetches == 2


async def test_when_the_keys_cannot_be_had_nothing_verifies_and_retries_wait(signer: GitHubSigner) -> None:
    source, clock = Source(document(signer)), Clock()
    source.fail = True
    keys = GitHubPublicKeys(source, retry_after_failure_s=5, clock=clock)
    for _ in range(3):
        with pytest.raises(KeysUnavailable):
            await keys.verify(signer.identifier, signer.signature(BODY), BODY)
    assert source.fetches == 1
    source.fail = False
    clock.now += 5
    await keys.verify(signer.identifier, signer.signature(BODY), BODY)
    assert source.fetches == 2


async def test_missing_headers_are_a_signature_error_without_any_fetch(signer: GitHubSigner) -> None:
    source = Source(document(signer))
    keys = GitHubPublicKeys(source)
    for identifier, signature in ((None, "x"), ("id", None), ("", ""), (None, None)):
        with pytest.raises(SignatureError):
            await keys.verify(identifier, signature, BODY)
    assert source.fetches == 0


async def test_a_keys_file_is_read_in_githubs_shape_and_edits_are_seen(
    signer: GitHubSigner, tmp_path: Path
) -> None:
    path = signer.write_keys_file(tmp_path / "keys.json")
    keys = GitHubPublicKeys.from_settings(path, "https://unused.example")
    await keys.verify(signer.identifier, signer.signature(BODY), BODY)
    replacement = GitHubSigner(identifier="next")
    replacement.write_keys_file(path)
    await keys.verify("next", replacement.signature(BODY), BODY)
    path.unlink()
    with pytest.raises(KeysUnavailable):
        await keys.verify("next", replacement.signature(BODY), BODY)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/meta/public_keys/secret_scanning"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


async def test_a_server_that_never_answers_is_given_up_on(silent_server: str) -> None:
    with pytest.raises(KeysUnavailable):
        await url_source(silent_server, timeout_s=0.3)()


async def test_a_refused_connection_means_no_keys() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(KeysUnavailable):
        await url_source(f"http://127.0.0.1:{port}/keys", timeout_s=2)()


@pytest.fixture
def keys_server(signer: GitHubSigner) -> Iterator[str]:
    """GitHub's /meta/public_keys/secret_scanning, served locally: the keys, or a 404 elsewhere."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = document(signer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/meta/public_keys/secret_scanning"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_keys_are_fetched_from_the_url_and_an_error_status_means_no_keys(
    keys_server: str, signer: GitHubSigner
) -> None:
    keys = GitHubPublicKeys.from_settings(None, f"{keys_server}/meta/public_keys/secret_scanning")
    await keys.verify(signer.identifier, signer.signature(BODY), BODY)
    with pytest.raises(KeysUnavailable):
        await url_source(f"{keys_server}/elsewhere")()
