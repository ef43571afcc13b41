"""Who a person is: the :class:`User` record and the :class:`UserBackend` protocol.

A backend answers two questions: "is this the password of that user?" (:meth:`authenticate`)
and "who is this user now?" (:meth:`get_user`, which the session layer calls every
``refresh_interval`` to pick up group changes and disabled accounts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.observability.throttle import Outage

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["DirectoryUnavailable", "User", "UserBackend", "create_user_backend"]


@dataclass(frozen=True, slots=True)
class User:
    """A person as the gateway sees them; ``username`` is the canonical spelling."""

    username: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    disabled: bool = False


class DirectoryUnavailable(Outage):
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


def create_user_backend(settings: Settings) -> UserBackend:
    """The backend ``settings.authentication`` selects (not started yet)."""
    authentication = settings.authentication
    if authentication.backend == "ldap":
        assert authentication.ldap is not None  # guaranteed by AuthenticationSettings
        from gateway.identity.ldap import LdapBackend

        return LdapBackend(authentication.ldap)
    assert authentication.file is not None
    from gateway.identity.users_file import UsersFileBackend

    return UsersFileBackend(authentication.file.path, watch=authentication.file.watch)
