"""Rate-limited logging: an outage writes one line per kind per interval, not one per request.

A store that is down fails every request that needs it. Logging each failure (worse, with a
traceback) turns an 18-second Redis outage into megabytes of identical lines and costs the
event loop time exactly when it can least afford it. :func:`log_throttled` lets the first
line of a kind through, counts the repeats, and reports the count with the next line it
lets through an interval later.

Expected outages are exceptions deriving from :class:`~gateway.errors.Unavailable` (session
store, storage, user directory, API key store, upstream secret, key server):
:func:`log_failure` writes them as one line without a traceback. Anything else is a bug or
a surprise and keeps its traceback, rate limited per exception type and raising line, so
distinct bugs are each shown once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from gateway.errors import Unavailable

__all__ = [
    "DEFAULT_INTERVAL",
    "LogThrottle",
    "ThrottlingFilter",
    "default_throttle",
    "log_failure",
    "log_throttled",
]

DEFAULT_INTERVAL = 10.0
"""Seconds between two lines of the same kind."""

_MAX_KEYS = 1024
"""Kinds remembered at once; the oldest is forgotten first (keys come from code, so this
only bounds memory should a caller ever build keys from data)."""


class LogThrottle:
    """Decides which lines of each kind get through: one per ``interval`` seconds."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = _MAX_KEYS,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        # key -> [time of the last line let through, lines held back since]
        self._state: dict[Hashable, list[float]] = {}
        # LDAP and SQLite log from worker threads: the check-and-update must be atomic.
        self._lock = threading.Lock()

    def admit(self, key: Hashable) -> int | None:
        """None to stay quiet; otherwise how many lines of ``key`` were held back before."""
        now = self._clock()
        with self._lock:
            state = self._state.get(key)
            if state is None:
                if len(self._state) >= self._max_keys:
                    del self._state[next(iter(self._state))]
                self._state[key] = [now, 0]
                return 0
            if now - state[0] >= self.interval:
                held_back = int(state[1])
                state[0], state[1] = now, 0
                return held_back
            state[1] += 1
            return None

    def reset(self) -> None:
        """Forget every kind (tests start from a clean slate)."""
        with self._lock:
            self._state.clear()


default_throttle = LogThrottle()
"""The process-wide throttle :func:`log_throttled` uses unless given another."""


def log_throttled(
    logger: logging.Logger,
    key: Hashable,
    message: str,
    *args: object,
    level: int = logging.WARNING,
    exc_info: BaseException | None = None,
    throttle: LogThrottle | None = None,
) -> bool:
    """Log ``message % args`` unless a line of the same ``key`` went out within the interval.

    Returns whether the line was written. A line that follows held-back ones says how many.
    """
    if not logger.isEnabledFor(level):
        return False
    throttle = throttle or default_throttle
    held_back = throttle.admit((logger.name, key))
    if held_back is None:
        return False
    if held_back:
        message += " (%d more like this in the last %.0fs)"
        args = (*args, held_back, throttle.interval)
    logger.log(level, message, *args, exc_info=exc_info)
    return True


def log_failure(
    logger: logging.Logger,
    error: BaseException,
    message: str,
    *,
    throttle: LogThrottle | None = None,
) -> bool:
    """Log a caught failure, rate limited: an :class:`~gateway.errors.Unavailable` as one
    line, anything else with its traceback (one per exception type and raising line per
    interval)."""
    if isinstance(error, Unavailable):
        reason = str(error) or type(error).__name__
        return log_throttled(
            logger, ("outage", type(error)), "%s: %s", message, reason, throttle=throttle
        )
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = (frame.tb_frame.f_code.co_filename, frame.tb_lineno) if frame is not None else None
    return log_throttled(
        logger,
        ("error", type(error), where),
        "%s",
        message,
        level=logging.ERROR,
        exc_info=error,
        throttle=throttle,
    )


class ThrottlingFilter(logging.Filter):
    """For a handler: other libraries' lines (psycopg's pool reconnecting, uvicorn's "invalid
    HTTP request") at most once per logger and message template per interval.

    The gateway's own loggers pass untouched: they throttle where a line can repeat per
    request, and their start-up and reload lines must always be seen.
    """

    def __init__(self, throttle: LogThrottle | None = None, *, own: str = "gateway") -> None:
        super().__init__()
        self._throttle = throttle
        self._own = own
        self._own_prefix = own + "."

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == self._own or name.startswith(self._own_prefix):
            return True
        throttle = self._throttle or default_throttle
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        held_back = throttle.admit(("library", name, template))
        if held_back is None:
            return False
        if held_back:
            record.msg = (
                f"{record.getMessage()} ({held_back} more like this in the last "
                f"{throttle.interval:.0f}s)"
            )
            record.args = None
        return True
