"""The two level scales and the one comparison between them.

A policy rule asks for a :class:`Level` (``bypass``, ``one_factor``, ``two_factor``,
``deny``); a caller has authenticated to an :class:`AuthLevel` (none, one factor, two).
Whether the second is enough for the first is :meth:`Level.satisfied_by`, and nowhere else:
the decision endpoint, the machine path and the portal all ask it (Authelia's
``IsAuthLevelSufficient``). What to answer when it is not enough (sign in, a second factor,
403) stays with each caller.

This module imports nothing of the gateway, so the policy package and the session package
can both build on it without knowing each other.
"""

from __future__ import annotations

import enum

__all__ = ["POLICY_NAMES", "AuthLevel", "Level"]


class AuthLevel(enum.IntEnum):
    """How strongly a caller has authenticated."""

    NONE = 0
    ONE_FACTOR = 1
    TWO_FACTOR = 2


class Level(enum.IntEnum):
    """What a request needs before it may pass; ordered from least to most demanding."""

    BYPASS = 0
    ONE_FACTOR = 1
    TWO_FACTOR = 2
    DENY = 3

    @property
    def policy(self) -> str:
        """The name used in policy files: ``bypass``, ``one_factor``, ``two_factor``, ``deny``."""
        return self.name.lower()

    @classmethod
    def from_policy(cls, name: str) -> Level:
        """The level for a policy name; raises :class:`ValueError` for an unknown one."""
        try:
            return _LEVEL_BY_POLICY[name]
        except KeyError:
            raise ValueError(
                f"unknown policy '{name}' (expected {', '.join(POLICY_NAMES)})"
            ) from None

    def satisfied_by(self, authenticated: AuthLevel) -> bool:
        """Whether a caller authenticated to ``authenticated`` may pass: ``bypass`` lets
        everyone through, ``deny`` no one, a factor level needs at least that many factors."""
        return authenticated in _SUFFICIENT[self]

    def __str__(self) -> str:
        return self.policy


POLICY_NAMES: tuple[str, ...] = tuple(level.policy for level in Level)
_LEVEL_BY_POLICY = {level.policy: level for level in Level}
_SUFFICIENT: dict[Level, frozenset[AuthLevel]] = {
    Level.BYPASS: frozenset(AuthLevel),
    Level.ONE_FACTOR: frozenset({AuthLevel.ONE_FACTOR, AuthLevel.TWO_FACTOR}),
    Level.TWO_FACTOR: frozenset({AuthLevel.TWO_FACTOR}),
    Level.DENY: frozenset(),
}
