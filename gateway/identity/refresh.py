"""Keep a session's idea of its user current: groups change, accounts get disabled.

The session layer calls :meth:`UserRefresher.refresh` with the user it stored and when it last
checked; at most every ``interval`` seconds this asks the backend again (``get_user``). The
users file answers from memory, so its interval is 0 (every request sees an edit at once);
LDAP uses ``authentication.ldap.refresh_interval``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.identity.model import DirectoryUnavailable, User, UserBackend

if TYPE_CHECKING:
    from gateway.config.settings import Settings

__all__ = ["Refreshed", "UserRefresher", "refresh_interval"]

logger = logging.getLogger("gateway.identity")


def refresh_interval(settings: Settings) -> float:
    """Seconds a session may use its stored user before asking the backend again."""
    authentication = settings.authentication
    if authentication.backend == "ldap" and authentication.ldap is not None:
        return authentication.ldap.refresh_interval
    return 0.0


@dataclass(frozen=True, slots=True)
class Refreshed:
    """``user`` None: the account is gone or disabled, end the session."""

    user: User | None
    checked_at: float


class UserRefresher:
    """Re-reads users from the backend at most every ``interval`` seconds per session."""

    def __init__(
        self, backend: UserBackend, interval: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._backend = backend
        self.interval = interval
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, backend: UserBackend) -> UserRefresher:
        return cls(backend, refresh_interval(settings))

    async def refresh(self, user: User, checked_at: float) -> Refreshed:
        """The user as the backend sees them now, or the stored one if not due yet.

        When the directory is unavailable the stored user is kept (an outage does not log
        everyone out) and ``checked_at`` is unchanged, so the next request asks again.
        """
        now = self._clock()
        if now - checked_at < self.interval:
            return Refreshed(user, checked_at)
        try:
            current = await self._backend.get_user(user.username)
        except DirectoryUnavailable:
            logger.warning("could not refresh user %r: directory unavailable", user.username)
            return Refreshed(user, checked_at)
        return Refreshed(current, now)
