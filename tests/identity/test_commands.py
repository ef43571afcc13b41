"""``gateway users ...`` driven through its own parser, as the ``gateway`` script does."""

from __future__ import annotations

import argparse
import io
import stat
from pathlib import Path

import pytest

from gateway.identity import commands
from gateway.identity.passwords import hash_password, verify_password
from gateway.identity.users_file import load_users
from tests.support.config import GatewayConfig
from tests.support.passwords import FAST


def gateway_users(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="gateway users")
    commands.add_arguments(parser)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = commands.run(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters for tests that are not about the hash itself."""
    monkeypatch.setattr(
        commands, "hash_password", lambda password: hash_password(password, parameters=FAST)
    )


@pytest.fixture
def users(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cheap_hashes: None,
) -> Path:
    path = tmp_path / "users.yml"
    code, _, _ = gateway_users(
        monkeypatch,
        capsys,
        "add", "john", "--file", str(path), "--name", "John Doe",
        "--email", "john@example.com", "--group", "admins", "--group", "dev",
        stdin="john-password\n",
    )  # fmt: skip
    assert code == 0
    return path


def test_hash_password_reads_a_piped_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gateway_users(monkeypatch, capsys, "hash-password", stdin="s3cret pw\n")
    assert code == 0
    assert out.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(out.strip(), "s3cret pw")


def test_hash_password_prompts_twice_without_echo_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    assert commands.run(parser.parse_args(["hash-password"])) == 1
    assert "the two passwords differ" in capsys.readouterr().err


def test_empty_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gateway_users(monkeypatch, capsys, "hash-password", stdin="\n")
    assert (code, out) == (1, "")
    assert "the password is empty" in err


def test_add_creates_a_private_file_the_gateway_accepts(users: Path) -> None:
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    john = load_users(users)["john"]
    assert john.user.display_name == "John Doe"
    assert john.user.groups == ("admins", "dev")
    assert verify_password(john.password_hash, "john-password")


def test_add_an_existing_user_is_an_error(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gateway_users(
        monkeypatch, capsys, "add", "john", "--file", str(users), stdin="x\n"
    )
    assert code == 1
    assert "user 'john' already exists" in err
    assert "Traceback" not in err


def test_add_refuses_a_group_with_a_comma(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gateway_users(
        monkeypatch, capsys, "add", "eve", "--file", str(users), "--group", "a,b", stdin="x\n"
    )
    assert code == 1 and "contains a comma" in err
    assert "eve" not in load_users(users)


def test_edits_keep_comments_other_users_and_mode(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = users.read_text().replace("users:\n", "# who may log in\nusers:\n")
    users.write_text(text + "    # john's laptop is managed by IT\n")
    users.chmod(0o640)
    before = load_users(users)["john"]

    steps = [
        (("add", "harry", "--group", "dev"), "harry-password\n"),
        (("disable", "john"), ""),
        (("set-password", "harry"), "new-password\n"),
    ]
    for argv, stdin in steps:
        code, _, err = gateway_users(monkeypatch, capsys, *argv, "--file", str(users), stdin=stdin)
        assert (code, err) == (0, "")

    text = users.read_text()
    assert "# who may log in\n" in text
    assert "# john's laptop is managed by IT\n" in text
    assert stat.S_IMODE(users.stat().st_mode) == 0o640
    records = load_users(users)
    assert records["john"].user.disabled
    assert records["john"].password_hash == before.password_hash
    assert verify_password(records["harry"].password_hash, "new-password")

    code, out, _ = gateway_users(monkeypatch, capsys, "enable", "john", "--file", str(users))
    assert code == 0 and "enabled user 'john'" in out
    assert not load_users(users)["john"].user.disabled


def test_remove_and_list(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_users(monkeypatch, capsys, "add", "harry", "--file", str(users), stdin="h\n")
    code, out, _ = gateway_users(monkeypatch, capsys, "list", "--file", str(users))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "NAME", "EMAIL", "GROUPS", "STATUS"]
    assert lines[1].split() == ["john", "John", "Doe", "john@example.com", "admins,dev", "enabled"]
    assert lines[2].split() == ["harry", "harry", "enabled"]

    assert gateway_users(monkeypatch, capsys, "remove", "harry", "--file", str(users))[0] == 0
    assert list(load_users(users)) == ["john"]


@pytest.mark.parametrize("action", ["set-password", "disable", "enable", "remove"])
def test_unknown_user_is_a_clear_error(
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
) -> None:
    code, _, err = gateway_users(
        monkeypatch, capsys, action, "nobody", "--file", str(users), stdin="x\n"
    )
    assert code == 1
    assert err == f"gateway users: no user 'nobody' in {users}\n"


def test_a_broken_file_is_not_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.yml"
    path.write_text("users:\n  john:\n    password: plain\n")
    code, _, err = gateway_users(monkeypatch, capsys, "disable", "john", "--file", str(path))
    assert code == 1
    assert f"{path}:3:15: password must be an argon2id hash" in err
    assert path.read_text() == "users:\n  john:\n    password: plain\n"


def test_flow_style_file_is_rewritten_and_says_so(
    tmp_path: Path,
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    john = load_users(users)["john"]
    path = tmp_path / "flow.yml"
    path.write_text(f'# header\nusers: {{john: {{password: "{john.password_hash}"}}}} # inline\n')
    code, _, err = gateway_users(monkeypatch, capsys, "disable", "john", "--file", str(path))
    assert code == 0
    assert "comments inside it were lost" in err
    assert path.read_text().startswith("# header\n")
    assert load_users(path)["john"].user.disabled


def test_users_file_from_the_gateway_configuration(
    tmp_path: Path, users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = GatewayConfig(
        encryption_keys=["A" * 43],
        authentication={"backend": "file", "file": {"path": users.name}},
    ).write(tmp_path)
    code, out, err = gateway_users(monkeypatch, capsys, "check", "--config", str(config))
    assert (code, err) == (0, "")
    assert out == f"{users}: ok, 1 users (1 enabled)\n"


def test_no_file_named_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gateway_users(monkeypatch, capsys, "list")
    assert code == 1
    assert "name the users file with --file PATH or --config gateway.yml" in err


def test_a_users_file_that_is_not_utf8_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.yml"
    path.write_bytes(b"users:\n  j\xf6rg: {}\n")
    for action in ("list", "check"):
        code, _, err = gateway_users(monkeypatch, capsys, action, "--file", str(path))
        assert code == 1
        assert err == f"{path}:2:4: the file is not UTF-8 text (byte 0xf6)\n"
