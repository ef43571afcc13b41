"""`gateway sessions` and `gateway bans` against the store a configuration names."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.settings import load_settings
from gateway.security.crypto import Keyring, generate_key
from gateway.security.regulation import Regulator
from gateway.session.manager import SessionManager
from gateway.session.stores import open_session_store
from tests.support.config import Cookie, GatewayConfig

KEY = generate_key()


def write_config(tmp_path: Path, store: str = "sqlite", redis_url: str = "") -> Path:
    return GatewayConfig(
        encryption_keys=[KEY],
        hash_key="h" * 40,
        store=store,
        session={
            "sqlite": {"path": "data/sessions.sqlite3"},
            "redis": {
                "url": redis_url or "redis://127.0.0.1:1/0",
                "key_prefix": f"cli-{uuid.uuid4().hex[:8]}:",
            },
        },
        cookies=(Cookie(), Cookie("example.org", "https://auth.example.org")),
    ).write(tmp_path)


def populate(config: Path) -> None:
    """What a running gateway would have stored: sessions for alice and bob, two bans."""
    settings = load_settings(config)

    async def fill() -> None:
        store = await open_session_store(settings, Keyring.from_texts([KEY]))
        sessions = SessionManager.from_settings(settings, store)
        com, org = settings.session.cookies
        await sessions.login(com, username="alice")
        await sessions.login(org, username="alice", remember_me=True)
        await sessions.login(com, username="bob")
        regulator = Regulator.from_settings(settings, store)
        for _ in range(3):
            await regulator.record_failure("mallory", "203.0.113.9")
        await store.close()

    asyncio.run(fill())


@pytest.fixture(params=["sqlite", "redis"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    path = write_config(tmp_path, request.param, url)
    populate(path)
    return path


def test_sessions_list_and_logout_everywhere(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sessions", "list", "alice", "--config", str(config)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["DOMAIN", "LEVEL", "CREATED"]
    rows = sorted(line.split()[0] for line in listing[1:])
    assert rows == ["example.com", "example.org"]
    assert all("one_factor" in line for line in listing[1:])

    assert main(["sessions", "logout", "alice", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("ended 2 sessions of alice\n")

    assert main(["sessions", "list", "alice", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "alice has no live sessions\n"
    assert main(["sessions", "list", "bob", "-c", str(config)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2, "bob keeps his session"


def test_bans_list_and_clear(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bans", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "WHO", "UNTIL", "REMAINING"]
    assert sorted(tuple(line.split()[:2]) for line in lines[1:]) == [
        ("ip", "203.0.113.9"),
        ("user", "mallory"),
    ]
    assert all(line.split()[-1] in ("5m00s", "4m59s") for line in lines[1:])

    assert main(["bans", "clear", "--user", "Mallory", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "lifted 1 ban\n"
    assert main(["bans", "list", "--config", str(config)]) == 0
    assert "mallory" not in capsys.readouterr().out
    assert main(["bans", "clear", "--all", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "lifted 1 ban\n"
    assert main(["bans", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "no active bans\n"


def test_bans_clear_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["bans", "clear", "--config", str(config)]) == 2
    assert "--user USER, --ip ADDRESS, or --all" in capsys.readouterr().err


def test_bad_config_is_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("store: sqlite", "store: mongodb"))
    for argv in (["sessions", "list", "alice"], ["bans", "list"]):
        assert main([*argv, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {config}:")
        assert "store" in err and "Traceback" not in err
    assert main(["sessions", "list", "alice", "--config", str(tmp_path / "missing.yml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_memory_store_is_out_of_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, store="memory")
    assert main(["sessions", "logout", "alice", "--config", str(config)]) == 2
    assert "inside the running gateway process" in capsys.readouterr().err


def test_unreachable_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, store="redis", redis_url="redis://127.0.0.1:1/0")
    assert main(["sessions", "list", "alice", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err == "error: the session store is unavailable (redis at redis://127.0.0.1:1/0)\n"
