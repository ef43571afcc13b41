"""The LDAP :class:`~gateway.identity.model.UserBackend`: blocking directory calls in a
thread pool, retried, behind a circuit breaker.

Transient failures (connection refused or reset, timeouts, busy/unavailable) are retried
``retries`` times with exponential backoff. ``circuit_breaker_failures`` failed calls in a
row open a circuit breaker: logins then fail at once with :class:`DirectoryUnavailable`
until a probe after ``circuit_breaker_reset`` seconds succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.identity.circuit import CircuitBreaker, CircuitState
from gateway.identity.ldap.config import LdapConfig, client_tls, read_ca_certificate
from gateway.identity.ldap.directory import Directory
from gateway.identity.ldap.errors import DirectoryError
from gateway.identity.ldap.settings import LdapSettings
from gateway.identity.model import DirectoryUnavailable, User
from gateway.observability.throttle import log_throttled

__all__ = ["LdapBackend"]

logger = logging.getLogger("gateway.identity.ldap")

T = TypeVar("T")

_MAX_INPUT = 256  # longest username we send to the directory
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0


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
        self._directory: Directory | None = None
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
        self._directory = Directory(self.config, client_tls(self.config, ca_data))
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

    def _require_started(self) -> Directory:
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
        except (DirectoryError, TimeoutError) as error:
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
            except DirectoryError as error:
                if not error.transient or attempt >= self.config.retries:
                    raise
                logger.info("LDAP attempt %d failed, retrying: %s", attempt + 1, error)
            except Exception as error:  # ldap3 or its decoders failing in a way we did not foresee
                logger.exception("LDAP operation failed unexpectedly")
                raise DirectoryError(f"{type(error).__name__}: {error}", transient=False) from None
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
