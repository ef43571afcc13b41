"""Which cookie domain a host belongs to, and the Set-Cookie headers for it."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.memo import BoundedMemo
from gateway.session.settings import CookieDomain

__all__ = ["CookieDomainIndex", "SessionCookie"]

# Hosts already looked up; bounded because clients choose the host.
_MEMO_LIMIT = 4096


class CookieDomainIndex:
    """Finds the longest configured cookie domain that a host equals or is a subdomain of.

    The host is canonical (:func:`gateway.net.normalize_host`, as in ``AccessRequest.host``):
    it is looked up as given, so a caller holding a raw ``Host`` value normalises it first.
    """

    def __init__(self, domains: Iterable[CookieDomain]) -> None:
        self._domains = {cookie.domain: cookie for cookie in domains}
        # Hosts come from clients: bounded in entries and bytes (gateway/memo.py).
        self._memo: BoundedMemo[str, CookieDomain | None] = BoundedMemo(_MEMO_LIMIT, 1 << 20)

    def __call__(self, host: str) -> CookieDomain | None:
        if host in self._memo:
            return self._memo.get(host)
        return self._memo.put(host, self._lookup(host), len(host))

    def _lookup(self, host: str) -> CookieDomain | None:
        # Walk from the full host towards the root, so the longest domain wins; only whole
        # labels are stripped, so "notexample.com" never matches "example.com".
        while host:
            found = self._domains.get(host)
            if found is not None:
                return found
            dot = host.find(".")
            if dot < 0:
                return None
            host = host[dot + 1 :]
        return None


class SessionCookie:
    """The precomputed Set-Cookie headers of one cookie domain."""

    __slots__ = ("_attributes", "_clear", "_prefix", "_suffix", "name")

    def __init__(self, cookie: CookieDomain, *, default_name: str, same_site: str) -> None:
        self.name = cookie.name or default_name
        # Browsers refuse Domain=localhost; a host-only cookie works there.
        domain = "" if cookie.domain == "localhost" else f"; Domain={cookie.domain}"
        attributes = f"; Secure; HttpOnly; SameSite={same_site.capitalize()}"
        self._prefix = f"{self.name}="
        self._suffix = f"{domain}; Path=/"
        self._clear = (
            f"{self.name}={self._suffix}; Max-Age=0; "
            f"Expires=Thu, 01 Jan 1970 00:00:00 GMT{attributes}"
        )
        self._attributes = attributes

    def header(self, session_id: str, max_age: int | None) -> str:
        """``name=id; Domain=..; Path=/[; Max-Age=N]; Secure; HttpOnly; SameSite=..``."""
        if not session_id:
            raise ValueError("a session without its id cannot be written to a cookie")
        age = "" if max_age is None else f"; Max-Age={max(0, max_age)}"
        return f"{self._prefix}{session_id}{self._suffix}{age}{self._attributes}"

    def clear_header(self) -> str:
        """A header that makes the browser drop the cookie."""
        return self._clear
