"""Open-redirect protection: which ``rd`` targets the portal may send a browser to.

A target is followed only when it is an absolute ``https`` URL on one of our cookie domains
(the domain itself or a subdomain of it). Everything that browsers and URL parsers read
differently is refused rather than normalised: backslashes, control characters and whitespace,
userinfo (``user@``), percent-escapes in the authority, empty hosts, IP literals. Non-ASCII host
names are IDNA-encoded, compared in that form and returned in that form, so the browser is sent
to exactly the host that was checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["is_within_domain", "safe_redirect"]

_MAX_LENGTH = 8192
_SCHEME = "https://"
# Host names after IDNA encoding: letters, digits, hyphens and underscores, dot-separated,
# no empty label (so no trailing dot, which makes a different cookie host).
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# Anything a browser may strip, fold or reinterpret before it parses the URL.
_FORBIDDEN = re.compile(
    r"[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f\u2060\u3000\ufeff]"
)
# Printable ASCII that may stay as it is in a path, query or fragment (``%`` keeps escapes).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _ascii_host(hostname: str) -> str | None:
    """The lower-case IDNA (punycode) form of a host name, or None if it is not one.

    A name that IDNA would *map* rather than merely encode (full-width letters, ideographic
    full stops, ``ß``, soft hyphens) is refused: it must survive the round trip unchanged.
    """
    lowered = hostname.lower()
    if lowered.isascii():
        return lowered if _HOST.fullmatch(lowered) else None
    try:
        ascii_host = lowered.encode("idna").decode("ascii").lower()
        round_trip = ascii_host.encode("ascii").decode("idna")
    except UnicodeError:
        return None
    if round_trip != lowered or not _HOST.fullmatch(ascii_host):
        return None
    return ascii_host


def is_within_domain(host: str, domain: str) -> bool:
    """True when ``host`` is ``domain`` or a subdomain of it (both lower-case ASCII)."""
    return host == domain or host.endswith("." + domain)


def safe_redirect(target: str | None, cookie_domains: Sequence[str]) -> str | None:
    """``target`` (normalised) if the portal may redirect a browser there, else None.

    Accepted: absolute ``https://`` URLs without userinfo whose host, IDNA-encoded and
    lower-cased, equals one of ``cookie_domains`` or ends with ``"." + domain``.
    """
    if not target or len(target) > _MAX_LENGTH or _FORBIDDEN.search(target):
        return None
    # ``https:evil.com`` and ``https:/evil.com`` are "absolute" to some parsers only.
    if target[: len(_SCHEME)].lower() != _SCHEME:
        return None
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:  # bad port, bad IPv6 literal, NFKC tricks in the authority
        return None
    netloc = parts.netloc
    if not netloc or "@" in netloc or "%" in netloc or "[" in netloc:
        return None
    hostname = netloc.rsplit(":", 1)[0] if port is not None or netloc.endswith(":") else netloc
    host = _ascii_host(hostname)
    if host is None:
        return None
    domains = [domain.strip().lower().strip(".") for domain in cookie_domains]
    if not any(domain and is_within_domain(host, domain) for domain in domains):
        return None
    authority = host if port is None else f"{host}:{port}"
    return urlunsplit(
        (
            "https",
            authority,
            quote(parts.path, safe=_URL_SAFE) or "/",
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )
