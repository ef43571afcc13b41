"""Users in an LDAP directory (OpenLDAP, Active Directory, ...), through ldap3.

* A service account searches for the user with ``users_filter``; the password is checked by
  binding as the DN found (an empty password is refused first: it would be an
  unauthenticated bind, which many servers accept). Groups come from ``groups_filter`` or
  from the user's ``memberOf`` values.
* Every value put into a filter is escaped (RFC 4515), see :mod:`gateway.identity.ldap.filters`.
* Several URLs fail over in order; a server that refused a connection is tried last for a
  while. LDAPS or StartTLS verify the server against ``ca_certificate`` (or the system CAs).
* Blocking ldap3 calls run in a thread pool of ``pool_size`` threads, next to a pool of at most
  ``pool_size`` service-account connections.
* Transient failures (connection refused or reset, timeouts, busy/unavailable) are retried
  ``retries`` times with exponential backoff. ``circuit_breaker_failures`` failed calls in a
  row open a circuit breaker: logins then fail at once with :class:`DirectoryUnavailable`
  until a probe after ``circuit_breaker_reset`` seconds succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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

from gateway.config.yaml import ConfigError, Issue, Position, read_file
from gateway.identity.circuit import CircuitBreaker, CircuitState
from gateway.identity.ldap.filters import (
    PRESETS,
    filter_problem,
    first_rdn,
    placeholders,
    render,
)
from gateway.identity.ldap.settings import LdapSettings
from gateway.identity.model import DirectoryUnavailable, User
from gateway.observability.throttle import log_throttled
from gateway.security.crypto import random_token

__all__ = ["LdapBackend", "LdapConfig", "read_ca_certificate"]

logger = logging.getLogger("gateway.identity.ldap")

T = TypeVar("T")

_TRANSIENT_RESULTS = frozenset(
    {results.RESULT_BUSY, results.RESULT_UNAVAILABLE, results.RESULT_TIME_LIMIT_EXCEEDED}
)
_MAX_INPUT = 256  # longest username we send to the directory
_MAX_IDLE = 60.0  # seconds an idle service connection may wait before it is replaced
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0
_GROUPS_PAGE = 500
_PAGED_RESULTS = "1.2.840.113556.1.4.319"


class _DirectoryError(Exception):
    """The directory could not answer; ``transient`` errors are worth retrying."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class _StaleConnection(Exception):
    """A reused pooled connection failed; retry once on a fresh one."""


def _transient(error: LDAPException | OSError) -> _DirectoryError:
    return _DirectoryError(f"{type(error).__name__}: {error}", transient=True)


def _is_connection_error(error: BaseException) -> bool:
    return isinstance(
        error, LDAPCommunicationError | LDAPResponseTimeoutError | LDAPStartTLSError | OSError
    )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LdapConfig:
    """:class:`LdapSettings` with the ``implementation`` preset applied and checked."""

    urls: tuple[str, ...]
    start_tls: bool
    ca_certificate: Path | None
    tls_skip_verify: bool
    users_base: str
    groups_base: str
    users_filter: str
    """Template with only ``{input}`` left (attribute placeholders are filled in)."""
    groups_filter: str
    group_search_mode: str
    bind_dn: str
    bind_password: str
    username_attribute: str
    display_name_attribute: str
    mail_attribute: str
    group_name_attribute: str
    member_of_attribute: str
    connect_timeout: float
    read_timeout: float
    pool_size: int
    retries: int
    circuit_breaker_failures: int
    circuit_breaker_reset: float
    refresh_interval: float

    @classmethod
    def from_settings(
        cls, settings: LdapSettings, *, where: Callable[[str], Position | None] | None = None
    ) -> LdapConfig:
        """Apply the preset to options left unset; raises :class:`ConfigError` on bad filters.

        ``where(option)`` gives the position of an ``authentication.ldap`` option in
        ``gateway.yml``, for issues that point at the line to fix.
        """
        preset = PRESETS[settings.implementation]
        explicit = settings.model_fields_set
        explicit_attributes = settings.attributes.model_fields_set

        def option(name: str) -> Any:
            return getattr(settings, name) if name in explicit else getattr(preset, name)

        def attribute(name: str) -> str:
            if name in explicit_attributes:
                return str(getattr(settings.attributes, name))
            return str(getattr(preset, name))

        attributes = {
            "username_attribute": attribute("username"),
            "display_name_attribute": attribute("display_name"),
            "mail_attribute": attribute("mail"),
            "group_name_attribute": attribute("group_name"),
            "member_of_attribute": attribute("member_of"),
        }
        users_filter = str(option("users_filter"))
        groups_filter = str(option("groups_filter"))
        group_search_mode = str(option("group_search_mode"))
        issues: list[Issue] = []

        def problem(message: str, option: str) -> None:
            position = where(option) if where is not None else None
            issues.append(Issue(position, f"authentication.ldap: {message}"))

        for name, value in attributes.items():
            users_filter = users_filter.replace("{" + name + "}", value)
        unknown = placeholders(users_filter) - {"input"}
        if "input" not in placeholders(users_filter):
            problem(
                f"users_filter {users_filter!r} must contain {{input}} (the username typed)",
                "users_filter",
            )
        if unknown:
            names = ", ".join(sorted("{" + name + "}" for name in unknown))
            problem(
                f"users_filter has unknown placeholders {names} (known: {{input}}, "
                "{username_attribute}, {mail_attribute}, {display_name_attribute})",
                "users_filter",
            )
        elif reason := filter_problem(render(users_filter, {"input": "x"})):
            problem(
                f"users_filter {users_filter!r} is not a valid LDAP filter ({reason})",
                "users_filter",
            )
        if group_search_mode == "filter":
            group_placeholders = placeholders(groups_filter)
            if group_placeholders - {"dn", "username", "input"}:
                problem(
                    f"groups_filter {groups_filter!r} may only use {{dn}}, {{username}}, {{input}}",
                    "groups_filter",
                )
            elif not group_placeholders:
                problem(
                    f"groups_filter {groups_filter!r} must contain {{dn}} or {{username}}",
                    "groups_filter",
                )
            elif reason := filter_problem(
                render(groups_filter, {"dn": "cn=x", "username": "x", "input": "x"})
            ):
                problem(
                    f"groups_filter {groups_filter!r} is not a valid LDAP filter ({reason})",
                    "groups_filter",
                )
        if issues:
            raise ConfigError(issues)
        return cls(
            urls=settings.urls,
            start_tls=settings.start_tls,
            ca_certificate=settings.ca_certificate,
            tls_skip_verify=settings.tls_skip_verify,
            users_base=_join_dn(settings.additional_users_dn, settings.base_dn),
            groups_base=_join_dn(settings.additional_groups_dn, settings.base_dn),
            users_filter=users_filter,
            groups_filter=groups_filter,
            group_search_mode=group_search_mode,
            bind_dn=settings.user,
            bind_password=settings.password,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            pool_size=settings.pool_size,
            retries=settings.retries,
            circuit_breaker_failures=settings.circuit_breaker_failures,
            circuit_breaker_reset=settings.circuit_breaker_reset,
            refresh_interval=settings.refresh_interval,
            **attributes,
        )


def _join_dn(prefix: str, base: str) -> str:
    prefix = prefix.strip().strip(",")
    return f"{prefix},{base}" if prefix else base


# --------------------------------------------------------------------------------------------
# Blocking directory access (runs in worker threads)
# --------------------------------------------------------------------------------------------


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


def _close_quietly(connection: ldap3.Connection) -> None:
    with contextlib.suppress(Exception):
        connection.unbind()


class _ServicePool:
    """At most ``size`` connections bound as the service account, reused LIFO."""

    def __init__(self, connect: Callable[[], ldap3.Connection], size: int, wait: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._wait = wait
        self._lock = threading.Lock()
        self._idle: list[tuple[ldap3.Connection, float]] = []

    @contextlib.contextmanager
    def connection(self, *, fresh: bool = False) -> Iterator[tuple[ldap3.Connection, bool]]:
        """A bound connection and whether it was reused; dropped if the block raises."""
        if not self._slots.acquire(timeout=self._wait):
            raise _DirectoryError("no free LDAP connection in the pool", transient=True)
        try:
            connection = None if fresh else self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = self._connect()
            try:
                yield connection, reused
            except BaseException:
                _close_quietly(connection)
                raise
            with self._lock:
                self._idle.append((connection, time.monotonic()))
        finally:
            self._slots.release()

    def _take_idle(self) -> ldap3.Connection | None:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                connection, since = self._idle.pop()
                if now - since <= _MAX_IDLE:
                    return connection
                _close_quietly(connection)
        return None

    def clear(self) -> None:
        """Close every idle connection (after one of them turned out to be dead)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            _close_quietly(connection)


class _Directory:
    """Synchronous operations on the directory; thread-safe, one attempt each."""

    def __init__(self, config: LdapConfig, tls: ldap3.Tls | None) -> None:
        self.config = config
        self._servers = [self._server(url, tls) for url in config.urls]
        self._down_until = [0.0] * len(self._servers)
        self._lock = threading.Lock()
        self._pool = _ServicePool(
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
                _close_quietly(connection)
                self._set_down(index, True)
                failures.append(f"{self.config.urls[index]}: {error}")
                continue
            self._set_down(index, False)
            return connection
        raise _DirectoryError(
            "no LDAP server answered (" + "; ".join(failures) + ")", transient=True
        )

    def _connect_service(self) -> ldap3.Connection:
        bind_dn = self.config.bind_dn or None
        connection = self._open(bind_dn, self.config.bind_password if bind_dn else None)
        try:
            if bind_dn is not None and not connection.bind():
                raise self._result_error("service account bind", connection.result)
        except LDAPException as error:
            _close_quietly(connection)
            if _is_connection_error(error):
                raise _transient(error) from None
            # e.g. a configured service account with an empty password
            message = f"service account bind failed: {type(error).__name__}: {error}"
            raise _DirectoryError(message, transient=False) from None
        except BaseException:
            _close_quietly(connection)
            raise
        return connection

    @staticmethod
    def _result_error(what: str, result: Mapping[str, Any] | None) -> _DirectoryError:
        result = result or {}
        code = result.get("result")
        description = result.get("description", "")
        message = str(result.get("message") or "").strip()
        detail = f"{what} failed: {code} {description}" + (f" ({message})" if message else "")
        return _DirectoryError(detail, transient=code in _TRANSIENT_RESULTS)

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
                        raise _DirectoryError(message, transient=False) from None
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
            _close_quietly(connection)

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
        """Bind as the service account (raises :class:`_DirectoryError` if that fails)."""
        self._with_service(lambda connection: None)

    def close(self) -> None:
        self._pool.clear()


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------


def read_ca_certificate(config: LdapConfig, *, referenced_at: Position | None = None) -> str | None:
    """The PEM text of ``ca_certificate`` when it is used (blocking); raises
    :class:`ConfigError`. ``referenced_at`` is the option's line in ``gateway.yml``."""
    if config.ca_certificate is None or config.tls_skip_verify:
        return None
    path = config.ca_certificate
    label = f"authentication.ldap.ca_certificate {path}"
    try:
        return read_file(path, referenced_at=referenced_at, label=label).decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            [Issue(referenced_at, f"{label}: not a PEM file (it is not ASCII text)")]
        ) from None


def _tls(config: LdapConfig, ca_data: str | None) -> ldap3.Tls | None:
    secure = config.start_tls or any(url.startswith("ldaps://") for url in config.urls)
    if not secure:
        return None
    if config.tls_skip_verify:
        logger.warning("LDAP: tls_skip_verify is set; the directory's certificate is NOT checked")
        return ldap3.Tls(validate=ssl.CERT_NONE, version=ssl.PROTOCOL_TLS_CLIENT)
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_data=ca_data,
    )


