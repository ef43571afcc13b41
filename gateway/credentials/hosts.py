"""Host globs, as used by API key scopes and API host declarations.

A glob is a host name in which ``*`` stands for any run of characters, dots included
(``*.example.com`` matches ``a.example.com`` and ``a.b.example.com``, not ``example.com``).
Patterns are lower-cased; the hosts matched against them are canonical already
(:func:`gateway.net.normalize_host`: lower case, no port, no trailing dot). Exact names go
into a set and every glob into one compiled regular expression, so a lookup is a set probe
plus at most one regex match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["HostMatcher"]

_GLOB_CHARS = re.compile(r"[a-z0-9.*-]+")


class HostMatcher:
    """Does a host match any of a fixed list of globs?"""

    __slots__ = ("_exact", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(p.strip().lower().rstrip(".") for p in patterns)
        exact: set[str] = set()
        globs: list[str] = []
        for pattern in self.patterns:
            if not pattern or not _GLOB_CHARS.fullmatch(pattern):
                raise ValueError(
                    f"'{pattern}' is not a host name or glob (letters, digits, '-', '.', '*')"
                )
            if "*" in pattern:
                globs.append(".*".join(re.escape(part) for part in pattern.split("*")))
            else:
                exact.add(pattern)
        self._exact = frozenset(exact)
        self._regex = re.compile("|".join(f"(?:{g})" for g in globs)) if globs else None

    def matches(self, host: str) -> bool:
        """True when ``host`` (canonical: :func:`gateway.net.normalize_host`) matches."""
        if host in self._exact:
            return True
        return self._regex is not None and self._regex.fullmatch(host) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"HostMatcher({list(self.patterns)!r})"
