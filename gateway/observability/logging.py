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
from typing import Any

__all__ = ["RedactingFilter", "configure_logging", "redact"]

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
    # key=value pairs whose name says secret.
    (
        re.compile(
            r"(?i)\b((?:password|passwd|secret|token|api[_-]?key|x-api-key|hash_key|"
            r"encryption_keys?|client_secret|code)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1[redacted]",
    ),
    # Passwords inside URLs / DSNs: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@/\s]+@"), r"\1[redacted]@"),
)


def redact(text: str) -> str:
    """Remove credentials from ``text``."""
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
