from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.identity.model import DirectoryUnavailable, User
from gateway.identity.refresh import Refreshed, UserRefresher
from tests.support.clock import FakeClock

JOHN = User("john", "John Doe", "john@example.com", ("admins", "dev"))


class Backend:
    def __init__(self) -> None:
        self.answer: User | Exception | None = JOHN
        self.calls = 0

    async def authenticate(self, username: str, password: str) -> User | None:
        raise NotImplementedError

    async def get_user(self, username: str) -> User | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def test_refresh_only_when_due_and_keep_the_user_during_an_outage() -> None:
    backend, clock = Backend(), FakeClock(1000.0)
    refresher = UserRefresher(backend, 300.0, clock=clock)

    async def scenario() -> None:
        assert await refresher.refresh(JOHN, 900.0) == Refreshed(JOHN, 900.0)
        assert backend.calls == 0

        clock.now = 1200.0
        demoted = User("john", "John Doe", "john@example.com", ("dev",))
        backend.answer = demoted
        assert await refresher.refresh(JOHN, 900.0) == Refreshed(demoted, 1200.0)

        clock.now = 1600.0
        backend.answer = DirectoryUnavailable()
        assert await refresher.refresh(demoted, 1200.0) == Refreshed(demoted, 1200.0)

        backend.answer = None  # disabled in the meantime
        assert await refresher.refresh(demoted, 1200.0) == Refreshed(None, 1600.0)

    asyncio.run(scenario())


def test_users_file_refreshes_on_every_request(tmp_path: Path) -> None:
    from gateway.config.settings import Settings
    from gateway.identity.refresh import refresh_interval

    settings = Settings.model_validate(
        {
            "secrets": {"encryption_keys": ["A" * 43], "hash_key": "h" * 40},
            "policy": {"files": ["policy.yml"]},
            "session": {
                "cookies": [{"domain": "example.com", "portal_url": "https://auth.example.com"}]
            },
        },
        context={"base_dir": tmp_path},
    )
    assert refresh_interval(settings) == 0.0
