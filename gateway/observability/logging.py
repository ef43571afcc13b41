"""Structured logging with secrets redacted before anything is written.

Redaction is a last line of defence: code should not log secrets in the first place, but
a header dump or an exception message that slips through still comes out clean.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from gateway.observability.throttle import ThrottlingFilter

if TYPE_CHECKING:
    from gateway.config.settings import Settings

__all__ = [
    "RedactingFilter",
    "clear_secrets",
    "configure_logging",
    "configured_secrets",
    "printable",
    "redact",
    "register_secrets",
]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization / Proxy-Authorization values: keep the scheme, drop the credential.
    (
        re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?\s*\w+\s+)[^\s\"',;]+"),
        r"\1[redacted]",
    ),
    # Cookie and Set-Cookie headers: everything after the colon.
    (
        re.compile(r"(?i)((?:set-)?cookie[\"']?\s*(?:[:=]|[\"']?\s*,\s*b?)\s*[\"']?)[^\"'\n)]+"),
        r"\1[redacted]",
    ),
    # Header pairs in ASGI / tuple form: (b'authorization', b'Basic ...'), ('x-api-key', '...').
    (
        re.compile(
            r"(?i)(b?['\"](?:proxy-authorization|authorization|cookie|set-cookie|x-api-key)['\"]"
            r"\s*,\s*b?['\"])[^'\"]+"
        ),
        r"\1[redacted]",
    ),
    # Our API keys, wherever they appear.
    (re.compile(r"\bgw_[A-Za-z0-9]+_[A-Za-z0-9_\-]+"), "gw_[redacted]"),
    # Any JWT (or JWE), named or not: a base64url JSON header ("eyJ" is '{"') and two to four
    # more dot-separated base64url parts; an unsigned token's last part may be empty.
    (re.compile(r"\beyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}"), "[redacted]"),
    # key=value pairs whose name says secret (OAuth's access_token, refresh_token, id_token
    # and client_secret included: "_" is a word character, so \btoken alone misses them).
    (
        re.compile(
            r"(?i)\b((?:password|passwd|secret|token|api[_-]?key|x-api-key|hash_key|"
            r"encryption_keys?|client_secret|access_token|refresh_token|id_token|code)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1[redacted]",
    ),
    # Passwords inside URLs / DSNs: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@/\s]+@"), r"\1[redacted]@"),
)


_MIN_SECRET_LENGTH = 6
"""Shorter configured values are not registered: redacting every "admin" or "1234" in the
log would hide more than it protects, and no shipped secret is that short."""

# The values of the configured secrets (register_secrets), as one alternation, longest
# first so that a secret containing another is removed whole. Replaced, never mutated, so a
# worker thread logging meanwhile sees either the old or the new pattern.
_secret_values: frozenset[str] = frozenset()
_secrets_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str | None]) -> None:
    """Redact these exact values (and their URL-encoded forms) wherever they appear.

    Called at start-up with every secret in the configuration (:func:`configured_secrets`);
    later calls add to the set. Values shorter than six characters are ignored.
    """
    global _secret_values, _secrets_pattern
    found = set(_secret_values)
    for value in values:
        if value is None:
            continue
        for form in (value, value.strip(), quote(value, safe=""), quote_plus(value)):
            if len(form) >= _MIN_SECRET_LENGTH:
                found.add(form)
    if found == _secret_values:
        return
    ordered = sorted(found, key=len, reverse=True)
    _secrets_pattern = re.compile("|".join(re.escape(value) for value in ordered))
    _secret_values = frozenset(found)


def clear_secrets() -> None:
    """Forget every registered value (tests)."""
    global _secret_values, _secrets_pattern
    _secret_values, _secrets_pattern = frozenset(), None


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _dsn_password(dsn: str) -> str | None:
    if "://" in dsn:
        return _url_password(dsn)
    match = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if match is None:
        return None
    value = match.group(1)
    return value[1:-1].replace("\\'", "'") if value.startswith("'") else value


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value in ``settings``: keys, passwords, and passwords inside URLs."""
    values: list[str | None] = [*settings.secrets.encryption_keys, settings.secrets.hash_key]
    redis = settings.session.redis
    values += [redis.password, _url_password(redis.url)]
    values.append(_url_password(settings.credentials.rate_limits.redis_url))
    ldap = settings.authentication.ldap
    if ldap is not None:
        values.append(ldap.password)
    postgres = settings.storage.postgres
    if postgres is not None:
        values += [postgres.password, _dsn_password(postgres.dsn)]
    return [value for value in values if value]


def printable(text: str, limit: int = 64) -> str:
    """A user-typed value made safe for a log line (no control characters, bounded length)."""
    cleaned = "".join(char if char.isprintable() else "?" for char in text[:limit])
    return cleaned + ("…" if len(text) > limit else "")


def redact(text: str) -> str:
    """Remove credentials from ``text``."""
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub("[redacted]", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Render each record's message once, redact it, and keep only the clean text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send the gateway's logs to stderr, redacted, as text or one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    # Throttled first: a line dropped as a repeat costs no redaction.
    handler.addFilter(ThrottlingFilter())
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # No access log: it costs time on the hot path, and Caddy's forward_auth passes the
    # original query string, which may carry tokens. Decisions are counted in /metrics.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True
