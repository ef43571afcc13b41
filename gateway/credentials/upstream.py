"""Credential exchange: the answer for an API host carries the upstream's own credential.

A client presents its own revocable key; the gateway's 2xx answer adds, say,
``Authorization: Bearer <service master key>``, and Caddy copies that header onto the
request it proxies (``copy_headers Authorization``), replacing what the client sent. The
service's credential is read from encrypted storage (``get_secret(name)``) once and then
kept in memory; :meth:`UpstreamCredentials.load` reads them all at start-up so a request
never waits for the database.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import Unavailable
from gateway.observability.logging import register_secrets

__all__ = [
    "SecretSource",
    "UpstreamCredentials",
    "UpstreamHeader",
    "UpstreamUnavailable",
]

log = logging.getLogger(__name__)

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


class SecretSource(Protocol):
    """Where named secrets live (``Storage.secrets`` fits)."""

    async def get_secret(self, name: str) -> str | None: ...


class UpstreamUnavailable(Unavailable):
    """A secret an API host needs is missing or unreadable; the message names it (not its value)."""


@dataclass(frozen=True, slots=True)
class UpstreamHeader:
    """One header to send upstream: ``header: format.format(secret=<value of secret>)``."""

    header: str
    secret: str
    format: str = "Bearer {secret}"

    def __post_init__(self) -> None:
        if not _HEADER_NAME.fullmatch(self.header):
            raise ValueError(f"'{self.header}' is not an HTTP header name")
        if self.format.count("{secret}") != 1:
            raise ValueError(f"format '{self.format}' must contain {{secret}} exactly once")


class UpstreamCredentials:
    """Named secrets, read once and kept in memory, rendered into upstream headers."""

    def __init__(
        self,
        source: SecretSource | None,
        *,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._values: dict[str, str] = {}
        self._missing: dict[str, tuple[float, str]] = {}
        self._retry_after = retry_after
        self._clock = clock

    async def load(self, names: Iterable[str]) -> None:
        """Read these secrets now (at start-up, on a policy reload), even one that failed a
        moment ago; raises :class:`UpstreamUnavailable` for the first that cannot be read
        (a value read earlier stays in use)."""
        for name in dict.fromkeys(names):
            try:
                await self._read_now(name)
            except UpstreamUnavailable as error:
                self._missing[name] = (self._clock() + self._retry_after, str(error))
                raise

    def forget(self, name: str | None = None) -> None:
        """Drop cached values (after ``gateway secret`` changed one), so the next use rereads."""
        if name is None:
            self._values.clear()
            self._missing.clear()
        else:
            self._values.pop(name, None)
            self._missing.pop(name, None)

    async def _read(self, name: str) -> str:
        missing = self._missing.get(name)
        if missing is not None and missing[0] > self._clock():
            raise UpstreamUnavailable(missing[1])  # do not ask storage on every request
        try:
            return await self._read_now(name)
        except UpstreamUnavailable as error:
            self._missing[name] = (self._clock() + self._retry_after, str(error))
            raise

    async def _read_now(self, name: str) -> str:
        if self._source is None:
            raise UpstreamUnavailable(f"secret '{name}': no secret storage is configured")
        try:
            value = await self._source.get_secret(name)
        except Exception as error:
            raise UpstreamUnavailable(f"secret '{name}' cannot be read: {error}") from error
        if value is None:
            raise UpstreamUnavailable(
                f"secret '{name}' is not stored "
                f"(store it with `gateway keys upstream-secret {name}`)"
            )
        if any(char in value for char in "\r\n\0"):
            raise UpstreamUnavailable(f"secret '{name}' contains a line break or NUL")
        # Rendered into headers the debug log may show: keep the value itself out of it.
        register_secrets([value])
        self._values[name] = value
        self._missing.pop(name, None)
        return value

    async def headers(self, wanted: Iterable[UpstreamHeader]) -> Mapping[str, str]:
        """The rendered headers; cached values make this a dictionary lookup per header."""
        rendered: dict[str, str] = {}
        for item in wanted:
            value = self._values.get(item.secret)
            if value is None:
                value = await self._read(item.secret)
            rendered[item.header] = item.format.replace("{secret}", value)
        return rendered
