"""Who a person is: the :class:`User` record and the :class:`UserBackend` protocol.

A backend answers two questions: "is this the password of that user?" (:meth:`authenticate`)
and "who is this user now?" (:meth:`get_user`, which the session layer calls every
``refresh_interval`` to pick up group changes and disabled accounts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.errors import Unavailable

if TYPE_CHECKING:
    from gateway.config.settings import Settings

__all__ = [
    "DirectoryUnavailable",
    "Generational",
    "User",
    "UserBackend",
    "create_user_backend",
]


@dataclass(frozen=True, slots=True)
class User:
    """A person as the gateway sees them; ``username`` is the canonical spelling."""

    username: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    disabled: bool = False


class DirectoryUnavailable(Unavailable):
    """The user directory cannot answer (down, timing out, or its circuit breaker is open).

    The message is safe to show to the person logging in.
    """

    def __init__(self, message: str = "directory unavailable") -> None:
        super().__init__(message)


class UserBackend(Protocol):
    """Where users and their passwords live (the users file or an LDAP directory)."""

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is theirs and the account is enabled, else None.

        A wrong password, an unknown user and a disabled account are indistinguishable
        (same answer, comparable time). Raises :class:`DirectoryUnavailable`.
        """
        ...

    async def get_user(self, username: str) -> User | None:
        """The user's current record, or None when they are gone or disabled."""
        ...

    async def start(self) -> None:
        """Load the users / open connections; raises on a configuration problem."""
        ...

    async def close(self) -> None:
        """Stop background tasks and release connections."""
        ...


@runtime_checkable
class Generational(Protocol):
    """A backend that can say, for free, whether anything about its users changed.

    ``generation`` moves on whenever any user may have changed (the users file: every reload
    that took effect), so something remembered under one generation (a checked password) is
    known to be stale under the next. A backend that cannot tell cheaply (LDAP) has none.
    """

    @property
    def generation(self) -> int:
        """A number that changes whenever any user's record may have changed."""
        ...


def create_user_backend(settings: Settings) -> UserBackend:
    """The backend ``settings.authentication`` selects (not started yet)."""
    authentication = settings.authentication
    if authentication.backend == "ldap":
        assert authentication.ldap is not None  # guaranteed by AuthenticationSettings
        from gateway.identity.ldap.backend import LdapBackend

        return LdapBackend(authentication.ldap)
    assert authentication.file is not None
    from gateway.identity.users_file import UsersFileBackend

    return UsersFileBackend(authentication.file.path, watch=authentication.file.watch)
