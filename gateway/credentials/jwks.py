"""JSON Web Key Sets (RFC 7517), fetched in the background and looked up per request.

:class:`JwksClient` keeps the keys of one ``jwks_uri`` in memory. A request only looks a key
up by ``kid``; the network is used

* at start and then every ``refresh_interval`` by a background task,
* when a token names an unknown ``kid`` (key rotation) — at most once per
  ``min_refetch_interval``, with concurrent requests sharing one fetch.

A failed fetch (issuer down, bad answer, too large) keeps the keys already known, each until
``max_stale`` after the last fetch that still listed it, so an issuer outage does not lock
machine clients out. A successful fetch replaces the set: a key the issuer withdrew is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.exceptions import PyJWKError

from gateway.errors import Unavailable

__all__ = ["Jwk", "JwksClient", "JwksError", "parse_jwks"]

log = logging.getLogger(__name__)


class JwksError(Unavailable):
    """A key set could not be fetched or parsed; the message names the URL and the reason."""


@dataclass(frozen=True, slots=True)
class Jwk:
    """One public key of a set: its ``kid``, the key object, and the ``alg`` it declares."""

    kid: str | None
    key: Any
    algorithm: str | None


@dataclass(frozen=True, slots=True)
class _Entry:
    key: Jwk
    expires: float


def parse_jwks(document: Any, *, source: str = "JWKS") -> list[Jwk]:
    """The usable signature keys of a JWKS document (encryption and unknown keys skipped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(f"{source}: not a JWK set (expected an object with a 'keys' array)")
    keys: list[Jwk] = []
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        if "d" in item or "k" in item:
            # Private or symmetric key material has no place in a public key set.
            continue
        declared = item.get("alg")
        kid = item.get("kid")
        try:
            parsed = jwt.PyJWK(item)
            keys.append(
                Jwk(
                    kid if isinstance(kid, str) else None,
                    parsed.key,
                    declared if isinstance(declared, str) else None,
                )
            )
        except (PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as error:
            log.debug("%s: skipping unusable key %r: %s", source, item.get("kid"), error)
    return keys


class JwksClient:
    """The keys of one JWKS URL; :meth:`get` is a dictionary lookup."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        refresh_interval: float = 300.0,
        min_refetch_interval: float = 60.0,
        max_stale: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._refresh_interval = refresh_interval
        self._min_refetch = min_refetch_interval
        self._max_stale = max_stale
        self._clock = clock
        self._transport = transport
        self._keys: dict[str | None, _Entry] = {}
        self._last_attempt: float | None = None
        self._last_success: float | None = None
        self._healthy = False
        """Whether the latest fetch succeeded: the refresh loop then waits the full interval."""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.fetches = 0
        """How many fetches were attempted (for tests and metrics)."""

    # -- per request ---------------------------------------------------------------------

    def get(self, kid: str | None) -> Jwk | None:
        """The key with this ``kid`` if known and not expired (``None`` kid: the only key)."""
        if kid is None:
            live = [entry for entry in self._keys.values() if entry.expires > self._clock()]
            return live[0].key if len(live) == 1 else None
        entry = self._keys.get(kid)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.key

    async def key(self, kid: str | None) -> Jwk | None:
        """:meth:`get`, refetching the set once if the key is unknown and a refetch is due."""
        found = self.get(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self.get(kid)  # another request may just have fetched it
            if found is not None or not self._refetch_allowed():
                return found
            await self._fetch_quietly()
        return self.get(kid)

    def _refetch_allowed(self) -> bool:
        if self._last_attempt is None:
            return True
        return self._clock() - self._last_attempt >= self._min_refetch

    # -- fetching ------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch the key set now; raises :class:`JwksError` (keeping the old keys)."""
        self._last_attempt = self._clock()
        # A flag rather than comparing the attempt's and the success's times: those are two
        # clock readings and (almost) never equal, which kept the loop at min_refetch.
        self._healthy = False
        self.fetches += 1
        document = await self._download()
        keys = parse_jwks(document, source=self.url)
        now = self._clock()
        expires = now + self._max_stale
        fresh: dict[str | None, _Entry] = {}
        for key in keys:
            fresh[key.kid] = _Entry(key, expires)
        self._keys = fresh
        self._last_success = now
        self._healthy = True
        log.debug("fetched %d key(s) from %s", len(fresh), self.url)

    async def _fetch_quietly(self) -> bool:
        try:
            await self.refresh()
        except JwksError as error:
            log.warning("%s (keeping %d cached key(s))", error, len(self._keys))
            return False
        return True

    async def _download(self) -> Any:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                transport=self._transport,
                headers={"Accept": "application/jwk-set+json, application/json"},
            )
        try:
            async with self._client.stream("GET", self.url) as response:
                if response.status_code != 200:
                    raise JwksError(f"{self.url}: HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self._max_bytes:
                    raise JwksError(f"{self.url}: key set larger than {self._max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise JwksError(f"{self.url}: key set larger than {self._max_bytes} bytes")
        except httpx.HTTPError as error:
            raise JwksError(f"{self.url}: {type(error).__name__}: {error}") from None
        try:
            return json.loads(bytes(body))
        except ValueError:
            raise JwksError(f"{self.url}: answer is not JSON") from None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch once (a failure is logged, not raised) and keep refreshing in the background."""
        await self._fetch_quietly()
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_loop(), name=f"jwks {self.url}")

    async def _refresh_loop(self) -> None:
        while True:
            # Healthy: every refresh_interval. After a failure (at start, in the loop or on an
            # unknown kid): again after min_refetch_interval, so an outage ends soon.
            await asyncio.sleep(self._refresh_interval if self._healthy else self._min_refetch)
            async with self._lock:
                await self._fetch_quietly()

    async def close(self) -> None:
        """Stop the background task and close the HTTP client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
