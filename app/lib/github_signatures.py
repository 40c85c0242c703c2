"""GitHub's signatures on secret-scanning reports: its published ECDSA P-256 keys, fetched and cached.

GitHub signs the raw body of every report with one of the keys it publishes at
https://api.github.com/meta/public_keys/secret_scanning, names that key in `Github-Public-Key-Identifier`, and
sends the base64 DER signature in `Github-Public-Key-Signature`. Anything that cannot be checked is refused:
no keys, an unknown identifier, a malformed signature.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

logger = logging.getLogger(__name__)

# GitHub gives a report 30 s; fetching its keys must leave time for the report itself.
FETCH_TIMEOUT_S: Final = 5.0
# How long fetched keys are trusted before they are fetched again.
CACHE_TTL_S: Final = 3600.0
# An unknown identifier may mean GitHub rotated its keys; refetch for it at most this often (the endpoint
# is rate limited, and forged reports must not make us hammer it).
REFETCH_INTERVAL_S: Final = 60.0
# After a failed fetch, requests are refused at once for this long instead of each waiting for a fetch.
RETRY_AFTER_FAILURE_S: Final = 5.0
_MAX_KEYS_BYTES: Final = 256 * 1024


class SignatureError(Exception):
    """The report's signature is missing, malformed, by an unknown key, or wrong."""


class KeysUnavailable(Exception):
    """GitHub's public keys could not be had (fetch failed, unreadable file): nothing can be verified."""


class _PublicKey(msgspec.Struct):
    key_identifier: str
    key: str
    is_current: bool = False


class _PublicKeys(msgspec.Struct):
    public_keys: list[_PublicKey]


def parse_keys(document: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of a document in GitHub's shape, by identifier; KeysUnavailable if it is not one."""
    try:
        listed = msgspec.json.decode(document, type=_PublicKeys)
    except msgspec.DecodeError as exc:
        raise KeysUnavailable(f"not a list of GitHub public keys: {exc}") from exc
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in listed.public_keys:
        try:
            key = serialization.load_pem_public_key(entry.key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            logger.warning("GitHub public key %r is not a PEM public key; ignored", entry.key_identifier)
            continue
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[entry.key_identifier] = key
        else:
            logger.warning("GitHub public key %r is not an ECDSA P-256 key; ignored", entry.key_identifier)
    return keys


def verify(key: ec.EllipticCurvePublicKey, signature_b64: str, body: bytes) -> None:
    """SignatureError unless `signature_b64` (base64 DER) is `key`'s ECDSA SHA-256 signature of `body`."""
    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the signature is not base64") from exc
    try:
        key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError("the signature does not match the body") from exc


Fetch = Callable[[], Awaitable[bytes]]


def file_source(path: Path) -> Fetch:
    async def fetch() -> bytes:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise KeysUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc

    return fetch


def url_source(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> Fetch:
    async def fetch() -> bytes:
        try:
            # The whole fetch, connecting included, ends within the timeout whatever the server does.
            async with asyncio.timeout(timeout_s), httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise KeysUnavailable(f"cannot fetch {url}: {exc!r}") from exc
        if response.status_code != 200:
            raise KeysUnavailable(f"{url} answered {response.status_code}")
        if len(response.content) > _MAX_KEYS_BYTES:
            raise KeysUnavailable(f"{url} sent more than {_MAX_KEYS_BYTES} bytes")
        return response.content

    return fetch


@dataclass
class _Cached:
    keys: dict[str, ec.EllipticCurvePublicKey]
    fetched_at: float


class GitHubPublicKeys:
    """GitHub's secret-scanning keys, fetched when first needed and cached (see CACHE_TTL_S)."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_s: float = CACHE_TTL_S,
        refetch_interval_s: float = REFETCH_INTERVAL_S,
        retry_after_failure_s: float = RETRY_AFTER_FAILURE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._refetch_interval_s = refetch_interval_s
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._cached: _Cached | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, keys_file: Path | None, keys_url: str) -> GitHubPublicKeys:
        if keys_file is not None:
            # A local file costs nothing to reread: an edit is seen at once.
            return cls(file_source(keys_file), ttl_s=0.0, refetch_interval_s=0.0, retry_after_failure_s=0.0)
        return cls(url_source(keys_url))

    async def _refresh(self, fetched_before: float | None) -> _Cached:
        async with self._lock:
            cached = self._cached
            # Another request refreshed while this one waited for the lock: use its keys.
            if cached is not None and (fetched_before is None or cached.fetched_at > fetched_before):
                return cached
            if self._failed_at is not None and self._clock() - self._failed_at < self._retry_after_failure_s:
                raise KeysUnavailable("GitHub's public keys could not be fetched a moment ago")
            try:
                keys = parse_keys(await self._fetch())
            except KeysUnavailable:
                self._failed_at = self._clock()
                raise
            self._failed_at = None
            self._cached = _Cached(keys, self._clock())
            return self._cached

    async def key(self, identifier: str) -> ec.EllipticCurvePublicKey:
        """The key named `identifier`; SignatureError if GitHub publishes none such, KeysUnavailable if the
        keys cannot be had."""
        cached = self._cached
        now = self._clock()
        if cached is None or now - cached.fetched_at >= self._ttl_s:
            cached = await self._refresh(None if cached is None else cached.fetched_at)
        if identifier not in cached.keys and now - cached.fetched_at >= self._refetch_interval_s:
            cached = await self._refresh(cached.fetched_at)
        found = cached.keys.get(identifier)
        if found is None:
            raise SignatureError("no GitHub public key has this identifier")
        return found

    async def verify(self, identifier: str | None, signature_b64: str | None, body: bytes) -> None:
        """SignatureError unless `body` is signed by the GitHub key `identifier`; KeysUnavailable when the keys
        cannot be had."""
        if not identifier or not signature_b64:
            raise SignatureError("Github-Public-Key-Identifier and Github-Public-Key-Signature are required")
        verify(await self.key(identifier.strip()), signature_b64, body)
