"""Checking a password, the one way every sign-in does it: the portal's form and
``Authorization: Basic`` on the authorisation endpoints.

In this order, because each step guards the next:

1. **The ban first.** A banned user or address never reaches the user backend, where
   guessing could lock the account. The refusal looks like a wrong password and comes after
   about as long as a real check takes (:class:`~gateway.security.regulation.ResponseTimer`),
   so it tells an attacker neither that the name exists nor that the guessing was noticed.
2. **The password**, checked by the backend. :class:`~gateway.identity.model.DirectoryUnavailable`
   passes through uncounted: the caller answers "try again".
3. **The attempt recorded**: a failure counts toward a ban; a success forgets the user's
   failures (the address's stay, see :meth:`~gateway.security.regulation.Regulator.record_success`).

Each caller builds its own :class:`PasswordCheck`, and so keeps its own typical duration:
the portal and Basic reach the backend by different paths.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from gateway.identity.model import User, UserBackend
from gateway.observability.logging import printable
from gateway.security.regulation import Regulator, ResponseTimer

__all__ = ["BANNED", "WRONG_PASSWORD", "PasswordCheck", "Refusal"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A password check that said no. Callers tell the person only "incorrect username or
    password", whatever the reason."""

    reason: Literal["banned", "failure"]
    """For metrics: ``banned`` (the password was not checked) or ``failure`` (a wrong
    password, an unknown or a disabled user)."""


BANNED = Refusal("banned")
WRONG_PASSWORD = Refusal("failure")


class PasswordCheck:
    """Regulated, evenly timed password checks for one way of signing in."""

    def __init__(
        self, users: UserBackend, regulator: Regulator, *, log: logging.Logger, attempt: str
    ) -> None:
        """``attempt`` names the way in for the log (``sign-in``, ``basic auth``), which goes
        to the caller's ``log``."""
        self._users = users
        self._regulator = regulator
        self._log = log
        self._attempt = attempt
        self._timer = ResponseTimer()

    async def check(self, username: str, password: str, ip: str | None) -> User | Refusal:
        """The user whose password this is, or why not. Raises ``DirectoryUnavailable`` and
        ``SessionStoreUnavailable`` (where the bans are kept)."""
        started = time.monotonic()
        refusal = await self.check_ban(username, ip, started=started)
        if refusal is not None:
            return refusal
        return await self.check_password(username, password, ip, started=started)

    async def check_ban(self, username: str, ip: str | None, *, started: float) -> Refusal | None:
        """:data:`BANNED`, as late as a password check begun at ``started`` would answer, if
        the user or the address is banned; else None. For a caller with a step between the
        two checks (Basic's cache); :meth:`check` does both."""
        if not await self._regulator.is_banned(username, ip):
            return None
        await self._timer.wait(started)
        self._log.warning(
            "%s refused, banned user=%s ip=%s", self._attempt, printable(username), ip
        )
        return BANNED

    async def check_password(
        self, username: str, password: str, ip: str | None, *, started: float
    ) -> User | Refusal:
        """The password check proper, after :meth:`check_ban`; records the attempt."""
        user = await self._users.authenticate(username, password)
        self._timer.observe(time.monotonic() - started)
        if user is None or user.disabled:
            await self._regulator.record_failure(username, ip)
            self._log.info("%s failed user=%s ip=%s", self._attempt, printable(username), ip)
            return WRONG_PASSWORD
        await self._regulator.record_success(username, ip)
        return user
