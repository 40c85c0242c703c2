"""A stand-in for GitHub's secret-scanning signer: a P-256 key pair made here, published in GitHub's shape."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPORT_PATH = "/api/secret-scanning/github"
LEAK_URL = "https://github.com/someone/shop/blob/0123abc/config.js"
# The `type` GitHub gives our pattern in a report (the name we register it under).
REPORTED_TYPE = "quickvisit_api_key"


def _public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@dataclass
class GitHubSigner:
    """Signs reports as GitHub does: ECDSA P-256 SHA-256 over the raw body, base64 DER in a header."""

    identifier: str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def keys_document(self, *others: tuple[str, ec.EllipticCurvePrivateKey]) -> dict[str, Any]:
        listed = [(self.identifier, self.private_key), *others]
        return {
            "public_keys": [
                {"key_identifier": identifier, "key": _public_pem(key), "is_current": index == 0}
                for index, (identifier, key) in enumerate(listed)
            ]
        }

    def write_keys_file(self, path: Path, *others: tuple[str, ec.EllipticCurvePrivateKey]) -> Path:
        path.write_text(json.dumps(self.keys_document(*others)))
        return path

    def signature(self, body: bytes, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        signed = (key or self.private_key).sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signed).decode("ascii")

    def headers(self, body: bytes, identifier: str | None = None) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Github-Public-Key-Identifier": identifier or self.identifier,
            "Github-Public-Key-Signature": self.signature(body),
        }


def report_body(*tokens: str, url: str = LEAK_URL, token_type: str = REPORTED_TYPE) -> bytes:
    items = [{"token": token, "type": token_type, "url": url, "source": "content"} for token in tokens]
    return json.dumps(items).encode()
