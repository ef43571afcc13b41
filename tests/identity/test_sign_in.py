"""One password check for the portal and Basic auth: the ban first, then the password, then
the attempt recorded."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.identity.model import DirectoryUnavailable, User
from gateway.identity.sign_in import BANNED, WRONG_PASSWORD, PasswordCheck
from gateway.security.regulation import Regulator
from gateway.security.settings import RegulationSettings
from gateway.session.stores.memory import MemoryRegulationBackend

ALICE = User("alice", "Alice", "alice@example.com", ("dev",))
IP = "192.0.2.7"
log = logging.getLogger("gateway.test.sign_in")


class Backend:
    def __init__(self) -> None:
        self.answer: User | Exception | None = ALICE
        self.calls = 0

    async def authenticate(self, username: str, password: str) -> User | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer if password == "right" else None

    async def get_user(self, username: str) -> User | None:
        raise NotImplementedError

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def checker(backend: Backend) -> tuple[PasswordCheck, Regulator]:
    regulator = Regulator(RegulationSettings(), MemoryRegulationBackend())
    return PasswordCheck(backend, regulator, log=log, attempt="sign-in"), regulator


def test_the_right_password_is_the_user_and_forgets_the_failures() -> None:
    backend = Backend()
    check, regulator = checker(backend)

    async def scenario() -> None:
        assert await check.check("alice", "wrong", IP) is WRONG_PASSWORD
        assert await check.check("alice", "wrong", IP) is WRONG_PASSWORD
        assert await check.check("alice", "right", IP) == ALICE
        # The user's two failures are forgotten: two more do not ban...
        await regulator.record_failure("alice", "198.51.100.1")
        await regulator.record_failure("alice", "198.51.100.2")
        assert not await regulator.is_banned("alice", None)

    asyncio.run(scenario())


def test_a_ban_is_checked_first_and_the_backend_never_asked(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = Backend()
    check, _ = checker(backend)
    waited: list[float] = []

    async def wait(self: object, since: float) -> None:
        waited.append(since)

    monkeypatch.setattr("gateway.security.regulation.ResponseTimer.wait", wait)
    caplog.set_level(logging.INFO, logger=log.name)

    async def scenario() -> None:
        for _ in range(3):
            assert await check.check("alice", "wrong", IP) is WRONG_PASSWORD
        assert backend.calls == 3
        assert waited == []
        # Banned: refused like a wrong password, after as long as a check, unasked.
        assert await check.check("alice", "right", IP) is BANNED
        assert backend.calls == 3
        assert len(waited) == 1

    asyncio.run(scenario())
    lines = [record.getMessage() for record in caplog.records if record.name == log.name]
    assert lines == [
        *["sign-in failed user=alice ip=192.0.2.7"] * 3,
        "sign-in refused, banned user=alice ip=192.0.2.7",
    ]


def test_a_disabled_account_is_a_wrong_password() -> None:
    backend = Backend()
    backend.answer = User("alice", "Alice", "", (), disabled=True)
    check, _ = checker(backend)
    assert asyncio.run(check.check("alice", "right", IP)) is WRONG_PASSWORD


def test_an_unavailable_directory_passes_through_uncounted() -> None:
    backend = Backend()
    backend.answer = DirectoryUnavailable()
    check, regulator = checker(backend)

    async def scenario() -> None:
        for _ in range(5):
            with pytest.raises(DirectoryUnavailable):
                await check.check("alice", "right", IP)
        assert not await regulator.is_banned("alice", IP)

    asyncio.run(scenario())


def test_typed_names_are_logged_printable(caplog: pytest.LogCaptureFixture) -> None:
    check, _ = checker(Backend())
    caplog.set_level(logging.INFO, logger=log.name)
    asyncio.run(check.check("alice\nFAKE LOG LINE", "wrong", IP))
    assert [record.getMessage() for record in caplog.records if record.name == log.name] == [
        "sign-in failed user=alice?FAKE LOG LINE ip=192.0.2.7"
    ]
