"""Whether an authentication level is enough for a policy level: every pair, one table."""

from __future__ import annotations

import itertools

import pytest

from gateway.levels import AuthLevel, Level

NONE, ONE, TWO = AuthLevel.NONE, AuthLevel.ONE_FACTOR, AuthLevel.TWO_FACTOR

SUFFICIENT = [
    # policy level        authenticated  passes
    (Level.BYPASS, NONE, True),
    (Level.BYPASS, ONE, True),
    (Level.BYPASS, TWO, True),
    (Level.ONE_FACTOR, NONE, False),
    (Level.ONE_FACTOR, ONE, True),
    (Level.ONE_FACTOR, TWO, True),
    (Level.TWO_FACTOR, NONE, False),
    (Level.TWO_FACTOR, ONE, False),
    (Level.TWO_FACTOR, TWO, True),
    (Level.DENY, NONE, False),
    (Level.DENY, ONE, False),
    (Level.DENY, TWO, False),
]


@pytest.mark.parametrize(
    ("required", "authenticated", "passes"),
    SUFFICIENT,
    ids=[
        f"{required.policy}-{authenticated.name.lower()}"
        for required, authenticated, _ in SUFFICIENT
    ],
)
def test_satisfied_by(required: Level, authenticated: AuthLevel, passes: bool) -> None:
    assert required.satisfied_by(authenticated) is passes


def test_the_table_covers_every_pair() -> None:
    pairs = [(required, authenticated) for required, authenticated, _ in SUFFICIENT]
    assert sorted(pairs) == sorted(itertools.product(Level, AuthLevel))
