"""The failure of one call to the directory, below the backend's retries."""

from __future__ import annotations

__all__ = ["DirectoryError"]


class DirectoryError(Exception):
    """The directory could not answer; ``transient`` errors are worth retrying."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
