from __future__ import annotations

import hashlib
import re
import zlib
from datetime import UTC, date, datetime, timedelta

import pytest

from app.domain.api_keys import rules
from app.domain.api_keys.rules import (
    KEY_LENGTH,
    KEY_PREFIX,
    RATE_LIMIT_DEFAULT,
    InvalidKeyRequest,
    InvalidOrigin,
    KeyRequest,
    checksum,
    display_prefix,
    expires_at_for,
    generate_key,
    hash_key,
    is_well_formed,
    key_status,
    normalize_origin,
    parse_origins,
    validate_key_request,
)
from app.lib.ids import BASE62_ALPHABET

# A fixed, valid key: "qv_pk_" + 32 zeros + checksum.
ZERO_BODY = KEY_PREFIX + "0" * 32
ZERO_KEY = ZERO_BODY + "0v2fRn"


# --- Keys -------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert KEY_PREFIX == "qv_pk_"
    assert BASE62_ALPHABET == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert KEY_LENGTH == 44
    assert rules.RANDOM_LENGTH == 32
    assert rules.CHECKSUM_LENGTH == 6
    assert rules.SCOPES == ("read", "write")
    assert rules.EXPIRATION_DAYS_CHOICES == (30, 90, 365)
    assert (rules.RATE_LIMIT_MIN, rules.RATE_LIMIT_MAX, RATE_LIMIT_DEFAULT) == (1, 1000, 60)


def test_generated_key_shape() -> None:
    for _ in range(50):
        key = generate_key()
        assert len(key) == 44
        assert key.startswith("qv_pk_")
        assert set(key[6:]) <= set(BASE62_ALPHABET)
        assert checksum(key[:38]) == key[38:]
        assert is_well_formed(key)


def test_generated_keys_differ() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100


def test_checksum_known_vector() -> None:
    crc = zlib.crc32(ZERO_BODY.encode())
    assert crc == 842887135
    # 842887135 = 0*62^5 + 57*62^4 + 2*62^3 + 41*62^2 + 27*62 + 49 -> "0v2fRn"
    assert checksum(ZERO_BODY) == "0v2fRn"
    assert is_well_formed(ZERO_KEY)


def test_checksum_is_left_padded_with_zeros() -> None:
    body = "qv_pk_00000000000000000000000001975620"
    assert zlib.crc32(body.encode()) == 1969  # 31 * 62 + 47 -> "V", "l"
    assert checksum(body) == "0000Vl"
    assert is_well_formed(body + "0000Vl")


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, "000000"),
        (1, "000001"),
        (61, "00000z"),
        (62, "000010"),
        (62**5, "100000"),
        (2**32 - 1, "4gfFC3"),
    ],
)
def test_base62_encoder(number: int, expected: str) -> None:
    assert rules._base62(number, 6) == expected


def test_base62_encoder_max_crc_fits_in_six_chars() -> None:
    assert 62**6 > 2**32
    assert len(rules._base62(2**32 - 1, 6)) == 6


def test_every_single_character_change_is_rejected() -> None:
    for key in (ZERO_KEY, generate_key()):
        for position in range(len(key)):
            for replacement in ("0", "1", "z", "Z", "_", "-", " ", "é"):
                if key[position] == replacement:
                    continue
                changed = key[:position] + replacement + key[position + 1 :]
                assert not is_well_formed(changed), (position, replacement)


@pytest.mark.parametrize(
    "key",
    [
        "",
        ZERO_KEY[:-1],  # 43
        ZERO_KEY + "0",  # 45
        "qv_sk_" + ZERO_KEY[6:],
        "QV_PK_" + ZERO_KEY[6:],
        "xqv_pk_" + ZERO_KEY[7:],
        ZERO_KEY[:20] + "+" + ZERO_KEY[21:],
        ZERO_KEY[:20] + "٣" + ZERO_KEY[21:],  # a non-ASCII digit
        ZERO_KEY[:-1] + "=",
    ],
)
def test_malformed_keys(key: str) -> None:
    assert not is_well_formed(key)


def test_swapped_checksum_is_rejected() -> None:
    assert not is_well_formed(ZERO_BODY + "v02fRn")


def test_hash_key() -> None:
    key = generate_key()
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert hash_key(generate_key()) != digest


def test_display_prefix() -> None:
    key = "qv_pk_abc12345" + "X" * 24 + checksum("qv_pk_abc12345" + "X" * 24)
    assert display_prefix(key) == "qv_pk_abc12345"
    assert display_prefix(generate_key()).startswith("qv_pk_")
    assert len(display_prefix(generate_key())) == 14


