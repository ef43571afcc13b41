from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from argon2 import Parameters, Type, extract_parameters

from gateway.identity.passwords import (
    DEFAULT_PARAMETERS,
    PasswordVerifier,
    hash_password,
    hash_problem,
    verify_password,
)

# The hash of "password" in Authelia's documentation and test users files.
AUTHELIA_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=2$BpLnfgDsc2WD8F2q$o/vzA4myCqZZ36bUGsDY//8mKUYNZZaR0t4MFFSs+iM"
)


def test_default_hash_is_rfc9106_low_memory_argon2id() -> None:
    password_hash = hash_password("correct horse")
    parameters = extract_parameters(password_hash)
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert parameters == DEFAULT_PARAMETERS
    assert verify_password(password_hash, "correct horse")
    assert not verify_password(password_hash, "correct horsE")


def test_authelia_hash_is_accepted_as_is() -> None:
    assert hash_problem(AUTHELIA_HASH) is None
    assert verify_password(AUTHELIA_HASH, "password")
    assert not verify_password(AUTHELIA_HASH, "Password")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "hunter2",
        "$6$rounds=50000$salt$hash",  # sha512crypt: Authelia accepts it, the gateway does not
        "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
        "$argon2id$v=19$m=65536,t=3,p=4$not-base64!$x",
    ],
)
def test_unusable_hashes_are_reported(text: object) -> None:
    assert hash_problem(text) is not None


def test_verify_password_never_raises_on_garbage() -> None:
    assert verify_password("$argon2id$garbage", "x") is False


def _median_times(verifier: PasswordVerifier, known: str) -> tuple[float, float]:
    """Median time of a wrong password for a known user and for an unknown one, interleaved
    so that load from elsewhere on the machine affects both alike."""

    async def timed(password_hash: str | None) -> float:
        start = time.perf_counter()
        await verifier.verify(password_hash, "wrong password")
        return time.perf_counter() - start

    async def main() -> tuple[list[float], list[float]]:
        known_times, unknown_times = [], []
        for _ in range(7):
            known_times.append(await timed(known))
            unknown_times.append(await timed(None))
        return known_times, unknown_times

    known_times, unknown_times = asyncio.run(main())
    return statistics.median(known_times), statistics.median(unknown_times)


def test_unknown_user_costs_as_much_as_a_known_one() -> None:
    # Parameters unlike the defaults, so a decoy made with the defaults would show.
    parameters = Parameters(
        type=Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=4,
        memory_cost=16384,
        parallelism=1,
    )
    known = hash_password("secret", parameters=parameters)
    verifier = PasswordVerifier()
    try:
        verifier.match_cost_of([known])
        known_time, unknown_time = _median_times(verifier, known)
    finally:
        verifier.close()
    assert 0.5 < unknown_time / known_time < 2.0


def test_verifier_answers() -> None:
    password_hash = hash_password("s3cret", parameters=Parameters(Type.ID, 19, 16, 32, 1, 64, 1))
    verifier = PasswordVerifier()
    verifier.match_cost_of([password_hash])

    async def main() -> tuple[bool, bool, bool]:
        return (
            await verifier.verify(password_hash, "s3cret"),
            await verifier.verify(password_hash, "s3cre"),
            await verifier.verify(None, "s3cret"),
        )

    try:
        assert asyncio.run(main()) == (True, False, False)
    finally:
        verifier.close()
