from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.yaml import ConfigError
from gateway.identity.model import Generational, User
from gateway.identity.users_file import UsersFileBackend, load_users
from gateway.identity.users_file_editor import write_atomically

Hash = Callable[[str], str]


def users_yaml(fast_hash: Hash) -> str:
    return f"""\
# the team
users:
  john:
    displayname: John Doe
    email: john@example.com
    groups: [admins, dev]
    password: "{fast_hash("john-password")}"
  harry:
    displayname: Harry Potter
    email: harry@example.com
    groups:
      - dev
    password: "{{CRYPT}}{fast_hash("harry-password")}"
    given_name: Harry        # an Authelia profile field: accepted, ignored
  dave:
    displayname: Dave Disabled
    email: dave@example.com
    groups: [dev]
    password: "{fast_hash("dave-password")}"
    disabled: true
"""


@pytest.fixture
def users_file(tmp_path: Path, fast_hash: Hash) -> Path:
    path = tmp_path / "users.yml"
    path.write_text(users_yaml(fast_hash))
    return path


def run_with_backend(path: Path, scenario: Callable[[UsersFileBackend], object]) -> object:
    async def main() -> object:
        backend = UsersFileBackend(path, poll_interval=0.02)
        await backend.start()
        try:
            result = scenario(backend)
            return await result if asyncio.iscoroutine(result) else result
        finally:
            await backend.close()

    return asyncio.run(main())


def test_login_with_the_right_password(users_file: Path) -> None:
    async def scenario(backend: UsersFileBackend) -> User | None:
        return await backend.authenticate("john", "john-password")

    assert run_with_backend(users_file, scenario) == User(
        "john", "John Doe", "john@example.com", ("admins", "dev")
    )


def test_authelia_crypt_prefix_and_profile_fields_are_accepted(users_file: Path) -> None:
    async def scenario(backend: UsersFileBackend) -> User | None:
        return await backend.authenticate("harry", "harry-password")

    user = run_with_backend(users_file, scenario)
    assert isinstance(user, User) and user.groups == ("dev",)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("john", "wrong"),
        ("john", ""),
        ("John", "john-password"),  # usernames are exact
        ("nobody", "john-password"),
        ("dave", "dave-password"),  # disabled: same answer as a wrong password
        ("dave", "wrong"),
    ],
)
def test_login_refused(users_file: Path, username: str, password: str) -> None:
    async def scenario(backend: UsersFileBackend) -> User | None:
        return await backend.authenticate(username, password)

    assert run_with_backend(users_file, scenario) is None


def test_get_user_hides_disabled_and_unknown_users(users_file: Path) -> None:
    async def scenario(backend: UsersFileBackend) -> list[User | None]:
        return [await backend.get_user(name) for name in ("harry", "dave", "nobody")]

    harry, dave, nobody = run_with_backend(users_file, scenario)  # type: ignore[misc]
    assert harry is not None and harry.email == "harry@example.com"
    assert dave is None and nobody is None