# --- Origins ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", "https://example.com"),
        ("  https://example.com  ", "https://example.com"),
        ("HTTPS://Example.COM", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://example.com:443", "http://example.com:443"),
        ("https://example.com:80", "https://example.com:80"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://LOCALHOST:3000/", "http://localhost:3000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ("https://[2001:DB8::1]:443", "https://[2001:db8::1]"),
        ("https://my-app.sub.example.co.uk", "https://my-app.sub.example.co.uk"),
        ("https://xn--bcher-kva.de", "https://xn--bcher-kva.de"),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("https://", ['"https://"', "no host"]),
        ("https://:8080", ['"https://:8080"', "no host"]),
        ("https:///path", ['"https:///path"', "path"]),
        ("example.com", ['"example.com"', "no scheme", "https://", "(https://example.com)"]),
        ("localhost:3000", ['"localhost:3000"', "no scheme", "(https://localhost:3000)"]),
        ("https:/example.com", ['"https:/example.com"', '"//"']),
        ("ftp://example.com", ['"ftp://example.com"', "ftp:", "https:// or http://"]),
        ("ws://example.com", ['"ws://example.com"', "ws:"]),
        (
            "https://example.com/path",
            [
                '"https://example.com/path" has a path; an origin is only scheme, host and port (https://example.com)'
            ],
        ),
        ("https://example.com//", ['"https://example.com//"', "path"]),
        ("https://example.com:8443/app/", ['"https://example.com:8443/app/"', "(https://example.com:8443)"]),
        ("https://example.com?x=1", ['"https://example.com?x=1"', "query", "(https://example.com)"]),
        ("https://example.com/?", ['"https://example.com/?"', "query"]),
        ("https://example.com#top", ['"https://example.com#top"', "fragment", "(https://example.com)"]),
        ("https://example.com/#a?b", ["fragment"]),
        ("https://user:pw@example.com", ['"https://user:pw@example.com"', "user name or password"]),
        ("https://user@example.com", ["user name or password", "(https://example.com)"]),
        ("https://*.example.com", ['"https://*.example.com"', "wildcard"]),
        ("*", ['"*"', "wildcard"]),
        ("https://example.com:abc", ['"https://example.com:abc"', 'port "abc"', "1 to 65535"]),
        ("https://example.com:0", ['port "0"']),
        ("https://example.com:65536", ['port "65536"']),
        ("https://example.com:", ['port ""']),
        ("https://example.com:-1", ['port "-1"']),
        ("https://example.com:" + "9" * 5000, ["invalid port"]),
        ("https://exa_mple.com", ['"https://exa_mple.com"', 'invalid host "exa_mple.com"']),
        ("https://exa mple.com", ['invalid host "exa mple.com"']),
        ("https://-example.com", ["invalid host"]),
        ("https://example-.com", ["invalid host"]),
        ("https://example..com", ["invalid host"]),
        ("https://example.com.", ["invalid host"]),
        ("https://" + "a" * 64 + ".com", ["invalid host"]),
        ("https://bücher.de", ['invalid host "bücher.de"']),
        ("http://999.1.1.1", ['invalid host "999.1.1.1"']),
        ("http://1.2.3", ["invalid host"]),
        ("http://::1", ['"http://::1"', "brackets"]),
        ("http://[::1", ["IPv6", "brackets"]),
        ("http://[::1]x", ["IPv6"]),
        ("http://[not-ipv6]", ["invalid host"]),
        ("http://[fe80::1%25eth0]", ["invalid host"]),
    ],
)
def test_normalize_origin_rejects(value: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidOrigin) as excinfo:
        normalize_origin(value)
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message
    assert isinstance(excinfo.value, ValueError)


def test_parse_origins() -> None:
    assert parse_origins("") == ()
    assert parse_origins(" , ,, ") == ()
    assert parse_origins("https://b.com, https://a.com,HTTPS://B.com:443/, http://localhost:3000") == (
        "https://b.com",
        "https://a.com",
        "http://localhost:3000",
    )
    assert parse_origins("https://a.com\nhttps://b.com\r\n") == ("https://a.com", "https://b.com")


def test_parse_origins_reports_first_bad_item() -> None:
    with pytest.raises(InvalidOrigin, match=re.escape('"example.com" has no scheme')):
        parse_origins("https://ok.com, example.com, ftp://x.com")


# --- Key requests -----------------------------------------------------------------------------------


def _request(**overrides: object) -> KeyRequest:
    fields: dict[str, object] = {
        "name": "Website widget",
        "scopes": ["read"],
        "origins": "",
        "rate_limit": None,
        "expires_in_days": None,
    }
    fields.update(overrides)
    return validate_key_request(**fields)  # type: ignore[arg-type]


