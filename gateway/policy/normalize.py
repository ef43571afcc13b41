r"""Request normalisation: one canonical path, query and method per request (the host is
:func:`gateway.net.normalize_host`).

The proxy forwards the raw request to the upstream, so the policy must judge a path the
upstream cannot read differently. By default (``server.paths: reject``) a raw path that two
reasonable servers could resolve differently is refused outright (see
:func:`refuse_ambiguous_path`): dot segments, plain or encoded, also before a ``;`` parameter
(Tomcat drops ``;...``); encoded ``/`` or ``\``; a raw ``\`` (Windows-style servers); ``%25``
(double encoding); encoded control characters. What remains can only differ by unreserved
percent-escapes and repeated slashes, which every server treats alike.

With ``server.paths: normalize`` such paths are judged after cleaning instead: the path is
percent-decoded and then cleaned like Go's ``path.Clean`` (what Authelia applies), keeping a
trailing slash, so ``/a/../admin`` and ``/%2e%2e/admin`` both become ``/admin``. That is only
safe when every upstream resolves paths exactly that way.

The method is taken exactly: an upper-case HTTP token, never trimmed or upper-cased, because
the upstream routes on the method it receives.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote, unquote_plus

__all__ = [
    "PATH_MODES",
    "PathMode",
    "clean_path",
    "decode_path",
    "normalize_method",
    "parse_query",
    "refuse_ambiguous_path",
    "split_request_uri",
    "split_url",
]

_SCHEMES = frozenset({"http", "https"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Methods are case-sensitive (RFC 9110 section 9.1), so ``get`` is not ``GET`` to an upstream
# router. Every registered method is upper-case letters, hyphen-joined (``M-SEARCH``); the
# other token characters only serve to confuse.
_METHOD = re.compile(r"(?=.{1,32}$)[A-Z]+(?:-[A-Z]+)*")
# Escapes whose decoding changes how a path splits or is decoded again: '/', '\\', '%' and
# control characters (C0 and DEL).
_AMBIGUOUS_ESCAPE = re.compile(r"%(?:2[fF]|5[cC]|25|[01][0-9a-fA-F]|7[fF])")
_DOT_SEGMENTS = frozenset({".", ".."})

PathMode = Literal["reject", "normalize"]
PATH_MODES: tuple[PathMode, ...] = ("reject", "normalize")


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


def split_request_uri(uri: str) -> tuple[str, str]:
    """Split ``/path?query`` into the raw path and the raw query (without ``?``)."""
    _check_safe(uri, "request URI")
    if not uri:
        return "/", ""
    if not uri.startswith("/"):
        raise ValueError(f"request URI must start with '/' (got '{uri}')")
    path, _, query = uri.partition("?")
    return path, query


def refuse_ambiguous_path(raw_path: str) -> None:
    """Raise :class:`ValueError` if servers could resolve ``raw_path`` to different resources."""
    if "\\" in raw_path:
        raise ValueError("ambiguous path: it contains a backslash")
    if "%" in raw_path:
        escape = _AMBIGUOUS_ESCAPE.search(raw_path)
        if escape:
            raise ValueError(f"ambiguous path: it contains the escape '{escape.group()}'")
    if "." in raw_path or "%2" in raw_path:
        for segment in raw_path.split("/"):
            name = segment.partition(";")[0]
            if name in _DOT_SEGMENTS or ("%" in name and unquote(name) in _DOT_SEGMENTS):
                raise ValueError("ambiguous path: it contains a '.' or '..' segment")


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
    """The request method, exactly as given: an upper-case HTTP token, or :class:`ValueError`."""
    if not _METHOD.fullmatch(method):
        if not method:
            raise ValueError("the method is empty")
        if _METHOD.fullmatch(method.upper()) and method.strip() == method:
            raise ValueError(f"invalid method '{method}': methods are upper-case")
        raise ValueError(f"invalid method '{method}'")
    return method
