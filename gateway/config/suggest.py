""" "Did you mean": the closest known word to a mistyped one, for error messages.

Every message that refuses an unknown option, key or name (``gateway.yml``, policy files,
the users file, API key declarations, ``gateway policy test`` lines) suggests through here,
so they all suggest alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean", "suggestion"]

_CUTOFF = 0.6
"""How similar a known word must be (difflib's ratio) to be suggested."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The known word most like ``word``, or None when none is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=_CUTOFF)
    return found[0] if found else None


def suggestion(text: str) -> str:
    """`` (did you mean 'text'?)``, to append to a message."""
    return f" (did you mean '{text}'?)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or ``""``."""
    found = closest(word, choices)
    return suggestion(found) if found is not None else ""
