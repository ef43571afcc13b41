"""Hot reload: poll the policy files and swap in a new engine when they change.

A file that no longer loads never replaces the policy in force: the last good engine stays,
the error is logged with ``file:line:column`` and kept in :attr:`PolicyWatcher.last_error`
for readiness checks and metrics. Stat and read happen in a worker thread, so the event loop
never waits on the disk.

Whoever uses more of the policy than its rules (the API hosts and keys it declares) sets
:attr:`PolicyWatcher.on_reload`, which is called with each new engine right after it is put
in force, before the event loop runs anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.policy.engine import PolicyEngine
from gateway.policy.loader import load_policy
from gateway.yaml_source import ConfigError

__all__ = ["PolicyWatcher", "ReloadCallback"]

logger = logging.getLogger("gateway.policy")

# (mtime_ns, size, inode) per file; None when the file cannot be stat'ed.
_Fingerprint = tuple[tuple[int, int, int] | None, ...]

ReloadCallback = Callable[[PolicyEngine], Awaitable[None] | None]
"""Called with the new engine after every successful reload (sync or async)."""


class PolicyWatcher:
    """Holds the policy in force and reloads it when its files change.

    The first load happens in ``__init__`` (an invalid policy at start-up raises
    :class:`ConfigError`), unless an already loaded ``engine`` is given. ``on_reload`` is
    called after each successful reload, not for that first load: apply :attr:`current`
    yourself when you set it up.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        interval: float = 2.0,
        *,
        environ: Mapping[str, str] | None = None,
        engine: PolicyEngine | None = None,
        on_reload: ReloadCallback | None = None,
    ) -> None:
        self.paths: tuple[Path, ...] = tuple(Path(path) for path in paths)
        self.interval = interval
        self._environ = environ
        self._fingerprint = self._stat()
        self.current: PolicyEngine = engine if engine is not None else self._load()
        self.generation = 1
        self.loaded_at = datetime.now(UTC)
        self.last_error: str | None = None
        self.reload_failures = 0
        self.on_reload: ReloadCallback | None = on_reload
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        """True while the polling task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start polling every ``interval`` seconds (idempotent)."""
        if not self.running:
            self._task = asyncio.create_task(self._poll(), name="policy-watcher")

    async def stop(self) -> None:
        """Stop polling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reload_now(self) -> bool:
        """Load the files now, changed or not; True when a new policy is in force."""
        async with self._lock:
            fingerprint = await asyncio.to_thread(self._stat)
            return await self._reload(fingerprint)

    async def check(self) -> bool:
        """Reload if any file changed since the last attempt; True when a new policy is in
        force. This is what each poll does.
        """
        async with self._lock:
            fingerprint = await asyncio.to_thread(self._stat)
            if fingerprint == self._fingerprint:
                return False
            return await self._reload(fingerprint)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # never let one bad poll end hot reload
                logger.exception("policy reload check failed")

    async def _reload(self, fingerprint: _Fingerprint) -> bool:
        # Remember the fingerprint taken *before* reading: a write that lands during the
        # read changes it again and triggers another reload on the next poll.
        self._fingerprint = fingerprint
        try:
            engine = await asyncio.to_thread(self._load)
        except ConfigError as error:
            self.reload_failures += 1
            self.last_error = str(error)
            logger.error(
                "policy reload failed; keeping generation %d loaded at %s:\n%s",
                self.generation,
                self.loaded_at.isoformat(timespec="seconds"),
                error,
            )
            return False
        self.current = engine
        self.generation += 1
        self.loaded_at = datetime.now(UTC)
        self.last_error = None
        logger.info(
            "policy reloaded: generation %d, %d rules, default %s",
            self.generation,
            len(engine.rules),
            engine.default_level.policy,
        )
        for warning in engine.warnings:
            logger.warning("policy: %s", warning)
        await self._notify(engine)
        return True

    async def _notify(self, engine: PolicyEngine) -> None:
        # Runs under the lock, so callbacks see the engines in order; no await comes between
        # the swap above and the start of the callback.
        if self.on_reload is None:
            return
        try:
            result = self.on_reload(engine)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the new policy is in force; a failing hook must not hide it
            logger.exception("policy reload hook failed (generation %d)", self.generation)

    def _load(self) -> PolicyEngine:
        return load_policy(self.paths, environ=self._environ)

    def _stat(self) -> _Fingerprint:
        result: list[tuple[int, int, int] | None] = []
        for path in self.paths:
            try:
                info = os.stat(path)
            except OSError:
                result.append(None)
            else:
                result.append((info.st_mtime_ns, info.st_size, info.st_ino))
        return tuple(result)
