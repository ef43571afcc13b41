from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config.settings import load_settings
from gateway.identity import totp_commands
from gateway.identity.second_factor import EnrollmentExpired, SecondFactor, SecondFactorStore
from gateway.identity.totp import code_at
from gateway.security.crypto import Keyring, generate_key
from gateway.storage import open_storage
from tests.support.clock import FakeClock
from tests.support.config import GatewayConfig

HASH_KEY = b"h" * 40
START = 1_700_000_000.0  # a step boundary for period 30: 56666666 * 30 + 20


@dataclass(frozen=True)
class Totp:
    secret: str
    digits: int
    period: int


class MemoryStore:
    """The storage contract in memory (replay markers never expire here)."""

    def __init__(self) -> None:
        self.totp: dict[str, Totp] = {}
        self.used: set[tuple[str, int]] = set()
        self.codes: dict[str, set[bytes]] = {}

    async def save_totp(
        self, username: str, secret: str, *, digits: int = 6, period: int = 30
    ) -> object:
        self.totp[username] = Totp(secret, digits, period)
        return self.totp[username]

    async def get_totp(self, username: str) -> Totp | None:
        return self.totp.get(username)

    async def delete_totp(self, username: str) -> bool:
        return self.totp.pop(username, None) is not None

    async def mark_totp_used(self, username: str, step: int, *, keep_for: float) -> bool:
        assert keep_for >= 90  # covers the window of a code with skew 1
        if (username, step) in self.used:
            return False
        self.used.add((username, step))
        return True

    async def set_recovery_codes(self, username: str, code_hashes: Sequence[bytes]) -> None:
        self.codes[username] = set(code_hashes)

    async def use_recovery_code(self, username: str, code_hash: bytes) -> bool:
        codes = self.codes.get(username, set())
        if code_hash in codes:
            codes.remove(code_hash)
            return True
        return False

    async def count_recovery_codes(self, username: str) -> int:
        return len(self.codes.get(username, ()))


def second_factor(
    store: SecondFactorStore, clock: FakeClock, keyring: Keyring | None = None
) -> SecondFactor:
    return SecondFactor(
        store,
        keyring=keyring or Keyring.from_texts([generate_key()]),
        hash_key=HASH_KEY,
        issuer="Example",
        clock=clock,
    )


