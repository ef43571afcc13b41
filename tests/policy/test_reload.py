"""Hot reload with real files: change, break, fix; the last good policy stays in force."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.policy import PolicyWatcher, Subject, Target
from gateway.yaml_source import ConfigError

POLICY = """\
access_control:
  rules:
    - domain: app.example.com
      policy: {policy}
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a change is visible even on coarse clocks."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    after = path.stat().st_mtime_ns
    if after <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def level(watcher: PolicyWatcher) -> str:
    target = Target.from_url("https://app.example.com/")
    return watcher.current.decide(target, Subject("bob")).level.policy


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most five seconds) until ``condition()`` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


def test_polling_reload_keeps_the_last_good_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    async def scenario() -> None:
        watcher = PolicyWatcher([path], interval=0.02)
        assert (watcher.generation, watcher.last_error, level(watcher)) == (1, None, "one_factor")
        await watcher.start()
        assert watcher.running

        write(path, POLICY.format(policy="two_factor"))
        await until(lambda: watcher.generation == 2)
        assert level(watcher) == "two_factor"

        write(path, POLICY.format(policy="two-factor"))
        await until(lambda: watcher.reload_failures == 1)
        assert watcher.last_error == (
            f"{path}:4:15: unknown policy 'two-factor' (expected bypass, one_factor, "
            "two_factor, deny)"
        )
        assert (watcher.generation, level(watcher)) == (2, "two_factor")
        # A failed version is not retried (and logged) on every poll, only when it changes.
        await asyncio.sleep(0.1)
        assert watcher.reload_failures == 1

        loaded_at = watcher.loaded_at
        write(path, POLICY.format(policy="deny"))
        await until(lambda: watcher.generation == 3)
        assert (watcher.last_error, level(watcher)) == (None, "deny")
        assert watcher.loaded_at > loaded_at

        await watcher.stop()
        assert not watcher.running

    with caplog.at_level(logging.INFO, logger="gateway.policy"):
        asyncio.run(scenario())
    errors = [
        r for r in caplog.records if r.name == "gateway.policy" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 1
    assert f"{path}:4:15: unknown policy 'two-factor'" in errors[0].getMessage()
    assert "keeping generation 2" in errors[0].getMessage()


def test_reload_now_and_a_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    async def scenario() -> None:
        watcher = PolicyWatcher([path])
        assert await watcher.check() is False  # nothing changed
        assert await watcher.reload_now() is True  # forced
        assert watcher.generation == 2
        path.unlink()
        assert await watcher.check() is False
        assert watcher.last_error == f"{path}: file not found"
        assert (watcher.reload_failures, level(watcher)) == (1, "one_factor")
        write(path, POLICY.format(policy="two_factor"))
        assert await watcher.check() is True
        assert (watcher.generation, watcher.last_error, level(watcher)) == (3, None, "two_factor")

    asyncio.run(scenario())


def test_atomic_replace_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    async def scenario() -> None:
        watcher = PolicyWatcher([path])
        replacement = tmp_path / "policy.yml.tmp"
        replacement.write_text(POLICY.format(policy="bypass"))  # same size: "one_factor"
        stat = path.stat()
        os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime too
        os.replace(replacement, path)  # only the inode differs
        assert await watcher.check() is True
        assert level(watcher) == "bypass"

    asyncio.run(scenario())


def test_files_are_read_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))
    watcher = PolicyWatcher([path])
    threads: list[bool] = []
    real_load = watcher._load

    def recording_load():  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread() is threading.main_thread())
        return real_load()

    monkeypatch.setattr(watcher, "_load", recording_load)
    assert asyncio.run(watcher.reload_now()) is True
    assert threads == [False]


def test_an_invalid_policy_at_start_up_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="sometimes"))
    with pytest.raises(ConfigError, match=r"policy.yml:4:15: unknown policy 'sometimes'"):
        PolicyWatcher([path])
