"""A circuit breaker: stop calling a dependency that keeps failing, probe it now and then.

closed ──(``failure_threshold`` consecutive failures)──▶ open ──(``reset_timeout``)──▶ half-open
half-open lets one call through (the probe): success closes the circuit, failure opens it again.
A probe that never reports back (its caller was cancelled) is replaced after ``reset_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Thread-safe; ``allow()`` before a call, then ``record_success()`` or ``record_failure()``."""

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._since = 0.0  # when the circuit opened, or when the current probe started

    @property
    def state(self) -> CircuitState:
        with self._lock:
            if self._state is CircuitState.OPEN and self._elapsed() >= self.reset_timeout:
                return CircuitState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go ahead now (in half-open state: only the one probe)."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._elapsed() < self.reset_timeout:
                return False
            # Open long enough, or the last probe went silent: this call is the probe.
            self._state = CircuitState.HALF_OPEN
            self._since = self._clock()
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = CircuitState.OPEN
                self._since = self._clock()

    def _elapsed(self) -> float:
        return self._clock() - self._since
