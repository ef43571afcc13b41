"""`gateway secret generate` and `gateway secret rotate`."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.security.crypto import Keyring, parse_key
from gateway.storage import commands, open_storage
from tests.services import free_port
from tests.storage.support import NEW_KEY, OLD_KEY, Backend


def secret(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway secret")
    commands.add_arguments(parser)
    return commands.run(parser.parse_args(argv))


def test_generate_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert secret("generate") == 0
    first = capsys.readouterr().out
    assert secret("generate") == 0
    second = capsys.readouterr().out
    assert first.endswith("\n") and first.count("\n") == 1
    assert len(parse_key(first.strip()).material) == 32
    assert first != second


def test_generate_help_explains_where_the_key_goes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        secret("generate", "--help")
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "encryption_keys_file" in text and "umask 077" in text
    assert "gateway secret rotate" in text


def test_the_gateway_command_generates_a_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "secret", "generate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parse_key(result.stdout.strip())


async def _seed(backend: Backend) -> None:
    async with await open_storage(backend.settings([OLD_KEY])) as storage:
        await storage.second_factor.save_totp("alice", "JBSWY3DPEHPK3PXP")
        await storage.secrets.put_secret("grafana", "token-1")


async def _read_with_new_key_only(backend: Backend) -> tuple[str | None, str | None]:
    async with await open_storage(backend.settings([NEW_KEY])) as storage:
        record = await storage.second_factor.get_totp("alice")
        entries = await storage.audit.list_audit(1)
        assert entries and entries[0].event == "encryption.rotated"
        assert entries[0].detail["key_id"] == Keyring.from_texts([NEW_KEY]).current_key_id
        return (record.secret if record else None), await storage.secrets.get_secret("grafana")


def test_rotate_re_encrypts_under_the_first_key(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(backend))
    config = backend.write_config([NEW_KEY, OLD_KEY])
    assert secret("rotate", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "re-encrypted 2 value(s)" in out
    assert Keyring.from_texts([OLD_KEY]).current_key_id in out  # "you may remove" hint
    assert asyncio.run(_read_with_new_key_only(backend)) == ("JBSWY3DPEHPK3PXP", "token-1")
    # Running it again changes nothing.
    assert secret("rotate", "--config", str(config)) == 0
    assert "re-encrypted 0 value(s)" in capsys.readouterr().out


def test_rotate_without_the_old_key_fails_and_says_why(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(backend))
    config = backend.write_config([NEW_KEY])
    assert secret("rotate", "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert "could not be decrypted" in err and "totp:alice" in err and "secret:grafana" in err


def test_rotate_through_the_gateway_command(tmp_path: Path) -> None:
    backend = Backend(
        "sqlite", {"type": "sqlite", "sqlite": {"path": str(tmp_path / "g.sqlite3")}}, tmp_path
    )
    asyncio.run(_seed(backend))
    config = backend.write_config([NEW_KEY, OLD_KEY])
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "secret", "rotate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 2 value(s)" in result.stdout


def test_rotate_with_a_bad_config_prints_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yml"
    config.write_text("secrets:\n  encryption_keys: [not-a-key]\n  hash_key: short\n")
    assert secret("rotate", "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert f"{config}:2:" in err and "encryption key" in err
    assert "Traceback" not in err


def test_rotate_with_the_database_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"postgresql://gateway:hunter2@127.0.0.1:{free_port()}/gateway"
    backend = Backend("postgres", {"type": "postgres", "postgres": {"dsn": dsn}}, tmp_path)
    config = backend.write_config([NEW_KEY, OLD_KEY])
    assert secret("rotate", "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert "is unavailable" in err and "hunter2" not in err and "Traceback" not in err
