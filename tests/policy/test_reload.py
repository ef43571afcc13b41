"""Hot reload with real files: change, break, fix; the last good policy stays in force."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.yaml import ConfigError
from gateway.policy import PolicyEngine, PolicyWatcher, Subject, Target

from .helpers import policy_from_text

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
        assert watcher.settle_polls == 2
        assert await watcher.check() is False  # nothing changed
        assert await watcher.reload_now() is True  # forced
        assert watcher.generation == 2
        path.unlink()
        assert await watcher.check() is False  # seen once: not settled yet
        assert watcher.last_error is None
        assert await watcher.check() is False  # settled, and it does not load
        assert watcher.last_error == f"{path}: file not found"
        assert (watcher.reload_failures, level(watcher)) == (1, "one_factor")
        write(path, POLICY.format(policy="two_factor"))
        assert await watcher.check() is False
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
        assert await watcher.check() is False  # noticed; applied once it has settled
        assert await watcher.check() is True
        assert level(watcher) == "bypass"

    asyncio.run(scenario())


def test_files_are_read_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))
    watcher = PolicyWatcher([path])
    threads: list[bool] = []
    real_compile, real_read = watcher._compile, watcher._files.read_now

    def recording_compile(snapshot):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread() is threading.main_thread())
        return real_compile(snapshot)

    def recording_read():  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread() is threading.main_thread())
        return real_read()

    monkeypatch.setattr(watcher, "_compile", recording_compile)
    monkeypatch.setattr(watcher._files, "read_now", recording_read)
    assert asyncio.run(watcher.reload_now()) is True
    assert threads == [False, False]


def test_an_invalid_policy_at_start_up_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="sometimes"))
    with pytest.raises(ConfigError, match=r"policy.yml:4:15: unknown policy 'sometimes'"):
        PolicyWatcher([path])


# ------------------------------------------------------------------------------------------
# A write in progress is never put in force
# ------------------------------------------------------------------------------------------

GUARDED = """\
access_control:
  default_policy: deny
  rules:
    - domain: app.example.com
      policy: bypass
      networks: [10.0.0.0/8]
