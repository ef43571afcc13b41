"""Helpers shared by the identity tests."""

from __future__ import annotations

from argon2 import Parameters, Type

# Cheap argon2id parameters: most tests check behaviour, not the cost of the defaults.
FAST = Parameters(
    type=Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=64,
    parallelism=1,
)
