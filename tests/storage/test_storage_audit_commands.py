"""`gateway audit verify` and `gateway audit list`."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from gateway.storage import audit_commands, open_storage
from tests.storage.support import Backend


def audit(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway audit")
    audit_commands.add_arguments(parser)
    return audit_commands.run(parser.parse_args(argv))


async def _append(backend: Backend, count: int) -> None:
    async with await open_storage(backend.settings()) as storage:
        for n in range(1, count + 1):
            await storage.audit.append_audit("api_key.created", "admin", {"key": f"k{n}"})


def test_verify_an_intact_chain(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_append(backend, 3))
    assert audit("verify", "--config", str(backend.write_config())) == 0
    assert capsys.readouterr().out == "audit chain intact: 3 entries\n"


def test_verify_reports_the_first_bad_entry(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_append(backend, 4))
    backend.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    assert audit("verify", "--config", str(backend.write_config())) == 1
    assert "BROKEN at entry 3" in capsys.readouterr().out


def test_list_shows_the_newest_entries(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_append(backend, 5))
    config = str(backend.write_config())
    assert audit("list", "--config", config, "--limit", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "key=k4" in lines[0] and "key=k5" in lines[1]
    assert audit("list", "--config", config, "-n", "1", "--json") == 0
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["id"], entry["event"], entry["detail"]) == (5, "api_key.created", {"key": "k5"})
