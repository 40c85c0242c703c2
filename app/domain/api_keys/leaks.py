"""Leaked keys: finding our keys in text and files, and reading a secret-scanning report.

Pure rules, no database: the scanner behind `litestar keys scan` and the parsing of GitHub's reports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from app.domain.api_keys import rules
from app.domain.errors import InvalidReport, ReportTooLarge

# What a secret scanner looks for (docs/SECURITY.md); a match is a key only if its checksum is right.
KEY_PATTERN: Final = r"\bqv_pk_[0-9A-Za-z]{38}\b"
_KEY_PATTERN_BYTES: Final = re.compile(KEY_PATTERN.encode("ascii"))

SCAN_MAX_FILE_BYTES: Final = 10 * 1024 * 1024
SKIPPED_DIRECTORIES: Final = frozenset({".git"})
# Like git: a file with a NUL byte in its first 8 KiB is binary.
_BINARY_SNIFF_BYTES: Final = 8192

MAX_REPORT_BYTES: Final = 1024 * 1024
MAX_REPORT_TOKENS: Final = 1000
# Longer fields are cut before they are stored (URLs) or echoed back (types).
MAX_URL_LENGTH: Final = 2000
MAX_TYPE_LENGTH: Final = 100
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")


# --- Scanning text and files -----------------------------------------------------------------------


def find_keys(data: bytes) -> Iterator[tuple[int, str]]:
    """(line number, key) of every checksum-valid key in ``data``, in order; look-alikes are skipped."""
    line, counted_to = 1, 0
    for match in _KEY_PATTERN_BYTES.finditer(data):
        key = match.group().decode("ascii")
        if not rules.is_well_formed(key):
            continue
        line += data.count(b"\n", counted_to, match.start())
        counted_to = match.start()
        yield line, key


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF_BYTES]


@dataclass(frozen=True, slots=True)
class Finding:
    """A checksum-valid key in a file. `key` is for the caller's checks only: print `prefix`, never it."""

    path: Path
    line: int
    key: str

    @property
    def prefix(self) -> str:
        return rules.display_prefix(self.key)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file not scanned, and why (binary, too large, unreadable)."""

    path: Path
    reason: str


def _files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        yield root
        return
    # Symbolic links to directories are not followed: a link back up the tree would never end.
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(name for name in subdirectories if name not in SKIPPED_DIRECTORIES)
        for name in sorted(names):
            yield Path(directory, name)


def scan_file(path: Path) -> list[Finding] | Skipped:
    try:
        if not path.is_file():
            return Skipped(path, "not a regular file")
        if path.stat().st_size > SCAN_MAX_FILE_BYTES:
            return Skipped(path, "larger than 10 MiB")
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(path, f"unreadable ({exc.strerror or exc})")
    if is_binary(data):
        return Skipped(path, "binary")
    return [Finding(path, line, key) for line, key in find_keys(data)]


def scan_paths(paths: Iterable[Path]) -> Iterator[Finding | Skipped]:
    """Every key in the files and directory trees named (skipping .git, binary files and files over 10 MiB),
    and every file left out, in path order."""
    for root in paths:
        for path in _files(root):
            result = scan_file(path)
            if isinstance(result, Skipped):
                yield result
            else:
                yield from result


# --- Secret-scanning reports -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportedToken:
    token: str
    type: str
    url: str
    source: str


def _text(value: Any, limit: int) -> str:
    # Control characters (NUL above all: PostgreSQL refuses it in text) never reach a page or a row.
    return _CONTROL_CHARACTERS.sub("", value)[:limit] if isinstance(value, str) else ""


def parse_report(body: bytes) -> list[ReportedToken]:
    """The tokens of a report in GitHub's format: ``[{"token", "type", "url", "source"}, ...]``."""
    if len(body) > MAX_REPORT_BYTES:
        raise ReportTooLarge("A report is at most 1 MiB.")
    try:
        items = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidReport("invalid_report", f"The body is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise InvalidReport("invalid_report", "A report is a JSON array of token objects.")
    if len(items) > MAX_REPORT_TOKENS:
        raise InvalidReport("too_many_tokens", f"A report holds at most {MAX_REPORT_TOKENS} tokens.")
    tokens = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            raise InvalidReport("invalid_report", f"Item {index} has no string `token`.")
        tokens.append(
            ReportedToken(
                token=item["token"],
                type=_text(item.get("type"), MAX_TYPE_LENGTH),
                url=_text(item.get("url"), MAX_URL_LENGTH),
                source=_text(item.get("source"), MAX_TYPE_LENGTH),
            )
        )
    return tokens


def revocation_reason(url: str) -> str:
    """What the audit log says about a key revoked on a report."""
    return f"revoked automatically: found public at {url or 'an unknown location'}, reported by GitHub secret scanning"
