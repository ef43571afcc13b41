"""Turn the headers Caddy (or nginx) sends into an :class:`AccessRequest`.

Only peers in ``server.trusted_proxies`` may say which request is being authorised
(``X-Forwarded-*`` / ``X-Original-*``) and who the client is (``X-Forwarded-For``). From any
other peer those headers are ignored, so a direct caller can neither spoof its address nor
choose the target.

The values are taken as sent. A header that says which request is meant appears once or the
request is refused: with two ``X-Forwarded-Host`` headers the proxy, the gateway and the
upstream need not agree on which one counts. Values are never trimmed or re-cased on the way
to the policy (a host name is the exception: DNS names are case-insensitive).

The target host is made canonical here, once, by :func:`gateway.net.normalize_host`, and must
be an ASCII name (not an IPv6 literal, no ``_``). ``AccessRequest.host`` is that value and the
policy target's host is equal to it; the cookie-domain and API-host lookups trust it as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.errors import Rejected
from gateway.memo import BoundedMemo
from gateway.net import IPAddress, IPNetwork, NetworkSet, address_or_none, normalize_host, unmapped
from gateway.policy import BadTarget, Target
from gateway.policy.normalize import PathMode, normalize_method

__all__ = [
    "WANTED_HEADERS",
    "AccessRequest",
    "BadRequest",
    "ProxyTrust",
    "from_auth_request",
    "from_forward_auth",
    "read_headers",
]

WANTED_HEADERS = frozenset(
    {
        b"x-forwarded-method",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-uri",
        b"x-forwarded-for",
        b"x-original-url",
        b"x-original-method",
        b"cookie",
        b"authorization",
        b"accept",
        b"x-requested-with",
        b"x-api-key",
        b"x-client-cert-der-b64",
        b"x-client-cert-fingerprint",
    }
)
"""Headers the decision endpoints read; everything else in the scope is skipped undecoded."""
# List-valued headers that may legitimately arrive split over several lines, and how their
# lines join (RFC 9113 section 8.2.3 for Cookie, RFC 9110 section 5.3 for the others). Any
# other header the endpoints read must appear at most once.
_JOINED = {"cookie": "; ", "x-forwarded-for": ", ", "accept": ", "}
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_TRUST_CACHE_LIMIT = 4096
_TRUST_CACHE_BYTES = 1 << 20
_TARGET_CACHE_LIMIT = 8192
TARGET_CACHE_BYTES = 8 << 20
"""Byte budget of each of the two target memos (forwarded headers, policy targets)."""
MAX_TARGET_LENGTH = 16 * 1024
"""Longest target URL accepted (nginx's default header buffers hold 8 KiB)."""


class BadRequest(Rejected):
    """The authorisation request is malformed; the message is safe to show a client."""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What is being asked: which URL, with which method, from which client address."""

    url: str
    method: str
    host: str
    """The canonical target host (:func:`gateway.net.normalize_host`); ``target.host`` too."""
    client_ip: IPAddress
    target: Target
    trusted: bool
    """Whether the peer is a trusted proxy (client-certificate headers count only then)."""


class ProxyTrust:
    """Which peers are trusted proxies; answers are memoised per address string.

    It also memoises the per-request parsing that depends only on header text (client
    addresses, normalised targets), so a busy gateway parses each distinct value once.
    """

    def __init__(self, networks: Iterable[IPNetwork], *, paths: PathMode = "reject") -> None:
        self.paths: PathMode = paths
        """``server.paths``: refuse ambiguous raw paths, or judge them cleaned."""
        # Mapped networks (::ffff:10.0.0.0/104) are compared as IPv4, like the addresses.
        self._networks = NetworkSet(networks)
        # Keyed by what clients send, so bounded in bytes as well as entries (gateway/memo.py).
        self._cache: BoundedMemo[str, bool] = BoundedMemo(_TRUST_CACHE_LIMIT, _TRUST_CACHE_BYTES)
        self._addresses: BoundedMemo[str, IPAddress] = BoundedMemo(
            _TRUST_CACHE_LIMIT, _TRUST_CACHE_BYTES
        )
        self._targets: BoundedMemo[tuple[str, str], Target] = BoundedMemo(
            _TARGET_CACHE_LIMIT, TARGET_CACHE_BYTES
        )
        self.forwarded: BoundedMemo[tuple[str, str, str], tuple[str, str, str]] = BoundedMemo(
            _TARGET_CACHE_LIMIT, TARGET_CACHE_BYTES
        )
        """Validated (host, uri, method) header triples -> (url, host, method)."""

    def parse_address(self, text: str) -> IPAddress:
        known = self._addresses.get(text)
        if known is None:
            address = address_or_none(text)
            if address is None:
                raise BadRequest("malformed client address in X-Forwarded-For")
            known = self._addresses.put(text, address, len(text))
        return known

    def target(self, url: str, method: str, client: IPAddress) -> Target:
        """The policy target for ``url``; normalisation is cached, the address is not."""
        key = (url, method)
        cached = self._targets.get(key)
        if cached is None:
            try:
                target = Target.from_url(url, method, None, paths=self.paths)
            except BadTarget as error:
                raise BadRequest(f"malformed target URL: {error}") from None
            # The key and the target's path both hold about the URL's length.
            cached = self._targets.put(key, target, 2 * len(url))
        return Target(cached.host, cached.path, cached.query, cached.method, unmapped(client))

    def is_trusted(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is not None:
            return known
        trusted = address_or_none(address) in self._networks
        return self._cache.put(address, trusted, len(address))

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The rightmost ``X-Forwarded-For`` entry that is not a trusted proxy."""
        if not forwarded_for:
            return peer
        entries = [entry.strip() for entry in forwarded_for.split(",")]
        for entry in reversed(entries):
            if not entry:
                raise BadRequest("malformed X-Forwarded-For header")
            if not self.is_trusted(entry):
                return entry
        return entries[0]


def read_headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The wanted headers of an ASGI scope by lower-case name; :class:`BadRequest` on a
    duplicate that cannot be joined."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        if name in WANTED_HEADERS:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            if key in headers:
                separator = _JOINED.get(key)
                if separator is None:
                    raise BadRequest(f"the {key} header appears more than once")
                text = headers[key] + separator + text
            headers[key] = text
    return headers


def _target_host(raw: str) -> str:
    """The canonical host of a target authority, which must name a host by its ASCII name."""
    if raw.startswith("["):
        raise BadRequest("the target host must be a name, not an IP address")
    # The upstream sees the raw bytes; a name that is only valid after IDNA would be judged
    # under a spelling the upstream was never sent.
    if not raw.isascii():
        raise BadRequest("malformed X-Forwarded-Host header")
    try:
        return normalize_host(raw)
    except ValueError:
        raise BadRequest("malformed X-Forwarded-Host header") from None


def _method(raw: str | None, header: str) -> str:
    if not raw:
        raise BadRequest(f"missing {header} header")
    try:
        return normalize_method(raw)
    except ValueError:
        raise BadRequest(f"malformed {header} header (an upper-case method such as GET)") from None


def _build(
    url: str, host: str, method: str, peer: str, forwarded_for: str | None, trust: ProxyTrust
) -> AccessRequest:
    client = trust.parse_address(trust.client_address(peer, forwarded_for))
    target = trust.target(url, method, client)
    if target.host != host:
        # Both hosts come from net.normalize_host, so only the authority can differ: two URL
        # splits disagreeing about it is how decisions get made for the wrong site (nginx
        # builds X-Original-URL from a client's Host). Refuse instead of guessing.
        raise BadRequest("ambiguous target host")
    return AccessRequest(url, method, host, client, target, trusted=True)


def from_forward_auth(headers: Mapping[str, str], peer: str, trust: ProxyTrust) -> AccessRequest:
    """Caddy / Traefik style: ``X-Forwarded-Method``, ``-Proto``, ``-Host``, ``-Uri``, ``-For``."""
    if not trust.is_trusted(peer):
        raise BadRequest("this endpoint only answers trusted proxies")
    if headers.get("x-forwarded-proto", "").lower() != "https":
        raise BadRequest("the target must be https (X-Forwarded-Proto)")
    key = (
        headers.get("x-forwarded-host", ""),
        headers.get("x-forwarded-uri") or "/",
        headers.get("x-forwarded-method", ""),
    )
    if len(key[0]) + len(key[1]) + len(key[2]) > MAX_TARGET_LENGTH:
        # Checked before anything is cached: the caches hold at most this much per entry.
        raise BadRequest("X-Forwarded-Uri is too long")
    known = trust.forwarded.get(key)
    if known is None:
        known = _validate_forwarded(*key)
        trust.forwarded.put(key, known, 2 * (len(key[0]) + len(key[1])))
    url, host, method = known
    return _build(url, host, method, peer, headers.get("x-forwarded-for"), trust)


def _validate_forwarded(raw_host: str, uri: str, raw_method: str) -> tuple[str, str, str]:
    """``(url, host, method)`` from forward-auth header values, or :class:`BadRequest`."""
    if not raw_host:
        raise BadRequest("missing X-Forwarded-Host header")
    host = _target_host(raw_host)
    if not uri.startswith("/") or uri.startswith("//") or _UNSAFE.search(uri):
        raise BadRequest("malformed X-Forwarded-Uri header")
    method = _method(raw_method, "X-Forwarded-Method")
    return f"https://{raw_host.lower()}{uri}", host, method


def from_auth_request(headers: Mapping[str, str], peer: str, trust: ProxyTrust) -> AccessRequest:
    """nginx ``auth_request`` style: ``X-Original-URL`` and ``X-Original-Method``."""
    if not trust.is_trusted(peer):
        raise BadRequest("this endpoint only answers trusted proxies")
    url = headers.get("x-original-url", "")
    if not url:
        raise BadRequest("missing X-Original-URL header")
    if len(url) > MAX_TARGET_LENGTH:
        raise BadRequest("X-Original-URL is too long")
    if _UNSAFE.search(url) or "#" in url or "\\" in url:
        raise BadRequest("malformed X-Original-URL header")
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() != "https":
        raise BadRequest("the target must be https (X-Original-URL)")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if not authority or "@" in authority:
        raise BadRequest("malformed X-Original-URL header")
    host = _target_host(authority)
    method = _method(headers.get("x-original-method"), "X-Original-Method")
    return _build(url, host, method, peer, headers.get("x-forwarded-for"), trust)
