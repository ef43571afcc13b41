"""Argon2id password hashes (RFC 9106), verified off the event loop.

Parameters: the RFC 9106 "low memory" profile (argon2id, t=3, m=64 MiB, p=4, 16-byte salt,
32-byte tag), which is also Authelia's default, so hashes made by ``authelia crypto hash
generate argon2`` work unchanged. RFC 9106's first recommendation needs 2 GiB per login,
which few gateways can afford; 64 MiB takes about 0.1 s on one core.

A verification holds its 64 MiB while it runs, so verifications run in a small dedicated
thread pool (4 threads at most): a burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from argon2 import Parameters, PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

__all__ = [
    "DEFAULT_PARAMETERS",
    "PasswordVerifier",
    "hash_password",
    "hash_problem",
    "verify_password",
]

DEFAULT_PARAMETERS: Parameters = RFC_9106_LOW_MEMORY
_PREFIX = "$argon2id$"
_PHC = re.compile(r"\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
# Bounds that catch a damaged hash before it asks for, say, 64 GiB per login.
_MAX_MEMORY_KIB = 2**21  # 2 GiB: RFC 9106's first recommendation
_MAX_TIME_COST = 64
_MAX_PARALLELISM = 64
# verify() takes every parameter from the hash it checks; this instance's own are unused.
_CHECKER = PasswordHasher.from_parameters(DEFAULT_PARAMETERS)

# (version, memory, time, parallelism, salt length, hash length): what a hash costs.
_Cost = tuple[int, int, int, int, int, int]


def hash_password(password: str, *, parameters: Parameters = DEFAULT_PARAMETERS) -> str:
    """A new ``$argon2id$...`` hash of ``password`` (blocking: ~0.1 s with the defaults)."""
    return PasswordHasher.from_parameters(parameters).hash(password)


def hash_problem(text: object) -> str | None:
    """Why ``text`` is not a usable argon2id hash, or None when it is."""
    if not isinstance(text, str) or not text.startswith(_PREFIX):
        return (
            "password must be an argon2id hash starting with $argon2id$ "
            "(make one with: gateway users hash-password)"
        )
    try:
        parameters = extract_parameters(text)
    except InvalidHashError:
        parameters = None
    if parameters is None or not _PHC.fullmatch(text) or parameters.type is not Type.ID:
        return (
            "password is not a well-formed argon2id hash ($argon2id$v=19$m=..,t=..,p=..$salt$hash)"
        )
    if (
        parameters.memory_cost > _MAX_MEMORY_KIB
        or parameters.time_cost > _MAX_TIME_COST
        or parameters.parallelism > _MAX_PARALLELISM
    ):
        return (
            f"argon2id parameters m={parameters.memory_cost},t={parameters.time_cost},"
            f"p={parameters.parallelism} exceed the limits m={_MAX_MEMORY_KIB},"
            f"t={_MAX_TIME_COST},p={_MAX_PARALLELISM}"
        )
    return None


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (blocking; never raises on bad input)."""
    try:
        return _CHECKER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class PasswordVerifier:
    """Verifies passwords in a bounded thread pool, with a decoy hash for unknown users.

    ``verify(None, password)`` checks the password against a decoy made with the parameters
    most real hashes use (see :meth:`match_cost_of`), so an unknown username takes as long
    as a known one.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        workers = max_workers or max(2, min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._lock = threading.Lock()
        self._decoys: dict[_Cost, str] = {}
        self._decoy_cost = _cost(DEFAULT_PARAMETERS)

    def match_cost_of(self, hashes: Iterable[str]) -> None:
        """Make the decoy with the parameters most of ``hashes`` use (blocking, once each)."""
        counts = Counter(_cost(extract_parameters(h)) for h in hashes if hash_problem(h) is None)
        cost = counts.most_common(1)[0][0] if counts else _cost(DEFAULT_PARAMETERS)
        self._decoy(cost)
        self._decoy_cost = cost

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` as hash fails after the same work."""
        loop = asyncio.get_running_loop()
        if password_hash is None:
            decoy = await loop.run_in_executor(self._executor, self._decoy, self._decoy_cost)
            await loop.run_in_executor(self._executor, verify_password, decoy, password)
            return False
        return await loop.run_in_executor(self._executor, verify_password, password_hash, password)

    def close(self) -> None:
        """Stop the thread pool (pending verifications are cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _decoy(self, cost: _Cost) -> str:
        with self._lock:
            decoy = self._decoys.get(cost)
            if decoy is None:
                version, memory, time, lanes, salt_len, hash_len = cost
                parameters = Parameters(
                    type=Type.ID,
                    version=version,
                    salt_len=salt_len,
                    hash_len=hash_len,
                    time_cost=time,
                    memory_cost=memory,
                    parallelism=lanes,
                )
                decoy = hash_password(secrets.token_urlsafe(24), parameters=parameters)
                self._decoys[cost] = decoy
            return decoy


def _cost(p: Parameters) -> _Cost:
    return (p.version, p.memory_cost, p.time_cost, p.parallelism, p.salt_len, p.hash_len)
