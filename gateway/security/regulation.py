"""Brute-force regulation: failed logins ban a user and an IP for a while.

``max_retries`` failures within ``find_time`` ban the user (and, counted separately, the
client IP) for ``ban_time``; ``max_retries: 0`` turns regulation off. Counters and bans
live in the session store's backend (memory, SQLite or Redis), so every replica sharing
that backend enforces the same bans. A backend that cannot be reached raises
``SessionStoreUnavailable``: the caller must refuse the login.

Usernames are compared case-insensitively. IPv6 clients are counted per /64, the
smallest block a single host or customer usually holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.config.settings import Settings
from gateway.net import address_or_none, parse_network
from gateway.security.settings import RegulationSettings

__all__ = ["Ban", "RegulationBackend", "Regulator", "ip_subject", "user_subject"]

_USER = "user:"
_IP = "ip:"


class RegulationBackend(Protocol):
    """Failure windows and bans for opaque subjects (``user:alice``, ``ip:192.0.2.1``).

    Every method is atomic across the processes sharing the backend; times are epoch
    seconds from the caller's clock, so a backend needs no clock of its own.
    """

    async def record_failure(
        self, subject: str, *, now: float, find_time: float, max_retries: int, ban_time: float
    ) -> bool:
        """Count one failure; ban ``subject`` until ``now + ban_time`` and return True when
        the failures within ``find_time`` reach ``max_retries``."""
        ...

    async def is_banned(self, subjects: Sequence[str], *, now: float) -> bool:
        """Whether any of ``subjects`` is banned at ``now``."""
        ...

    async def clear_failures(self, subject: str) -> None:
        """Forget the failures of ``subject`` (not its ban)."""
        ...

    async def clear(self, subject: str | None, *, now: float) -> int:
        """Lift the ban and forget the failures of ``subject`` (of everyone if None);
        returns how many active bans were lifted."""
        ...

    async def bans(self, *, now: float) -> list[tuple[str, float]]:
        """Active bans as ``(subject, until)``, soonest end first."""
        ...


class _HasRegulation(Protocol):
    @property
    def regulation(self) -> RegulationBackend: ...


@dataclass(frozen=True, slots=True)
class Ban:
    """An active ban: of a user or of an IP address / IPv6 /64, until an epoch time."""

    kind: Literal["user", "ip"]
    value: str
    until: float


def user_subject(username: str) -> str:
    return _USER + username.strip().casefold()


def ip_subject(ip: str) -> str:
    """``ip:192.0.2.1``; IPv6 addresses count per /64, IPv4-mapped ones as IPv4."""
    text = ip.strip()
    address = address_or_none(text)
    if address is None:
        try:
            return _IP + str(parse_network(text))
        except ValueError:
            return _IP + text.lower()
    if isinstance(address, ipaddress.IPv6Address):
        return _IP + str(ipaddress.IPv6Network((address, 64), strict=False))
    return _IP + str(address)


def _parse_subject(subject: str, until: float) -> Ban:
    if subject.startswith(_USER):
        return Ban("user", subject[len(_USER) :], until)
    return Ban("ip", subject.removeprefix(_IP), until)


class Regulator:
    """Decides whether a login attempt may proceed and counts the ones that failed."""

    def __init__(
        self,
        settings: RegulationSettings,
        backend: RegulationBackend,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._max_retries = settings.max_retries
        self._find_time = settings.find_time
        self._ban_time = settings.ban_time

    @classmethod
    def from_settings(
        cls, settings: Settings, store: _HasRegulation, *, clock: Callable[[], float] = time.time
    ) -> Regulator:
        """A regulator keeping its counters in the session store's backend."""
        return cls(settings.regulation, store.regulation, clock=clock)

    @property
    def enabled(self) -> bool:
        return self._max_retries > 0

    def _subjects(self, username: str | None, ip: str | None) -> list[str]:
        subjects = []
        if username:
            subjects.append(user_subject(username))
        if ip:
            subjects.append(ip_subject(ip))
        return subjects

    async def is_banned(self, username: str | None, ip: str | None) -> bool:
        """Whether the user or the IP is banned now; check before verifying a password."""
        subjects = self._subjects(username, ip)
        if not self.enabled or not subjects:
            return False
        return await self._backend.is_banned(subjects, now=self._clock())

    async def record_failure(self, username: str | None, ip: str | None) -> bool:
        """Count a failed login for the user and for the IP; True if it started a ban."""
        if not self.enabled:
            return False
        now = self._clock()
        banned = False
        for subject in self._subjects(username, ip):
            banned |= await self._backend.record_failure(
                subject,
                now=now,
                find_time=self._find_time,
                max_retries=self._max_retries,
                ban_time=self._ban_time,
            )
        return banned

    async def record_success(self, username: str, ip: str | None = None) -> None:
        """Forget the user's failures. The IP's stay: one valid account must not reset the
        count of an address that is guessing passwords for many."""
        if self.enabled and username:
            await self._backend.clear_failures(user_subject(username))

    async def list_bans(self) -> list[Ban]:
        """Active bans, soonest end first."""
        now = self._clock()
        active = await self._backend.bans(now=now)
        return [_parse_subject(subject, until) for subject, until in active]

    async def clear(self, username: str | None = None, ip: str | None = None) -> int:
        """Lift the bans (and forget the failures) of a user and/or an IP; of everyone when
        neither is given. Returns how many active bans were lifted."""
        now = self._clock()
        subjects = self._subjects(username, ip)
        if not subjects:
            return await self._backend.clear(None, now=now)
        lifted = 0
        for subject in subjects:
            lifted += await self._backend.clear(subject, now=now)
        return lifted


class ResponseTimer:
    """Typical duration of a password check, so refused attempts are answered as slowly.

    A banned login is refused without asking the directory (which could lock accounts);
    waiting as long as a real check keeps the refusal from telling an attacker anything.
    """

    def __init__(self, initial: float = 0.25) -> None:
        self._average = initial

    def observe(self, seconds: float) -> None:
        self._average = 0.8 * self._average + 0.2 * min(seconds, 5.0)

    async def wait(self, since: float) -> None:
        """Sleep until a typical check started at ``since`` (``time.monotonic()``) would end."""
        remaining = self._average - (time.monotonic() - since)
        if remaining > 0:
            await asyncio.sleep(remaining)
