"""Password hashes for the users files tests write, each computed once per test session."""

from __future__ import annotations

import functools

from argon2 import Parameters, Type

from gateway.identity.passwords import hash_password

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


@functools.cache
def password_hash(password: str, *, fast: bool = False) -> str:
    """An argon2id hash of ``password``: the gateway's default parameters, or ``FAST``."""
    if fast:
        return hash_password(password, parameters=FAST)
    return hash_password(password)
