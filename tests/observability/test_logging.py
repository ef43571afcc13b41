"""Secrets never reach the log output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.settings import load_settings
from gateway.observability.logging import (
    RedactingFilter,
    _JsonFormatter,
    clear_secrets,
    configured_secrets,
    redact,
    register_secrets,
)
from gateway.security.crypto import generate_key
from tests.support.config import GatewayConfig


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def"),
        ('{"authorization": "Basic am9objpwYXNz"}', "am9objpwYXNz"),
        ("Cookie: gateway_session=9f8e7d6c; theme=dark", "9f8e7d6c"),
        ("set-cookie: gateway_session=abcdef123; Path=/", "abcdef123"),
        ("rejected key gw_a1b2c3d4e5f6_SuperSecretPart-xyz", "SuperSecretPart"),
        ("password=hunter2 user=john", "hunter2"),
        ("x-api-key: topsecret", "topsecret"),
        ("dsn postgresql://gateway:pa55word@db:5432/gw", "pa55word"),
        ("client_secret=abc123XYZ", "abc123XYZ"),
    ],
)
def test_redact_removes_credentials(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    line = "login failed for user=john ip=203.0.113.9 host=app.example.com"
    assert redact(line) == line


def test_filter_redacts_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_JsonFormatter())
    logger = logging.getLogger("gateway.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("headers were %s", {"Authorization": "Bearer s3cr3t-token"})
        try:
            raise ValueError("password=letmein")
        except ValueError:
            logger.exception("failure")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "s3cr3t-token" not in output
    assert "letmein" not in output
    entries = [json.loads(line) for line in output.splitlines()]
    assert entries[0]["level"] == "warning"
    assert "[redacted]" in entries[1]["error"]


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("redis://:hunter2@redis:6379/0", "hunter2"),
        (str([(b"authorization", b"Basic am9objpwYXNz")]), "am9objpwYXNz"),
        (str([(b"cookie", b"gateway_session=SECRETSESSION")]), "SECRETSESSION"),
        (str([("x-api-key", "gw_abcdefghijkl_zzzz")]), "zzzz"),
    ],
)
def test_redact_covers_password_only_urls_and_asgi_header_pairs(line: str, secret: str) -> None:
    assert secret not in redact(line)


JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJjaS1ib3QiLCJleHAiOjE3MDAwMDAwMDB9"
    ".c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu"
)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("access_token=ya29.a0AfH6SMBx", "ya29.a0AfH6SMBx"),
        ('{"refresh_token": "1//0gLrT-refresh"}', "1//0gLrT-refresh"),
        ("id_token: opaque-id-token-value", "opaque-id-token-value"),
        ('{"client_secret":"s3cr3t-client"}', "s3cr3t-client"),
        ("grant_type=refresh_token&refresh_token=rt-123456&x=1", "rt-123456"),
    ],
)
def test_redact_covers_oauth_parameters(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert "[redacted]" in cleaned


@pytest.mark.parametrize(
    "line",
    [
        f"forward-auth: 401 invalid bearer token {JWT} for api.example.com",
        f"headers {{'x-forwarded-uri': '/cb?jwt={JWT}'}}",
        f"unsigned {JWT.rsplit('.', 1)[0]}. seen",
        f"jwe {JWT}.Zm9v.YmFy",
    ],
)
def test_redact_removes_bare_jwts(line: str) -> None:
    cleaned = redact(line)
    assert "eyJ" not in cleaned
    assert "[redacted]" in cleaned


def test_redact_keeps_text_that_only_looks_a_little_like_a_jwt() -> None:
    line = "rule eyJohn matched host a.b.example.com"
    assert redact(line) == line


@pytest.fixture
def registered() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


def test_configured_secret_values_are_redacted_wherever_they_appear(
    tmp_path: Path, registered: None
) -> None:
    key = generate_key()
    config = GatewayConfig(
        encryption_keys=[key],
        hash_key="hash-key-value-that-is-long-enough-1234",
        store="redis",
        session={
            "redis": {
                "url": "redis://:url%40pass-word@redis:6379/0",
                "password": "redis-password-value",
            }
        },
        authentication={
            "backend": "ldap",
            "ldap": {
                "urls": ["ldap://ldap:389"],
                "base_dn": "dc=example,dc=com",
                "password": "ldap-bind-password",
            },
        },
        storage={
            "type": "postgres",
            "postgres": {
                "dsn": "host=db dbname=gateway password='dsn pass word'",
                "password": "postgres-password-value",
            },
        },
        extra={
            "credentials": {
                "rate_limits": {"redis_url": "redis://user:ratelimit-pass@redis:6379/1"}
            }
        },
        policy="access_control:\n  default_policy: deny\n",
    )
    settings = load_settings(config.write(tmp_path))
    secrets = configured_secrets(settings)
    register_secrets(secrets)
    values = [
        key,
        "hash-key-value-that-is-long-enough-1234",
        "url@pass-word",
        "url%40pass-word",
        "redis-password-value",
        "ldap-bind-password",
        "dsn pass word",
        "postgres-password-value",
        "ratelimit-pass",
    ]
    for value in values:
        # Bare, as a debug line or an exception message would carry it.
        cleaned = redact(f"decision detail: upstream said {value}; retrying")
        assert value not in cleaned, value
        assert "[redacted]" in cleaned
    assert redact("nothing secret here") == "nothing secret here"


def test_short_values_are_not_registered(registered: None) -> None:
    register_secrets(["abc", None, ""])
    assert redact("abc is a common word") == "abc is a common word"


def test_the_filter_redacts_registered_secrets_in_messages_and_tracebacks(
    registered: None,
) -> None:
    register_secrets(["upstream-token-987654"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("gateway.test.registered")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.debug("rendered header %s", "Bearer upstream-token-987654")
        logger.setLevel(logging.DEBUG)
        logger.debug("rendered header %s", "X-Token upstream-token-987654")
        try:
            raise RuntimeError("upstream-token-987654 rejected")
        except RuntimeError:
            logger.exception("failure")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "upstream-token-987654" not in output
    assert output.count("[redacted]") >= 2