def current_code(secret: str, clock: FakeClock, offset: int = 0) -> str:
    return code_at(secret, int(clock.now // 30) + offset)


async def enroll(
    factor: SecondFactor, clock: FakeClock, username: str = "john"
) -> tuple[str, list[str]]:
    enrollment = factor.begin_enrollment(username)
    codes = await factor.confirm_enrollment(
        username, enrollment.token, current_code(enrollment.secret, clock)
    )
    assert codes is not None
    return enrollment.secret, codes


def test_enrollment_needs_a_valid_code_before_anything_is_saved() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    factor = second_factor(store, clock)

    async def scenario() -> None:
        enrollment = factor.begin_enrollment("john")
        assert "secret=" + enrollment.secret in enrollment.uri
        assert enrollment.uri.startswith("otpauth://totp/Example:john?")
        assert enrollment.qr_svg.startswith("<svg")
        assert enrollment.secret not in enrollment.token
        assert await factor.confirm_enrollment("john", enrollment.token, "000000") is None
        assert not await factor.has_totp("john")

        codes = await factor.confirm_enrollment(
            "john", enrollment.token, current_code(enrollment.secret, clock)
        )
        assert codes is not None and len(codes) == 10 == len(set(codes))
        assert await factor.has_totp("john")
        assert await factor.recovery_codes_left("john") == 10
        assert store.totp["john"].secret == enrollment.secret
        assert all(code.encode() not in b"".join(store.codes["john"]) for code in codes)

    asyncio.run(scenario())


def test_a_code_works_once() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    factor = second_factor(store, clock)

    async def scenario() -> None:
        secret, _ = await enroll(factor, clock)
        # the code that confirmed the enrollment is already used
        assert await factor.verify("john", current_code(secret, clock)) is None
        clock.advance(30)
        code = current_code(secret, clock)
        assert await factor.verify("john", code) == "totp"
        assert await factor.verify("john", code) is None  # replay
        clock.advance(15)
        assert await factor.verify("john", code) is None  # still within skew: still a replay
        assert await factor.verify("john", current_code(secret, clock, offset=1)) == "totp"
        assert await factor.verify("john", "123 456") is None
        assert await factor.verify("harry", current_code(secret, clock, offset=-1)) is None

    asyncio.run(scenario())


def test_recovery_codes_work_once_each() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    factor = second_factor(store, clock)

    async def scenario() -> None:
        _, codes = await enroll(factor, clock)
        assert await factor.verify("john", codes[0]) == "recovery_code"
        assert await factor.verify("john", codes[0]) is None
        assert await factor.verify("john", codes[1].upper().replace("-", " ")) == "recovery_code"
        assert await factor.recovery_codes_left("john") == 8
        assert await factor.verify("harry", codes[2]) is None
        assert await factor.verify("john", "aaaa-bbbb-cccc") is None

        fresh = await factor.regenerate_recovery_codes("john")
        assert await factor.verify("john", codes[2]) is None  # the old set is gone
        assert await factor.verify("john", fresh[0]) == "recovery_code"

    asyncio.run(scenario())


def test_enrollment_tokens_expire_and_belong_to_one_user() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    factor = second_factor(store, clock)

    async def scenario() -> None:
        enrollment = factor.begin_enrollment("john")
        code = current_code(enrollment.secret, clock)
        with pytest.raises(EnrollmentExpired):
            await factor.confirm_enrollment("harry", enrollment.token, code)
        with pytest.raises(EnrollmentExpired):
            await factor.confirm_enrollment("john", enrollment.token[:-2] + "AA", code)
        with pytest.raises(EnrollmentExpired):
            await factor.confirm_enrollment("john", "garbage", code)
        other_keys = second_factor(store, clock)
        with pytest.raises(EnrollmentExpired):
            await other_keys.confirm_enrollment("john", enrollment.token, code)
        clock.advance(901)
        with pytest.raises(EnrollmentExpired, match="expired"):
            await factor.confirm_enrollment(
                "john", enrollment.token, current_code(enrollment.secret, clock)
            )
        assert store.totp == {}

    asyncio.run(scenario())


def test_reset_forgets_seed_and_recovery_codes() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    factor = second_factor(store, clock)

    async def scenario() -> None:
        secret, codes = await enroll(factor, clock)
        assert await factor.reset("john") is True
        assert not await factor.has_totp("john")
        clock.advance(30)
        assert await factor.verify("john", current_code(secret, clock)) is None
        assert await factor.verify("john", codes[0]) is None
        assert await factor.reset("john") is False

    asyncio.run(scenario())


def test_eight_digit_codes_and_stored_parameters_win() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    keyring = Keyring.from_texts([generate_key()])
    eight = SecondFactor(
        store, keyring=keyring, hash_key=HASH_KEY, digits=8, period=60, clock=clock
    )
    six = SecondFactor(store, keyring=keyring, hash_key=HASH_KEY, clock=clock)

    async def scenario() -> None:
        enrollment = eight.begin_enrollment("john")
        code = code_at(enrollment.secret, int(clock.now // 60), digits=8)
        assert await eight.confirm_enrollment("john", enrollment.token, code) is not None
        # settings changed to 6 digits / 30 s later: the enrollment keeps its own
        clock.advance(60)
        later = code_at(enrollment.secret, int(clock.now // 60), digits=8)
        assert await six.verify("john", later) == "totp"

    asyncio.run(scenario())


# -- with the real storage -------------------------------------------------------------------


def write_config(directory: Path) -> Path:
    return GatewayConfig(
        hash_key=HASH_KEY.decode(),
        storage={"type": "sqlite", "sqlite": {"path": "gateway.sqlite3"}},
        extra={"totp": {"issuer": "Example"}},
    ).write(directory)


def test_replay_is_refused_across_replicas_with_sqlite_storage(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    clock = FakeClock(START)

    async def scenario() -> None:
        first, second = await open_storage(settings), await open_storage(settings)
        try:
            replica_a = SecondFactor.from_settings(
                settings, first.second_factor, HASH_KEY, clock=clock
            )
            replica_b = SecondFactor.from_settings(
                settings, second.second_factor, HASH_KEY, clock=clock
            )
            secret, codes = await enroll(replica_a, clock)
            assert await replica_b.has_totp("john")
            clock.advance(30)
            code = current_code(secret, clock)
            results = await asyncio.gather(
                replica_a.verify("john", code),
                replica_b.verify("john", code),
            )
            assert sorted(results, key=str) == [None, "totp"]
            assert await replica_b.verify("john", codes[0]) == "recovery_code"
            assert await replica_a.verify("john", codes[0]) is None
            assert await replica_a.recovery_codes_left("john") == 9
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def totp_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway totp")
    totp_commands.add_arguments(parser)
    return totp_commands.run(parser.parse_args(argv))


def test_totp_reset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    settings = load_settings(config)

    async def enroll_john() -> None:
        storage = await open_storage(settings)
        try:
            clock = FakeClock(time.time())  # the storage's own clock is the real one
            factor = SecondFactor.from_settings(
                settings, storage.second_factor, HASH_KEY, clock=clock
            )
            await enroll(factor, clock)
        finally:
            await storage.close()

    asyncio.run(enroll_john())
    assert totp_cli("status", "john", "--config", str(config)) == 0
    assert capsys.readouterr().out == "john: TOTP enrolled, 10 recovery code(s) left\n"
    assert totp_cli("reset", "john", "--config", str(config)) == 0
    assert "removed the TOTP enrollment and recovery codes of 'john'" in capsys.readouterr().out
    assert totp_cli("status", "john", "--config", str(config)) == 0
    assert capsys.readouterr().out == "john: TOTP not enrolled, 0 recovery code(s) left\n"

    async def audit_events() -> list[str]:
        storage = await open_storage(settings)
        try:
            return [entry.event for entry in await storage.audit.list_audit()]
        finally:
            await storage.close()

    assert "totp.reset" in asyncio.run(audit_events())


def test_totp_command_with_a_broken_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yml"
    config.write_text("secrets: {}\n")
    assert totp_cli("reset", "john", "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert "missing required option" in err and "Traceback" not in err