"""
WIDER_OFFICE = GUARDED.replace("[10.0.0.0/8]", "[10.0.0.0/8, 192.168.0.0/16]") + (
    "    - domain: wiki.example.com\n      policy: one_factor\n"
)
# Cut right after the 'policy:' line: valid YAML, and a bypass rule with no networks at all.
HALF_WRITTEN = WIDER_OFFICE[: WIDER_OFFICE.index("      networks:")]


def internet_level(engine: PolicyEngine) -> str:
    """What a client on the internet gets for app.example.com."""
    target = Target.from_url("https://app.example.com/", ip="203.0.113.7")
    return engine.decide(target, Subject()).level.policy


def test_a_file_written_in_two_chunks_is_never_half_applied(tmp_path: Path) -> None:
    assert internet_level(policy_from_text(HALF_WRITTEN)) == "bypass"  # what is at stake
    path = tmp_path / "policy.yml"
    write(path, GUARDED)

    async def scenario() -> list[str]:
        watcher = PolicyWatcher([path], interval=0.02)
        seen: list[str] = [internet_level(watcher.current)]
        handle = path.open("r+", encoding="utf-8")  # written in place: same inode throughout
        # What to do after each poll. settle_polls - 1 polls read the half-written file: the
        # longest pause a write may have without being taken as finished. (The old watcher
        # applied whatever one poll read.)
        script = ["first chunk", *["pause"] * (watcher.settle_polls - 2), "second chunk"]
        done = asyncio.get_running_loop().create_future()
        real_check = watcher.check

        async def observed_check() -> bool:
            changed = await real_check()
            seen.append(internet_level(watcher.current))
            step = script.pop(0) if script else None
            if step == "first chunk":
                handle.truncate(0)
                handle.write(HALF_WRITTEN)
                handle.flush()
            elif step == "second chunk":
                handle.write(WIDER_OFFICE[len(HALF_WRITTEN) :])
                handle.close()
            elif not script and watcher.generation > 1 and not done.done():
                done.set_result(None)
            return changed

        watcher.check = observed_check  # type: ignore[method-assign]
        await watcher.start()
        try:
            await asyncio.wait_for(done, timeout=10)
        finally:
            await watcher.stop()
            handle.close()
        assert watcher.generation == 2  # the complete file, once, and nothing in between
        target = Target.from_url("https://app.example.com/", ip="192.168.1.2")
        assert watcher.current.decide(target, Subject()).level.policy == "bypass"
        return seen

    seen = asyncio.run(scenario())
    assert "bypass" not in seen, seen  # the internet was never let through
    assert set(seen) == {"deny"}


def test_a_version_is_applied_only_after_it_has_settled(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    async def scenario() -> None:
        watcher = PolicyWatcher([path], settle_polls=3)
        write(path, POLICY.format(policy="two_factor"))
        assert [await watcher.check() for _ in range(3)] == [False, False, True]
        # Changed, then changed back before it settled: nothing to apply.
        write(path, POLICY.format(policy="deny"))
        assert await watcher.check() is False
        write(path, POLICY.format(policy="two_factor"))
        assert [await watcher.check() for _ in range(4)] == [False] * 4
        # Only touched: the same bytes are not reloaded.
        os.utime(path, ns=(1, 1))
        assert [await watcher.check() for _ in range(4)] == [False] * 4
        # A change that keeps changing is never applied.
        for step in range(6):
            write(path, POLICY.format(policy="deny") + f"# edit {step}\n")
            assert await watcher.check() is False
        assert (watcher.generation, level(watcher)) == (2, "two_factor")

    asyncio.run(scenario())


def test_a_file_that_changes_while_it_is_read_is_not_a_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import stable_files

    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))
    files = stable_files.StableFiles([path], settle_polls=1)
    files.read_now()
    real_read = stable_files.read_file

    def racing_read(target: Path) -> bytes:
        data = real_read(target)
        write(path, POLICY.format(policy="two_factor") + "# still writing\n")
        return data

    write(path, POLICY.format(policy="deny"))
    monkeypatch.setattr(stable_files, "read_file", racing_read)
    assert files.poll() is None  # even with settle_polls=1
    monkeypatch.setattr(stable_files, "read_file", real_read)
    settled = files.poll()
    assert settled is not None and settled.files[0].data is not None
    assert b"still writing" in settled.files[0].data


# ------------------------------------------------------------------------------------------
# Any failed reload shows in last_error (readiness), not only a ConfigError
# ------------------------------------------------------------------------------------------


def test_an_unexpected_reload_error_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    def broken_compile(*_: object, **__: object) -> PolicyEngine:
        raise RuntimeError("internal detail that readiness must not show")

    async def scenario() -> None:
        watcher = PolicyWatcher([path], interval=0.02)
        await watcher.start()
        monkeypatch.setattr("gateway.policy.reload.compile_documents", broken_compile)
        write(path, POLICY.format(policy="two_factor"))
        await until(lambda: watcher.last_error is not None)
        assert watcher.last_error == (
            "policy reload failed: unexpected RuntimeError (details in the gateway log)"
        )
        assert (watcher.generation, watcher.reload_failures, level(watcher)) == (
            1,
            1,
            "one_factor",
        )
        monkeypatch.undo()
        write(path, POLICY.format(policy="deny"))
        await until(lambda: watcher.generation == 2)
        assert (watcher.last_error, level(watcher)) == (None, "deny")

        # A poll that fails outright (not a load) is reported until a poll works again.
        def broken_poll() -> None:
            raise OSError("disk on fire")

        monkeypatch.setattr(watcher._files, "poll", broken_poll)
        await until(lambda: watcher.last_error is not None)
        assert watcher.last_error == (
            "policy reload check failed: unexpected OSError (details in the gateway log)"
        )
        monkeypatch.undo()
        await until(lambda: watcher.last_error is None)
        await watcher.stop()

    with caplog.at_level(logging.ERROR, logger="gateway.policy"):
        asyncio.run(scenario())
    assert "internal detail that readiness must not show" in caplog.text  # in the log only


def test_a_failing_reload_hook_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    write(path, POLICY.format(policy="one_factor"))

    def failing_hook(engine: PolicyEngine) -> None:
        raise ValueError("cannot install hosts")

    async def scenario() -> None:
        watcher = PolicyWatcher([path], on_reload=failing_hook)
        assert await watcher.reload_now() is True
        assert watcher.last_error == (
            "policy generation 2 is in force but applying its API hosts and keys failed: "
            "unexpected ValueError (details in the gateway log)"
        )
        watcher.on_reload = None
        assert await watcher.reload_now() is True
        assert watcher.last_error is None

    asyncio.run(scenario())