def _errors(**overrides: object) -> dict[str, str]:
    with pytest.raises(InvalidKeyRequest) as excinfo:
        _request(**overrides)
    return excinfo.value.errors


def test_validate_happy_path_with_defaults() -> None:
    assert _request(name="  Website widget  ", rate_limit="", expires_in_days="") == KeyRequest(
        name="Website widget",
        scopes=("read",),
        allowed_origins=(),
        rate_limit_per_minute=60,
        expires_in_days=None,
    )


def test_validate_happy_path_with_values() -> None:
    request = _request(
        scopes=["write", "read", "write"],
        origins="https://Example.com/, http://localhost:3000",
        rate_limit=" 1000 ",
        expires_in_days="365",
    )
    assert request.scopes == ("read", "write")
    assert request.allowed_origins == ("https://example.com", "http://localhost:3000")
    assert request.rate_limit_per_minute == 1000
    assert request.expires_in_days == 365


@pytest.mark.parametrize("value", [1, "1", 60, "1000", 1000, "060"])
def test_validate_rate_limit_accepts(value: str | int) -> None:
    assert _request(rate_limit=value).rate_limit_per_minute == int(value)


@pytest.mark.parametrize(
    "value", ["abc", "1.5", "0", "1001", 0, 1001, -5, "-5", "+5", True, "1e3", "9" * 5000]
)
def test_validate_rate_limit_rejects(value: str | int) -> None:
    assert _errors(rate_limit=value) == {
        "rate_limit_per_minute": "Rate limit must be a whole number between 1 and 1000 requests per minute."
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("never", None), ("Never", None), (30, 30), ("90", 90), (365, 365)],
)
def test_validate_expiration_accepts(value: str | int | None, expected: int | None) -> None:
    assert _request(expires_in_days=value).expires_in_days == expected


@pytest.mark.parametrize("value", [0, 7, "7", "abc", "30.0", 366, True, "forever"])
def test_validate_expiration_rejects(value: str | int) -> None:
    assert _errors(expires_in_days=value) == {
        "expires_in_days": "Expiration must be Never, 30, 90 or 365 days."
    }


def test_validate_name_errors() -> None:
    assert _errors(name="") == {"name": "Name is required."}
    assert _errors(name="   ") == {"name": "Name is required."}
    assert _errors(name="x" * 101) == {"name": "Name must be at most 100 characters."}
    assert _request(name="x" * 100).name == "x" * 100
    assert _request(name=" " + "x" * 100 + " ").name == "x" * 100


def test_validate_scope_errors() -> None:
    assert _errors(scopes=[]) == {"scopes": "Select at least one scope: Read or Write."}
    assert _errors(scopes=[""]) == {"scopes": "Select at least one scope: Read or Write."}
    assert _errors(scopes=["read", "admin"]) == {"scopes": 'Unknown scope "admin"; choose Read or Write.'}
    message = _errors(scopes=["admin", "delete"])["scopes"]
    assert '"admin"' in message
    assert '"delete"' in message


def test_validate_scopes_accepts_iterables_and_duplicates() -> None:
    assert _request(scopes=("read", "read")).scopes == ("read",)
    assert _request(scopes=iter(["write"])).scopes == ("write",)


def test_validate_origin_error() -> None:
    errors = _errors(origins="https://ok.com, https://example.com/path")
    assert errors == {
        "allowed_origins": (
            '"https://example.com/path" has a path; an origin is only scheme, host and port (https://example.com)'
        )
    }


def test_validate_collects_all_errors() -> None:
    with pytest.raises(InvalidKeyRequest) as excinfo:
        validate_key_request(
            name=" ",
            scopes=["admin"],
            origins="example.com",
            rate_limit="abc",
            expires_in_days="7",
        )
    errors = excinfo.value.errors
    assert list(errors) == ["name", "scopes", "allowed_origins", "rate_limit_per_minute", "expires_in_days"]
    assert errors["name"] == "Name is required."
    assert "admin" in errors["scopes"]
    assert '"example.com" has no scheme' in errors["allowed_origins"]
    assert "Name is required." in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_key_request_is_frozen() -> None:
    request = _request()
    with pytest.raises(AttributeError):
        request.name = "other"  # type: ignore[misc]


# --- Expiry and status ------------------------------------------------------------------------------

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def test_expires_at_for() -> None:
    assert expires_at_for(None, NOW) is None
    assert expires_at_for(30, NOW) == datetime(2025, 2, 14, 12, 0, tzinfo=UTC)
    assert expires_at_for(365, NOW) == NOW + timedelta(days=365)