def test_changes_are_picked_up_and_a_bad_file_keeps_the_last_good_users(
    users_file: Path, fast_hash: Hash, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(backend: UsersFileBackend) -> None:
        async def eventually(check: Callable[[], object]) -> None:
            for _ in range(300):
                if await check():  # type: ignore[misc]
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the users file change was not picked up")

        # john leaves admins, harry is disabled (rewritten in place, like an editor would)
        text = await asyncio.to_thread(users_file.read_text)
        text = text.replace("groups: [admins, dev]", "groups: [dev]")
        text = text.replace("    given_name: Harry", "    disabled: true\n    given_name: Harry")
        await asyncio.to_thread(users_file.write_text, text)

        async def john_left_admins() -> bool:
            john = await backend.get_user("john")
            return john is not None and john.groups == ("dev",)

        await eventually(john_left_admins)
        assert await backend.authenticate("harry", "harry-password") is None

        # a broken version is refused: john keeps working with the last good file
        with caplog.at_level(logging.ERROR, logger="gateway.identity"):
            write_atomically(users_file, text.replace("displayname: John Doe", "displaynme: x"))

            async def error_logged() -> bool:
                return "displaynme" in caplog.text

            await eventually(error_logged)
        assert await backend.authenticate("john", "john-password") is not None
        assert f"{users_file}:4:5: unknown key 'displaynme'" in caplog.text
        assert "did you mean 'displayname'?" in caplog.text

        # the file is fixed again: a new user appears
        write_atomically(
            users_file,
            text + f'  zoe:\n    password: "{fast_hash("zoe-password")}"\n',
        )

        async def zoe_exists() -> bool:
            return await backend.get_user("zoe") is not None

        await eventually(zoe_exists)
        zoe = await backend.authenticate("zoe", "zoe-password")
        assert zoe == User("zoe", "zoe", "", ())

    run_with_backend(users_file, scenario)


def test_watch_false_does_not_reload(users_file: Path) -> None:
    async def main() -> User | None:
        backend = UsersFileBackend(users_file, watch=False, poll_interval=0.01)
        await backend.start()
        await asyncio.to_thread(users_file.write_text, "users: {}\n")
        await asyncio.sleep(0.1)
        try:
            return await backend.get_user("john")
        finally:
            await backend.close()

    assert asyncio.run(main()) is not None


def test_generation_moves_on_with_every_load_that_took_effect(users_file: Path) -> None:
    # What the Basic-auth cache keys on: a reload may have disabled someone or changed a
    # password, so everything remembered under the previous generation is stale.
    async def main() -> None:
        backend = UsersFileBackend(users_file, watch=False)
        assert isinstance(backend, Generational)
        await backend.start()
        try:
            started = backend.generation
            assert await backend.reload()  # unchanged file: nothing moves
            assert backend.generation == started
            text = await asyncio.to_thread(users_file.read_text)
            text = text.replace("groups: [admins, dev]", "groups: [dev]")
            await asyncio.to_thread(write_atomically, users_file, text)
            assert await backend.reload()  # seen once: still settling
            assert backend.generation == started
            assert await backend.reload()  # unchanged since: applied
            assert backend.generation == started + 1
            await asyncio.to_thread(write_atomically, users_file, "users: [broken]\n")
            assert await backend.reload()
            assert not await backend.reload()  # refused: the previous users stay, and so
            assert backend.generation == started + 1  # does what was remembered about them
        finally:
            await backend.close()

    asyncio.run(main())


def test_start_fails_on_a_missing_file(tmp_path: Path) -> None:
    backend = UsersFileBackend(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match=r"missing\.yml: file not found"):
        asyncio.run(backend.start())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("users:\n  john:\n    password: hunter2\n", ":3:15: password must be an argon2id hash"),
        ("users:\n  john:\n    displayname: J\n", ":2:3: user 'john' has no password"),
        (
            "users:\n  john:\n    password: $H\n    disabled: yes please\n",
            ":4:15: disabled must be true or false",
        ),
        ("users:\n  john:\n    password: $H\n    groups: admins\n", ":4:13: groups must be a list"),
        (
            "users:\n  john:\n    password: $H\n    groups: ['admins,dev']\n",
            ":4:14: group 'admins,dev' contains a comma",
        ),
        ("users:\n  john:\n    password: $H\n    email: nope\n", ":4:12: 'nope' is not an email"),
        (
            "users:\n  john:\n    password: $H\n    disabeld: true\n",
            ":4:5: unknown key 'disabeld' for user 'john' (did you mean 'disabled'?)",
        ),
        ("users:\n  john:\n    password: $H\n  john:\n    password: $H\n", ":4:3: duplicate key"),
        ("user:\n  john: {}\n", ":1:1: unknown key 'user'"),
        ("users: [john]\n", ":1:8: 'users' must be a mapping"),
        ("users:\n  john: x\n", ":2:9: user 'john' must be a mapping"),
        ("users:\n  ' john':\n    password: $H\n", ":2:3: username ' john' has leading"),
    ],
)
def test_errors_name_file_line_and_column(
    tmp_path: Path, fast_hash: Hash, body: str, expected: str
) -> None:
    path = tmp_path / "users.yml"
    path.write_text(body.replace("$H", f'"{fast_hash("x")}"'))
    with pytest.raises(ConfigError) as caught:
        load_users(path)
    assert f"{path}{expected}" in str(caught.value)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "users.yml"
    path.write_text("users:\n  a:\n    password: x\n  b:\n    password: y\n")
    with pytest.raises(ConfigError) as caught:
        load_users(path)
    assert len(caught.value.issues) == 2


def test_empty_file_means_no_users(tmp_path: Path) -> None:
    path = tmp_path / "users.yml"
    path.write_text("# nobody yet\n")
    assert load_users(path) == {}


def test_a_users_file_written_in_two_chunks_is_never_half_applied(
    users_file: Path, fast_hash: Hash
) -> None:
    """Cut just before dave's last line, the file is valid and dave is enabled: that version
    must never be in force. (Written in place; one poll reads the half-written file.)"""
    complete = users_yaml(fast_hash).replace("groups: [admins, dev]", "groups: [dev]")
    cut = complete.index("    disabled: true")
    enabled_dave: list[bool] = []

    async def main() -> None:
        backend = UsersFileBackend(users_file, poll_interval=0.02)
        await backend.start()
        handle = users_file.open("r+", encoding="utf-8")
        script = ["first chunk", "second chunk"]
        done = asyncio.get_running_loop().create_future()
        real_reload = backend.reload

        async def observed_reload() -> bool:
            result = await real_reload()
            enabled_dave.append(await backend.get_user("dave") is not None)
            step = script.pop(0) if script else None
            if step == "first chunk":
                handle.truncate(0)
                handle.write(complete[:cut])
                handle.flush()
            elif step == "second chunk":
                handle.write(complete[cut:])
                handle.close()
            else:
                john = await backend.get_user("john")
                if john is not None and john.groups == ("dev",) and not done.done():
                    done.set_result(None)
            return result

        backend.reload = observed_reload  # type: ignore[method-assign]  # the poller's next call
        try:
            await asyncio.wait_for(done, timeout=10)
        finally:
            handle.close()
            await backend.close()

    asyncio.run(main())
    assert enabled_dave and not any(enabled_dave), enabled_dave
