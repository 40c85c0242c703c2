"""Finding our keys in text and files, and reading GitHub's secret-scanning reports: pure rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.domain.api_keys import leaks, rules
from app.domain.errors import InvalidReport


def typo_of(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def test_the_documented_pattern_is_the_one_the_scanner_uses() -> None:
    security = (Path(__file__).parents[2] / "docs" / "SECURITY.md").read_text()
    assert leaks.KEY_PATTERN in security
    key = rules.generate_key()
    assert re.fullmatch(leaks.KEY_PATTERN, key)


def test_find_keys_gives_line_numbers_of_checksum_valid_keys_only() -> None:
    first, second = rules.generate_key(), rules.generate_key()
    text = f"a\nkey = '{first}'\n{typo_of(second)}\n\nauth: Bearer {second} and {first}\n"
    assert list(leaks.find_keys(text.encode())) == [(2, first), (5, second), (5, first)]


@pytest.mark.parametrize(
    "around",
    [
        "x{key}",  # part of a longer word
        "{key}x",  # followed by more key-like characters
        "{key}0",
    ],
)
def test_a_key_inside_a_longer_word_is_not_a_match(around: str) -> None:
    key = rules.generate_key()
    assert list(leaks.find_keys(around.format(key=key).encode())) == []


def test_keys_next_to_punctuation_and_non_ascii_text_are_found() -> None:
    key = rules.generate_key()
    for text in (f'"{key}"', f"KEY={key};", f"é{key}é", f"<{key}>"):
        assert list(leaks.find_keys(text.encode())) == [(1, key)], text


def write_tree(root: Path) -> dict[str, str]:
    live, other = rules.generate_key(), rules.generate_key()
    (root / "src").mkdir()
    (root / "src" / "config.js").write_text(f"// widget\nconst KEY = '{live}';\n")
    (root / "src" / "notes.md").write_text(f"typo: {typo_of(other)}\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x00\x00" + live.encode())
    (root / ".git").mkdir()
    (root / ".git" / "COMMIT_EDITMSG").write_text(f"{other}\n")
    (root / "big.log").write_bytes(b"x" * (leaks.SCAN_MAX_FILE_BYTES + 1) + other.encode())
    (root / "nested" / "deep").mkdir(parents=True)
    (root / "nested" / "deep" / ".env").write_text(f"\n\n\nQV_KEY={other}\n")
    return {"live": live, "other": other}


def test_scan_finds_exactly_the_valid_keys_and_skips_git_binary_and_big_files(tmp_path: Path) -> None:
    keys = write_tree(tmp_path)
    results = list(leaks.scan_paths([tmp_path]))
    findings = [item for item in results if isinstance(item, leaks.Finding)]
    skipped = {item.path.name: item.reason for item in results if isinstance(item, leaks.Skipped)}

    assert [(finding.location, finding.key) for finding in findings] == [
        (f"{tmp_path / 'nested' / 'deep' / '.env'}:4", keys["other"]),
        (f"{tmp_path / 'src' / 'config.js'}:2", keys["live"]),
    ]
    assert skipped == {"image.png": "binary", "big.log": "larger than 10 MiB"}
    assert findings[1].prefix == rules.display_prefix(keys["live"])


def test_scan_takes_single_files_too(tmp_path: Path) -> None:
    key = rules.generate_key()
    path = tmp_path / "one.txt"
    path.write_text(key)
    assert list(leaks.scan_paths([path])) == [leaks.Finding(path, 1, key)]


def test_scan_does_not_follow_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert list(leaks.scan_paths([tmp_path])) == []


# --- Reports -----------------------------------------------------------------------------------------


def test_a_report_in_githubs_format_is_read() -> None:
    body = json.dumps(
        [
            {
                "token": "qv_pk_x",
                "type": "quickvisit_api_key",
                "url": "https://github.com/a",
                "source": "content",
            }
        ]
    ).encode()
    assert leaks.parse_report(body) == [
        leaks.ReportedToken(
            token="qv_pk_x", type="quickvisit_api_key", url="https://github.com/a", source="content"
        )
    ]


def test_missing_optional_fields_become_empty_and_long_ones_are_cut() -> None:
    body = json.dumps([{"token": "t"}, {"token": "u", "url": "h" * 5000, "type": 7}]).encode()
    first, second = leaks.parse_report(body)
    assert (first.type, first.url, first.source) == ("", "", "")
    assert len(second.url) == leaks.MAX_URL_LENGTH and second.type == ""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_report"),
        (b"{", "invalid_report"),
        (b'{"token": "x"}', "invalid_report"),
        (b'["x"]', "invalid_report"),
        (b'[{"token": 1}]', "invalid_report"),
        (json.dumps([{"token": "x"}] * 1001).encode(), "too_many_tokens"),
        (b"[" + b" " * leaks.MAX_REPORT_BYTES + b"]", "payload_too_large"),
    ],
)
def test_what_is_not_a_report_is_refused_with_a_stable_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidReport) as refused:
        leaks.parse_report(body)
    assert refused.value.code == code
    assert refused.value.detail


def test_the_revocation_reason_names_the_url_and_the_reporter() -> None:
    assert leaks.revocation_reason("https://github.com/a/b") == (
        "revoked automatically: found public at https://github.com/a/b, reported by GitHub secret scanning"
    )
