"""The pool of connections bound as the service account, shared by the worker threads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import ldap3

from gateway.identity.ldap.errors import DirectoryError

__all__ = ["ServicePool", "close_quietly"]

_MAX_IDLE = 60.0  # seconds an idle service connection may wait before it is replaced


def close_quietly(connection: ldap3.Connection) -> None:
    """Unbind, ignoring whatever a dead connection raises."""
    with contextlib.suppress(Exception):
        connection.unbind()


class ServicePool:
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
            raise DirectoryError("no free LDAP connection in the pool", transient=True)
        try:
            connection = None if fresh else self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = self._connect()
            try:
                yield connection, reused
            except BaseException:
                close_quietly(connection)
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
                close_quietly(connection)
        return None

    def clear(self) -> None:
        """Close every idle connection (after one of them turned out to be dead)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            close_quietly(connection)
