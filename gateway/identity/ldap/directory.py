"""Synchronous operations on the directory (they run in worker threads), one attempt each.

Several URLs fail over in order; a server that refused a connection is tried last for a
while. A search runs on a pooled service-account connection; a password is checked by
binding as the user's DN on a connection of its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core import results
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)

from gateway.identity.ldap.config import LdapConfig
from gateway.identity.ldap.errors import DirectoryError
from gateway.identity.ldap.filters import first_rdn, render
from gateway.identity.ldap.pool import ServicePool, close_quietly
from gateway.identity.model import User
from gateway.security.crypto import random_token

__all__ = ["Directory"]

logger = logging.getLogger("gateway.identity.ldap")

T = TypeVar("T")

_TRANSIENT_RESULTS = frozenset(
    {results.RESULT_BUSY, results.RESULT_UNAVAILABLE, results.RESULT_TIME_LIMIT_EXCEEDED}
)
_GROUPS_PAGE = 500
_PAGED_RESULTS = "1.2.840.113556.1.4.319"


class _StaleConnection(Exception):
    """A reused pooled connection failed; retry once on a fresh one."""


def _transient(error: LDAPException | OSError) -> DirectoryError:
    return DirectoryError(f"{type(error).__name__}: {error}", transient=True)


def _is_connection_error(error: BaseException) -> bool:
    return isinstance(
        error, LDAPCommunicationError | LDAPResponseTimeoutError | LDAPStartTLSError | OSError
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    dn: str
    attributes: Mapping[str, tuple[str, ...]]  # lower-cased attribute names

    def first(self, attribute: str) -> str | None:
        values = self.attributes.get(attribute.lower())
        return values[0] if values else None

    def all(self, attribute: str) -> tuple[str, ...]:
        return self.attributes.get(attribute.lower(), ())


def _entries(response: Sequence[Mapping[str, Any]] | None) -> list[_Entry]:
    found = []
    for item in response or ():
        if item.get("type") != "searchResEntry":
            continue  # search references (AD referrals) are not followed
        attributes = {
            str(name).lower(): tuple(
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
            )
            for name, values in (item.get("raw_attributes") or {}).items()
        }
        found.append(_Entry(str(item["dn"]), attributes))
    return found


class Directory:
    """Synchronous operations on the directory; thread-safe, one attempt each."""

    def __init__(self, config: LdapConfig, tls: ldap3.Tls | None) -> None:
        self.config = config
        self._servers = [self._server(url, tls) for url in config.urls]
        self._down_until = [0.0] * len(self._servers)
        self._lock = threading.Lock()
        self._pool = ServicePool(
            self._connect_service,
            config.pool_size,
            wait=config.connect_timeout + config.read_timeout,
        )
        # Unknown users get a failed bind too, so they take as long as a wrong password.
        self._decoy_dn = f"cn=gateway-decoy-{random_token(12)},{config.users_base}"

    def _server(self, url: str, tls: ldap3.Tls | None) -> ldap3.Server:
        parts = urlsplit(url)
        secure = parts.scheme == "ldaps"
        return ldap3.Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=self.config.connect_timeout,
            mode=ldap3.IP_SYSTEM_DEFAULT,
        )

    # -- connections -----------------------------------------------------------------------

    def _server_order(self) -> list[int]:
        now = time.monotonic()
        with self._lock:
            up = [i for i, until in enumerate(self._down_until) if until <= now]
            down = sorted(
                (i for i, until in enumerate(self._down_until) if until > now),
                key=lambda i: self._down_until[i],
            )
        return up + down

    def _set_down(self, index: int, down: bool) -> None:
        hold = max(self.config.circuit_breaker_reset, 5.0) if down else 0.0
        with self._lock:
            self._down_until[index] = time.monotonic() + hold

    def _open(self, user: str | None, password: str | None) -> ldap3.Connection:
        """An open (not yet bound) connection to the first server that answers."""
        failures = []
        for index in self._server_order():
            server = self._servers[index]
            connection = ldap3.Connection(
                server,
                user=user,
                password=password,
                authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
                client_strategy=ldap3.SYNC,
                auto_bind=ldap3.AUTO_BIND_NONE,
                auto_referrals=False,
                check_names=False,
                read_only=True,
                raise_exceptions=False,
                # ldap3 packs this into SO_RCVTIMEO, which needs whole seconds.
                receive_timeout=max(1, math.ceil(self.config.read_timeout)),
            )
            try:
                connection.open()
                if self.config.start_tls and not server.ssl and not connection.start_tls():
                    raise LDAPStartTLSError(f"StartTLS refused: {connection.result}")
            except LDAPException as error:
                close_quietly(connection)
                self._set_down(index, True)
                failures.append(f"{self.config.urls[index]}: {error}")
                continue
            self._set_down(index, False)
            return connection
        raise DirectoryError(
            "no LDAP server answered (" + "; ".join(failures) + ")", transient=True
        )

    def _connect_service(self) -> ldap3.Connection:
        bind_dn = self.config.bind_dn or None
        connection = self._open(bind_dn, self.config.bind_password if bind_dn else None)
        try:
            if bind_dn is not None and not connection.bind():
                raise self._result_error("service account bind", connection.result)
        except LDAPException as error:
            close_quietly(connection)
            if _is_connection_error(error):
                raise _transient(error) from None
            # e.g. a configured service account with an empty password
            message = f"service account bind failed: {type(error).__name__}: {error}"
            raise DirectoryError(message, transient=False) from None
        except BaseException:
            close_quietly(connection)
            raise
        return connection

    @staticmethod
    def _result_error(what: str, result: Mapping[str, Any] | None) -> DirectoryError:
        result = result or {}
        code = result.get("result")
        description = result.get("description", "")
        message = str(result.get("message") or "").strip()
        detail = f"{what} failed: {code} {description}" + (f" ({message})" if message else "")
        return DirectoryError(detail, transient=code in _TRANSIENT_RESULTS)

    def _with_service(self, operation: Callable[[ldap3.Connection], T]) -> T:
        """Run ``operation`` on a pooled connection; a dead reused one is replaced once."""
        for fresh in (False, True):
            try:
                with self._pool.connection(fresh=fresh) as (connection, reused):
                    try:
                        return operation(connection)
                    except LDAPException as error:
                        # A reused connection the server has closed (restart, idle timeout)
                        # is no sign of trouble; a timeout is, and is not worth a second wait.
                        closed = _is_connection_error(error) and not isinstance(error, TimeoutError)
                        if closed and reused and not fresh:
                            raise _StaleConnection from None
                        if _is_connection_error(error):
                            raise _transient(error) from None
                        message = f"{type(error).__name__}: {error}"
                        raise DirectoryError(message, transient=False) from None
            except _StaleConnection:
                self._pool.clear()
        raise AssertionError("unreachable")

    # -- operations ------------------------------------------------------------------------

    def _search(
        self,
        connection: ldap3.Connection,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        *,
        size_limit: int = 0,
        paged: bool = False,
    ) -> tuple[list[_Entry], bool]:
        """Entries found and whether the size limit cut the answer short."""
        entries: list[_Entry] = []
        cookie: Any = None
        while True:
            connection.search(
                base,
                search_filter,
                ldap3.SUBTREE,
                attributes=list(attributes),
                size_limit=size_limit,
                time_limit=max(1, int(self.config.read_timeout)),
                paged_size=_GROUPS_PAGE if paged else None,
                paged_cookie=cookie,
            )
            result = connection.result or {}
            code = result.get("result")
            entries.extend(_entries(connection.response))
            if code == results.RESULT_SIZE_LIMIT_EXCEEDED:
                return entries, True
            if code != results.RESULT_SUCCESS:
                raise self._result_error(f"search in {base}", result)
            controls = result.get("controls") or {}
            cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not paged or not cookie:
                return entries, False

    def find_user(self, username: str) -> _Entry | None:
        config = self.config
        search_filter = render(config.users_filter, {"input": username})
        wanted = [
            config.username_attribute,
            config.display_name_attribute,
            config.mail_attribute,
        ]
        if config.group_search_mode == "memberof":
            wanted.append(config.member_of_attribute)

        def search(connection: ldap3.Connection) -> tuple[list[_Entry], bool]:
            return self._search(connection, config.users_base, search_filter, wanted, size_limit=2)

        entries, truncated = self._with_service(search)
        if len(entries) > 1 or truncated:
            logger.warning(
                "LDAP users_filter matched several entries for one username; refusing it "
                "(make the filter match one entry): %s",
                search_filter,
            )
            return None
        return entries[0] if entries else None

    def groups_of(self, entry: _Entry, username: str, typed: str) -> tuple[str, ...]:
        config = self.config
        names: list[str] = []
        if config.group_search_mode == "memberof":
            for dn in entry.all(config.member_of_attribute):
                rdn = first_rdn(dn)
                if rdn is not None:
                    names.append(rdn[1])
        else:
            search_filter = render(
                config.groups_filter, {"dn": entry.dn, "username": username, "input": typed}
            )
            attribute = config.group_name_attribute

            def search(connection: ldap3.Connection) -> tuple[list[_Entry], bool]:
                return self._search(
                    connection, config.groups_base, search_filter, [attribute], paged=True
                )

            groups, _ = self._with_service(search)
            names = [name for group in groups if (name := group.first(attribute))]
        return tuple(sorted(set(names), key=lambda name: (name.lower(), name)))

    def user(self, entry: _Entry, typed: str) -> User:
        config = self.config
        usernames = entry.all(config.username_attribute)
        # The directory's spelling is canonical ("JOHN" logs in as "john"); with several
        # values (or a login by userPrincipalName), prefer the one that was typed.
        username = next(
            (name for name in usernames if name.lower() == typed.lower()),
            usernames[0] if usernames else typed,
        )
        return User(
            username=username,
            display_name=entry.first(config.display_name_attribute) or username,
            email=entry.first(config.mail_attribute) or "",
            groups=self.groups_of(entry, username, typed),
        )

    def password_matches(self, dn: str, password: str) -> bool:
        """Bind as ``dn``: True on success, False when the directory says no."""
        try:
            connection = self._open(dn, password)
        except LDAPException as error:
            raise _transient(error) from None
        try:
            if connection.bind():
                return True
            result = connection.result or {}
            if result.get("result") in _TRANSIENT_RESULTS:
                raise self._result_error("user bind", result)
            # invalidCredentials, but also locked, expired or restricted accounts
            logger.debug("LDAP bind refused: %s %s", result.get("result"), result.get("message"))
            return False
        except LDAPException as error:
            raise _transient(error) from None
        finally:
            close_quietly(connection)

    def authenticate(self, username: str, password: str) -> User | None:
        entry = self.find_user(username)
        if entry is None:
            self.password_matches(self._decoy_dn, password)
            return None
        if not self.password_matches(entry.dn, password):
            return None
        return self.user(entry, username)

    def get_user(self, username: str) -> User | None:
        entry = self.find_user(username)
        return None if entry is None else self.user(entry, username)

    def ping(self) -> None:
        """Bind as the service account (raises :class:`DirectoryError` if that fails)."""
        self._with_service(lambda connection: None)

    def close(self) -> None:
        self._pool.clear()
