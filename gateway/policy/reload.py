"""Hot reload: poll the policy files and swap in a new engine when they change.

A new version is applied only once it is complete and stable: read byte for byte the same
(size, mtime, inode, SHA-256) on ``settle_polls`` consecutive polls (see
:mod:`gateway.stable_files`), and compiled from exactly those bytes. A file caught half-way
through an in-place write is therefore never put in force, even when the part written so far
is valid YAML.

A version that does not load never replaces the policy in force: the last good engine stays,
the error is logged with ``file:line:column`` and kept in :attr:`PolicyWatcher.last_error`
for readiness checks and metrics. Any failure counts, not only a :class:`ConfigError`. Stat,
read and compile happen in a worker thread, so the event loop never waits on the disk.

Whoever uses more of the policy than its rules (the API hosts and keys it declares) sets
:attr:`PolicyWatcher.on_reload`, which is called with each new engine right after it is put
in force, before the event loop runs anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.config.yaml import ConfigError, Document, Issue, default_environ, load_bytes
from gateway.policy.engine import PolicyEngine
from gateway.policy.loader import compile_documents
from gateway.stable_files import Snapshot, StableFiles

__all__ = ["PolicyWatcher", "ReloadCallback"]

logger = logging.getLogger("gateway.policy")

ReloadCallback = Callable[[PolicyEngine], Awaitable[None] | None]
"""Called with the new engine after every successful reload (sync or async)."""

SETTLE_POLLS = 2
"""Consecutive polls that must read a new version unchanged before it is applied."""


def _unexpected(what: str, error: BaseException) -> str:
    # Readiness shows this text; an unexpected exception's own message may hold anything,
    # so only its type is shown and the details go to the log.
    return f"{what}: unexpected {type(error).__name__} (details in the gateway log)"


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
        settle_polls: int = SETTLE_POLLS,
    ) -> None:
        self.paths: tuple[Path, ...] = tuple(Path(path) for path in paths)
        self.interval = interval
        self._environ = environ
        self._files = StableFiles(self.paths, settle_polls=settle_polls)
        first = self._files.read_now()
        self.current: PolicyEngine = engine if engine is not None else self._compile(first)
        self.generation = 1
        self.loaded_at = datetime.now(UTC)
        self.reload_failures = 0
        self._load_error: str | None = None
        self._poll_error: str | None = None
        self.on_reload: ReloadCallback | None = on_reload
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def last_error(self) -> str | None:
        """Why the files on disk are not (all) in force, or None when they are.

        Set by any failed reload — an invalid file, an unexpected exception while loading,
        a failing ``on_reload`` hook — until a reload succeeds; and by a poll that failed,
        until the next poll works.
        """
        return self._poll_error or self._load_error

    @property
    def settle_polls(self) -> int:
        return self._files.settle_polls

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
        """Load the files now, changed or not, without waiting for them to settle (the
        caller knows the write is complete); True when a new policy is in force."""
        async with self._lock:
            snapshot = await asyncio.to_thread(self._files.read_now)
            return await self._reload(snapshot)

    async def check(self) -> bool:
        """One poll: reload if a changed version has settled; True when a new policy is in
        force. A version is tried once; a failed one is not retried until it changes."""
        async with self._lock:
            snapshot = await asyncio.to_thread(self._files.poll)
            if snapshot is None:
                return False
            return await self._reload(snapshot)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as error:  # never let one bad poll end hot reload
                logger.exception("policy reload check failed")
                self.reload_failures += 1
                self._poll_error = _unexpected("policy reload check failed", error)
            else:
                self._poll_error = None

    async def _reload(self, snapshot: Snapshot) -> bool:
        try:
            engine = await asyncio.to_thread(self._compile, snapshot)
        except ConfigError as error:
            self._failed(str(error), str(error))
            return False
        except Exception as error:  # a bug must not leave readiness at OK
            logger.exception("policy reload failed")
            self._failed(_unexpected("policy reload failed", error), None)
            return False
        self.current = engine
        self.generation += 1
        self.loaded_at = datetime.now(UTC)
        self._load_error = None
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

    def _failed(self, message: str, details: str | None) -> None:
        self.reload_failures += 1
        self._load_error = message
        if details is not None:
            logger.error(
                "policy reload failed; keeping generation %d loaded at %s:\n%s",
                self.generation,
                self.loaded_at.isoformat(timespec="seconds"),
                details,
            )

    async def _notify(self, engine: PolicyEngine) -> None:
        # Runs under the lock, so callbacks see the engines in order; no await comes between
        # the swap above and the start of the callback.
        if self.on_reload is None:
            return
        try:
            result = self.on_reload(engine)
            if inspect.isawaitable(result):
                await result
        except Exception as error:  # the new rules are in force; say that the rest is not
            logger.exception("policy reload hook failed (generation %d)", self.generation)
            self._load_error = _unexpected(
                f"policy generation {self.generation} is in force but applying its API hosts "
                "and keys failed",
                error,
            )

    def _compile(self, snapshot: Snapshot) -> PolicyEngine:
        """The engine for exactly the bytes in ``snapshot`` (what was seen to be stable)."""
        environ = self._environ if self._environ is not None else default_environ()
        documents: list[Document] = []
        issues: list[Issue] = []
        for version in snapshot.files:
            try:
                if version.error is not None:
                    raise version.error
                assert version.data is not None
                documents.append(load_bytes(version.data, str(version.path), environ=environ))
            except ConfigError as error:
                issues.extend(error.issues)
        if issues:
            raise ConfigError(issues)
        return compile_documents(documents, environ=environ)
