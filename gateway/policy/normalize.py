"""Request normalisation: one canonical host, path, query and method per request.

Rules match what the upstream will serve, so ``/a/../admin``, ``/%61dmin`` and ``//admin`` all
become ``/admin`` before any ``resources`` pattern sees them. The path is percent-decoded and then
cleaned like Go's ``path.Clean`` (what Authelia applies), keeping a trailing slash.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, unquote_plus

__all__ = [
    "clean_path",
    "decode_path",
    "normalize_host",
    "normalize_method",
    "parse_ip",
    "parse_query",
    "split_request_uri",
    "split_url",
]

_SCHEMES = frozenset({"http", "https"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_PORT = re.compile(r"[0-9]{1,5}")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_safe(value: str, what: str) -> None:
    if _UNSAFE.search(value):
        raise ValueError(f"{what} contains a space or control character")


def split_url(url: str) -> tuple[str, str]:
    """Split an absolute URL into its host (with port) and request URI (``/path?query``).

    Like Go's ``url.ParseRequestURI`` a ``#`` is not treated as a fragment delimiter: request
    targets never carry fragments, so one here is part of the path or query.
    """
    _check_safe(url, "URL")
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise ValueError(f"URL must start with http:// or https:// (got '{url}')")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    uri = ("/" + path if slash else "/") + (question + query)
    host = authority.rpartition("@")[2]  # userinfo is not part of the host
    return host, uri


def normalize_host(value: str) -> str:
    """Lower-case host name without port or trailing dot; IPv6 literals lose their brackets."""
    _check_safe(value, "host")
    if value.startswith("["):
        literal, bracket, port = value[1:].partition("]")
        if not bracket:
            raise ValueError(f"invalid host '{value}': missing ']'")
        if port and not (port.startswith(":") and _PORT.fullmatch(port[1:])):
            raise ValueError(f"invalid host '{value}': bad port")
        try:
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise ValueError(f"invalid host '{value}': not an IPv6 address") from None
    host, colon, port = value.partition(":")
    if colon and not (_PORT.fullmatch(port) and int(port) <= 65535):
        if ":" in port:
            raise ValueError(f"invalid host '{value}': IPv6 addresses must be in brackets")
        raise ValueError(f"invalid host '{value}': bad port '{port}'")
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(
                f"invalid host '{value}': not a valid internationalised name"
            ) from None
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"invalid host '{value}'" if value else "the host is empty")
    return host


def split_request_uri(uri: str) -> tuple[str, str]:
    """Split ``/path?query`` into the raw path and the raw query (without ``?``)."""
    _check_safe(uri, "request URI")
    if not uri:
        return "/", ""
    if not uri.startswith("/"):
        raise ValueError(f"request URI must start with '/' (got '{uri}')")
    path, _, query = uri.partition("?")
    return path, query


def decode_path(raw_path: str) -> str:
    """Percent-decode a path; a ``%`` not followed by two hex digits is an error (as in Go)."""
    if "%" not in raw_path:
        return raw_path
    bad = _BAD_ESCAPE.search(raw_path)
    if bad:
        escape = raw_path[bad.start() : bad.start() + 3]
        raise ValueError(f"invalid percent-escape '{escape}' in path")
    return unquote(raw_path, errors="replace")


def clean_path(path: str) -> str:
    """Resolve ``.``/``..`` and repeated slashes like Go's ``path.Clean`` on a rooted path,
    keeping one trailing slash when the original had one. ``..`` cannot climb above ``/``.
    """
    if path in ("", "/"):
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    if not segments:
        return "/"
    cleaned = "/" + "/".join(segments)
    return cleaned + "/" if path.endswith("/") else cleaned


def parse_query(raw_query: str) -> dict[str, tuple[str, ...]]:
    """Parse a query string the way Go's ``url.ParseQuery`` does.

    Pairs are split on ``&``; ``+`` means space; a pair whose key contains ``;`` or whose
    escapes are invalid is skipped. Values keep their order.
    """
    if not raw_query:
        return {}
    values: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        if ";" in raw_key or _BAD_ESCAPE.search(pair):
            continue
        key = unquote_plus(raw_key, errors="replace")
        values.setdefault(key, []).append(unquote_plus(raw_value, errors="replace"))
    return {key: tuple(found) for key, found in values.items()}


def normalize_method(method: str) -> str:
    """Upper-case request method; it must be an HTTP token."""
    if not _METHOD.fullmatch(method):
        raise ValueError(f"invalid method '{method}'" if method else "the method is empty")
    return method.upper()


def parse_ip(
    value: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse a client address; IPv4-mapped IPv6 (``::ffff:10.0.0.1``) becomes IPv4."""
    if isinstance(value, str):
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
                value.strip()
            )
        except ValueError:
            raise ValueError(f"invalid IP address '{value}'") from None
    else:
        address = value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
