"""Read a set of files for hot reload only once they are complete and stable.

An editor or a script that writes a file in place (truncate, write, write, close) leaves it
half-written for a moment. A poll that lands in that moment reads a prefix that is often
valid YAML — a rule that has lost its ``networks:`` line — and applying it would widen
access until the next poll. So a new version is only handed out once it has been read
**byte for byte the same** (size, modification time, inode and SHA-256 of the content) on
``settle_polls`` consecutive polls, and not changed while it was being read. The bytes handed
out are exactly the ones that were hashed: what is parsed is what was seen to be stable.

An atomic replace (write a temporary file, then ``rename`` it over the old one) never
exposes a partial file; it is still applied only after the same settling.

All functions here block on the disk: call them from a worker thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config.yaml import ConfigError, read_file

__all__ = ["FileVersion", "Snapshot", "StableFiles", "signatures"]

Signature = tuple[int, int, int, int]
"""(mtime_ns, size, inode, device) of a file."""

_STABLE_READ_ATTEMPTS = 3


def _signature(path: Path) -> Signature | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)


def signatures(paths: Sequence[Path]) -> tuple[Signature | None, ...]:
    """The cheap part of a poll: one ``stat`` per file (None when it cannot be stat'ed)."""
    return tuple(_signature(path) for path in paths)


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One file as read at one poll: its bytes, or why it could not be read."""

    path: Path
    signature: Signature | None
    digest: bytes | None
    data: bytes | None
    error: ConfigError | None

    @property
    def content(self) -> tuple[bytes | None, str | None]:
        """What a loader would get: the bytes (by hash), or the read error."""
        return (self.digest, str(self.error) if self.error else None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every watched file as read at one poll."""

    files: tuple[FileVersion, ...]

    @property
    def key(self) -> tuple[tuple[Signature | None, tuple[bytes | None, str | None]], ...]:
        """Equal keys: the same bytes, and the same size, mtime and inode, in every file."""
        return tuple((version.signature, version.content) for version in self.files)

    @property
    def content(self) -> tuple[tuple[bytes | None, str | None], ...]:
        return tuple(version.content for version in self.files)

    @property
    def signatures(self) -> tuple[Signature | None, ...]:
        return tuple(version.signature for version in self.files)


def _read(path: Path) -> FileVersion | None:
    """The file's bytes, or None if it changed while it was read (a write in progress)."""
    before = _signature(path)
    try:
        data: bytes | None = read_file(path)
        error = None
    except ConfigError as failure:
        data, error = None, failure
    if _signature(path) != before:
        return None
    digest = hashlib.sha256(data).digest() if data is not None else None
    return FileVersion(path, before, digest, data, error)


def read_snapshot(paths: Sequence[Path]) -> Snapshot | None:
    """Read every file once; None if any of them changed during its read."""
    versions: list[FileVersion] = []
    for path in paths:
        version = _read(path)
        if version is None:
            return None
        versions.append(version)
    return Snapshot(tuple(versions))


class StableFiles:
    """Decides, poll by poll, when a new version of ``paths`` may be applied.

    Not thread-safe: one poller at a time (the policy watcher holds a lock around it).
    """

    def __init__(self, paths: Sequence[Path], *, settle_polls: int = 2) -> None:
        if settle_polls < 1:
            raise ValueError("settle_polls must be at least 1")
        self.paths = tuple(paths)
        self.settle_polls = settle_polls
        self._handed_out: Snapshot | None = None
        self._candidate: Snapshot | None = None
        self._seen = 0

    def read_now(self) -> Snapshot:
        """Read the files at once, for a first load or a forced reload, and treat the result
        as the version in force. Retries a read that raced a write a few times."""
        snapshot = None
        for _ in range(_STABLE_READ_ATTEMPTS):
            snapshot = read_snapshot(self.paths)
            if snapshot is not None:
                break
        if snapshot is None:  # still changing: take what is there, the next polls settle it
            snapshot = self._unstable_read()
        self._handed_out, self._candidate, self._seen = snapshot, None, 0
        return snapshot

    def _unstable_read(self) -> Snapshot:
        versions = []
        for path in self.paths:
            try:
                data: bytes | None = read_file(path)
                error = None
            except ConfigError as failure:
                data, error = None, failure
            digest = hashlib.sha256(data).digest() if data is not None else None
            # No signature: the next poll never mistakes this read for a settled version.
            versions.append(FileVersion(path, None, digest, data, error))
        return Snapshot(tuple(versions))

    def poll(self) -> Snapshot | None:
        """One poll: a new version that has now settled, or None.

        A version is handed out once; if it then fails to load, it is not offered again
        until the files change.
        """
        handed_out = self._handed_out
        if (
            self._candidate is None
            and handed_out is not None
            and signatures(self.paths) == handed_out.signatures
        ):
            return None  # the common case: nothing changed, nothing read
        snapshot = read_snapshot(self.paths)
        if snapshot is None:  # a write is in progress: start counting again after it
            self._candidate, self._seen = None, 0
            return None
        if handed_out is not None and snapshot.content == handed_out.content:
            # Only touched, or changed back: nothing to load; remember the new stat results
            # so that the next polls take the cheap path again.
            self._handed_out, self._candidate, self._seen = snapshot, None, 0
            return None
        if self._candidate is not None and snapshot.key == self._candidate.key:
            self._seen += 1
        else:
            self._candidate, self._seen = snapshot, 1
        if self._seen < self.settle_polls:
            return None
        self._handed_out, self._candidate, self._seen = snapshot, None, 0
        return snapshot