class LdapBackend:
    """:class:`~gateway.identity.model.UserBackend` over an LDAP directory."""

    def __init__(
        self,
        settings: LdapSettings,
        *,
        backoff_first: float = _BACKOFF_FIRST,
        backoff_max: float = _BACKOFF_MAX,
    ) -> None:
        self.config = LdapConfig.from_settings(settings)
        self.breaker = CircuitBreaker(
            self.config.circuit_breaker_failures, self.config.circuit_breaker_reset
        )
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._directory: _Directory | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._probe: asyncio.Task[None] | None = None
        config = self.config
        per_attempt = len(config.urls) * config.connect_timeout + 6 * config.read_timeout
        # A safety net above ldap3's own timeouts: a call never takes longer than this.
        self._deadline = (config.retries + 1) * per_attempt + config.retries * backoff_max + 1.0

    @property
    def refresh_interval(self) -> float:
        """How often sessions should re-read their user (``get_user``) from the directory."""
        return self.config.refresh_interval

    async def start(self) -> None:
        ca_data = await asyncio.to_thread(read_ca_certificate, self.config)
        self._directory = _Directory(self.config, _tls(self.config, ca_data))
        self._executor = ThreadPoolExecutor(self.config.pool_size, thread_name_prefix="ldap")
        self._probe = asyncio.create_task(self._check_reachable(), name="ldap start-up probe")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._directory is not None:
            await asyncio.to_thread(self._directory.close)

    async def authenticate(self, username: str, password: str) -> User | None:
        # An empty password would be an "unauthenticated bind", which succeeds on many servers.
        if not password or not username or len(username) > _MAX_INPUT:
            return None
        directory = self._require_started()
        return await self._call(directory.authenticate, username, password)

    async def get_user(self, username: str) -> User | None:
        if not username or len(username) > _MAX_INPUT:
            return None
        directory = self._require_started()
        return await self._call(directory.get_user, username)

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> _Directory:
        if self._directory is None:
            raise RuntimeError("LdapBackend.start() was not called")
        return self._directory

    async def _call(self, operation: Callable[..., T], *args: Any) -> T:
        if not self.breaker.allow():
            raise DirectoryUnavailable()
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._attempts, operation, *args),
                self._deadline,
            )
        except (_DirectoryError, TimeoutError) as error:
            self._failed(error)
            raise DirectoryUnavailable() from None
        self.breaker.record_success()
        return result

    def _failed(self, error: BaseException) -> None:
        was_open = self.breaker.state is not CircuitState.CLOSED
        self.breaker.record_failure()
        reason = str(error) or type(error).__name__
        if self.breaker.state is CircuitState.OPEN and not was_open:
            logger.error(
                "LDAP directory unavailable, circuit open for %.0fs: %s",
                self.config.circuit_breaker_reset,
                reason,
            )
        else:
            # Once per interval: every login fails alike while the directory is down.
            log_throttled(logger, "unavailable", "LDAP directory unavailable: %s", reason)

    def _attempts(self, operation: Callable[..., T], *args: Any) -> T:
        """Call ``operation``, retrying transient failures with exponential backoff."""
        delay = self._backoff_first
        for attempt in itertools.count():
            try:
                return operation(*args)
            except _DirectoryError as error:
                if not error.transient or attempt >= self.config.retries:
                    raise
                logger.info("LDAP attempt %d failed, retrying: %s", attempt + 1, error)
            except Exception as error:  # ldap3 or its decoders failing in a way we did not foresee
                logger.exception("LDAP operation failed unexpectedly")
                raise _DirectoryError(f"{type(error).__name__}: {error}", transient=False) from None
            # Jitter spreads the retries of many gateways; it needs no cryptographic quality.
            time.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            delay = min(delay * 2, self._backoff_max)
        raise AssertionError("unreachable")

    async def _check_reachable(self) -> None:
        directory = self._require_started()
        try:
            await self._call(directory.ping)
        except DirectoryUnavailable:
            logger.error(
                "LDAP directory %s not reachable at start-up; logins fail until it is",
                ", ".join(self.config.urls),
            )
        else:
            logger.info("LDAP directory reachable (%s)", ", ".join(self.config.urls))