def test_key_status() -> None:
    earlier = NOW - timedelta(seconds=1)
    later = NOW + timedelta(seconds=1)
    assert key_status(revoked_at=None, expires_at=None, now=NOW) == "active"
    assert key_status(revoked_at=None, expires_at=later, now=NOW) == "active"
    assert key_status(revoked_at=None, expires_at=NOW, now=NOW) == "expired"
    assert key_status(revoked_at=None, expires_at=earlier, now=NOW) == "expired"
    assert key_status(revoked_at=earlier, expires_at=None, now=NOW) == "revoked"
    assert key_status(revoked_at=earlier, expires_at=earlier, now=NOW) == "revoked"
    assert key_status(revoked_at=later, expires_at=later, now=NOW) == "revoked"


# --- Custom expiry dates, edits and rolling ---------------------------------------------------------

TODAY = date(2025, 1, 15)


def test_validate_custom_expiry_date() -> None:
    request = _request(expires_in_days="custom", expires_on="2025-03-01", today=TODAY)
    assert (request.expires_in_days, request.expires_on) == (None, date(2025, 3, 1))
    # A date alone means a custom date; a preset chosen next to a leftover date wins.
    assert _request(expires_on="2025-01-16", today=TODAY).expires_on == date(2025, 1, 16)
    assert _request(expires_in_days="30", expires_on="2025-03-01", today=TODAY).expires_on is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Enter the expiry date as YYYY-MM-DD, like 2027-01-31."),
        ("01/03/2025", "Enter the expiry date as YYYY-MM-DD, like 2027-01-31."),
        ("2025-02-30", "Enter the expiry date as YYYY-MM-DD, like 2027-01-31."),
        ("2025-01-15", "The expiry date must be after today."),
        ("2024-12-31", "The expiry date must be after today."),
        ("2030-01-15", "The expiry date must be at most 5 years from today."),
    ],
)
def test_validate_custom_expiry_date_rejects(value: str, message: str) -> None:
    assert _errors(expires_in_days="custom", expires_on=value, today=TODAY) == {"expires_on": message}


def test_keep_expiry_only_when_editing() -> None:
    assert _request(expires_in_days="keep", allow_keep=True).keep_expiry is True
    assert _request(expires_in_days="never", allow_keep=True).keep_expiry is False
    assert _errors(expires_in_days="keep") == {
        "expires_in_days": "Expiration must be Never, 30, 90 or 365 days."
    }


def test_requested_expiry_ends_the_chosen_day_in_the_time_zone() -> None:
    custom = _request(expires_on="2025-03-01", today=TODAY)
    assert rules.requested_expiry(custom, NOW, "Europe/Berlin") == datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
    assert rules.requested_expiry(_request(expires_in_days="30"), NOW, "UTC") == NOW + timedelta(days=30)
    assert rules.requested_expiry(_request(), NOW, "UTC") is None


def test_expiry_wording() -> None:
    assert rules.expires_in(NOW + timedelta(days=3, hours=2), NOW) == "in 3 days"
    assert rules.expires_in(NOW + timedelta(hours=1), NOW) == "in 1 hour"
    assert rules.expires_in(NOW + timedelta(seconds=30), NOW) == "in less than a minute"
    assert rules.expires_in(NOW, NOW) == "Expired"
    assert rules.expiry_soon(NOW + timedelta(days=7), NOW) is True
    assert rules.expiry_soon(NOW + timedelta(days=7, seconds=1), NOW) is False
    assert rules.expiry_soon(NOW, NOW) is False
    assert rules.expiry_soon(None, NOW) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta()),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        (" 24H ", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("168h", timedelta(days=7)),
    ],
)
def test_parse_grace(text: str, expected: timedelta) -> None:
    assert rules.parse_grace(text) == expected


@pytest.mark.parametrize("text", ["", "8d", "169h", "1w", "h", "-1h", "1.5h", "abc", "0s0", "99999999999d"])
def test_parse_grace_rejects(text: str) -> None:
    with pytest.raises(rules.InvalidGrace, match="at most 7 days"):
        rules.parse_grace(text)


def test_grace_choices_all_parse() -> None:
    assert [rules.parse_grace(value) for value, _ in rules.GRACE_CHOICES] == [
        timedelta(),
        timedelta(hours=1),
        timedelta(hours=24),
        timedelta(days=7),
    ]


def test_previous_secret_never_outlives_the_key() -> None:
    week = timedelta(days=7)
    assert rules.previous_secret_ends_at(NOW, week, None) == NOW + week
    assert rules.previous_secret_ends_at(NOW, week, NOW + timedelta(days=2)) == NOW + timedelta(days=2)
    assert rules.previous_secret_ends_at(NOW, timedelta(hours=1), NOW + week) == NOW + timedelta(hours=1)
    assert rules.previous_secret_ends_at(NOW, timedelta(), None) == NOW
