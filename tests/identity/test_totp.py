from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ElementTree
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.identity.totp import (
    code_at,
    generate_recovery_codes,
    hash_recovery_code,
    new_secret,
    normalise_recovery_code,
    provisioning_uri,
    qr_svg,
    verify,
)

# RFC 6238 appendix B (SHA-1): the seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("unix_time", "code"), RFC_VECTORS)
def test_rfc6238_vectors(unix_time: int, code: str) -> None:
    assert code_at(RFC_SECRET, unix_time // 30, digits=8) == code
    assert verify(RFC_SECRET, code, now=unix_time, digits=8, skew=0) == unix_time // 30


def test_skew_accepts_neighbouring_steps_only() -> None:
    secret = new_secret()
    now = 1_700_000_015.0
    step = int(now // 30)
    previous, next_, two_back = (code_at(secret, s) for s in (step - 1, step + 1, step - 2))
    assert verify(secret, previous, now=now) == step - 1
    assert verify(secret, next_, now=now) == step + 1
    assert verify(secret, previous, now=now, skew=0) is None
    assert verify(secret, two_back, now=now) is None


def test_other_periods() -> None:
    secret = new_secret()
    now = 1_700_000_000.0
    code = code_at(secret, int(now // 60))
    assert verify(secret, code, now=now, period=60, skew=0) == int(now // 60)


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12345x"])
def test_malformed_codes_are_refused(typed: str) -> None:
    assert verify(new_secret(), typed, now=0) is None


def test_spaces_in_a_code_are_ignored() -> None:
    secret = new_secret()
    code = code_at(secret, 1000)
    assert verify(secret, f" {code[:3]} {code[3:]} ", now=30_000) == 1000


def test_secrets_are_160_bit_base32_and_fresh() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(re.fullmatch(r"[A-Z2-7]{32}", secret) for secret in secrets)
    assert all(len(base64.b32decode(secret)) == 20 for secret in secrets)


def test_provisioning_uri() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, "o'brien", "Example SSO")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/Example%20SSO:o%27brien"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Example SSO"]
    eight = parse_qs(urlsplit(provisioning_uri(secret, "a", "b", digits=8)).query)
    assert eight["digits"] == ["8"]


def test_qr_svg_is_an_inline_svg_element() -> None:
    svg = qr_svg("otpauth://totp/gateway:john?secret=JBSWY3DPEHPK3PXP&issuer=gateway")
    assert svg.startswith("<svg") and "<?xml" not in svg
    root = ElementTree.fromstring(svg)  # noqa: S314 (made above, not untrusted)
    assert root.tag.endswith("svg")
    assert qr_svg("otpauth://totp/a?secret=AAAA") != qr_svg("otpauth://totp/b?secret=AAAA")


def test_recovery_codes_shape() -> None:
    codes = generate_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    for code in codes:
        assert re.fullmatch(
            r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}", code
        )


@pytest.mark.parametrize(
    "typed",
    ["7k2m-q9xh-4tfa", "7K2M-Q9XH-4TFA", "7k2mq9xh4tfa", " 7k2m q9xh 4tfa ", "7k2m-q9xh-4tfa\n"],
)
def test_recovery_codes_are_forgiving_about_case_spaces_and_hyphens(typed: str) -> None:
    assert normalise_recovery_code(typed) == "7k2mq9xh4tfa"
    assert hash_recovery_code(typed, b"k" * 32) == hash_recovery_code("7k2m-q9xh-4tfa", b"k" * 32)


def test_lookalike_letters_read_as_digits() -> None:
    assert normalise_recovery_code("ab1o-ilxx-0000") == "ab1011xx0000"


@pytest.mark.parametrize("typed", ["", "7k2m-q9xh", "7k2m-q9xh-4tfu", "7k2m-q9xh-4tf!"])
def test_not_a_recovery_code(typed: str) -> None:
    assert normalise_recovery_code(typed) is None
    with pytest.raises(ValueError, match="not a recovery code"):
        hash_recovery_code(typed, b"k" * 32)


def test_recovery_code_hash_depends_on_the_key() -> None:
    code = generate_recovery_codes(1)[0]
    assert hash_recovery_code(code, b"a" * 32) != hash_recovery_code(code, b"b" * 32)
    assert hash_recovery_code(code, "a" * 32) == hash_recovery_code(code, b"a" * 32)
    assert len(hash_recovery_code(code, b"a" * 32)) == 32
