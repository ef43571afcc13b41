"""Secrets never reach the log output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway.observability.logging import RedactingFilter, _JsonFormatter, redact


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
