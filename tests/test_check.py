"""``gateway check`` runs exactly what start-up runs, and neither ever shows a traceback.

* For a table of broken configurations, ``check`` fails if and only if building the runtime
  (``gateway serve`` start-up) fails, with the same messages.
* A file that ``gateway.yml`` names and that cannot be read is reported at the line that
  names it.
* The real commands (``gateway check``, ``gateway policy test``, ``gateway serve``) on inputs
  that used to end in a traceback exit non-zero with ``file:line:column``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import check
from gateway.app import build_runtime, close_runtime
from gateway.cli import main
from gateway.config.settings import load_settings
from gateway.config.yaml import ConfigError
from gateway.security.crypto import generate_key
from tests.support.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[1]

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: app.example.com
      policy: one_factor
"""
USERS = """\
users:
  alice:
    displayname: Alice
    password: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
"""
LDAP = """\
authentication:
  backend: ldap
  ldap:
    urls: [ldap://127.0.0.1:9]
    base_dn: dc=example,dc=com
"""


def configuration(directory: Path, extra: str = "", *, users: str | None = USERS) -> Path:
    """gateway.yml (lines 1-12 fixed, ``extra`` from line 13), policy.yml and users.yml."""
    storage = f"storage:\n  sqlite: {{path: {directory / 'gateway.sqlite3'}}}\n"
    config = GatewayConfig(store="memory", storage=storage, extra=extra, policy=POLICY, users=users)
    return config.write(directory)


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Exit status and the ``error:`` lines of ``gateway check``."""
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    status = check.run(parser.parse_args(["--config", str(path)]))
    errors = [
        line.removeprefix("error: ")
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("error: ")
    ]
    return status, errors


def start_up(path: Path) -> list[str]:
    """The issues start-up (build_runtime) fails with; [] when it starts."""

    async def build() -> list[str]:
        try:
            runtime = await build_runtime(load_settings(path))
        except ConfigError as error:
            return [str(issue) for issue in error.issues]
        await close_runtime(runtime)
        return []

    return asyncio.run(build())


# (gateway.yml from line 13, users file, other files to write, the error expected).
BROKEN = {
    "fine": ("", USERS, {}, None),
    "LDAP users_filter without {input}": (
        LDAP + '    users_filter: "(uid=john)"\n',
        None,
        {},
        "gateway.yml:18:19: authentication.ldap: users_filter '(uid=john)' must contain "
        "{input} (the username typed)",
    ),
    "LDAP users_filter that does not parse": (
        LDAP + '    users_filter: "(&(uid={input})"\n',
        None,
        {},
        "gateway.yml:18:19: authentication.ldap: users_filter '(&(uid={input})' is not a "
        "valid LDAP filter",
    ),
    "LDAP groups_filter from the preset, with a bad placeholder elsewhere": (
        LDAP + '    groups_filter: "(member={user})"\n',
        None,
        {},
        "gateway.yml:18:20: authentication.ldap: groups_filter '(member={user})' may only "
        "use {dn}, {username}, {input}",
    ),
    "LDAP CA certificate missing": (
        LDAP + "    start_tls: true\n    ca_certificate: ldap-ca.pem\n",
        None,
        {},
        "gateway.yml:19:21: LDAP CA certificate {dir}/ldap-ca.pem: file not found",
    ),
    "users file missing": (
        "",
        None,
        {},
        "gateway.yml:1:1: users file {dir}/users.yml: file not found",
    ),
    "users file named and missing": (
        "authentication:\n  file: {path: people.yml}\n",
        None,
        {},
        "gateway.yml:14:16: users file {dir}/people.yml: file not found",
    ),
    "users file invalid": (
        "",
        USERS + "    disabled: maybe\n",
        {},
        "users.yml:5:15: disabled must be true or false",
    ),
    "policy file missing": (
        "",
        USERS,
        {"policy.yml": None},
        "gateway.yml:5:11: policy file {dir}/policy.yml: file not found",
    ),
    "policy file invalid": (
        "",
        USERS,
        {"policy.yml": POLICY.replace("one_factor", "two-factor")},
        "policy.yml:5:15: unknown policy 'two-factor'",
    ),
    "client CA bundle missing": (
        "credentials:\n  client_certificates:\n    ca_bundle: clients.pem\n",
        USERS,
        {},
        "gateway.yml:15:16: client CA bundle {dir}/clients.pem: file not found",
    ),
    "client CA bundle that is not PEM": (
        "credentials:\n  client_certificates:\n    ca_bundle: clients.pem\n",
        USERS,
        {"clients.pem": "not a certificate\n"},
        "gateway.yml:15:16: credentials.client_certificates.ca_bundle: {dir}/clients.pem is "
        "not a PEM bundle of certificates",
    ),
    "public key file missing": (
        "credentials:\n  issuers:\n    - {name: ci, issuer: https://ci, audiences: [x],"
        " public_key_files: [ci.pem]}\n",
        USERS,
        {},
        "gateway.yml:15:73: public key file of issuer ci {dir}/ci.pem: file not found",
    ),
    "public key file that is not a key": (
        "credentials:\n  issuers:\n    - {name: ci, issuer: https://ci, audiences: [x],"
        " public_key_files: [ci.pem]}\n",
        USERS,
        {"ci.pem": "nope\n"},
        "gateway.yml:15:7: credentials.issuers.0 (ci): ",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_fails_exactly_when_start_up_fails(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, users, files, expected = BROKEN[case]
    path = configuration(tmp_path, extra, users=users)
    for name, text in files.items():
        if text is None:
            (tmp_path / name).unlink()
        else:
            (tmp_path / name).write_text(text)
    status, check_errors = run_check(path, capsys)
    start_up_errors = start_up(path)
    assert check_errors == start_up_errors  # the same verdict, the same messages
    assert status == (1 if expected else 0)
    if expected is not None:
        relative = [error.replace(f"{tmp_path}/", "") for error in check_errors]
        assert len(relative) == 1, relative  # said once, not again by the loader
        assert relative[0].startswith(expected.replace("{dir}/", "")), relative


def test_settings_not_read_from_a_file_are_validated_too(tmp_path: Path) -> None:
    from gateway.config.settings import Settings
    from gateway.validation import validate

    configuration(tmp_path, users=None)
    settings = Settings.model_validate(
        {
            "secrets": {"encryption_keys": [generate_key()], "hash_key": "k" * 40},
            "policy": {"files": [str(tmp_path / "policy.yml")]},
            "session": {
                "cookies": [{"domain": "example.com", "portal_url": "https://a.example.com"}]
            },
            "authentication": {"file": {"path": str(tmp_path / "users.yml")}},
        }
    )
    with pytest.raises(ConfigError) as refused:
        validate(settings)
    assert [str(issue) for issue in refused.value.issues] == [
        f"users file {tmp_path}/users.yml: file not found"  # no line to point at
    ]


# ------------------------------------------------------------------------------------------
# The real commands, on inputs that used to end in a traceback
# ------------------------------------------------------------------------------------------

DEEP = "[" * 3000 + "]" * 3000
# (file to change, its new text, where the error must point)
CRASHERS: dict[str, tuple[str, str | None, str]] = {
    "invalid date": ("policy.yml", POLICY + "      networks: 2001-02-30\n", "policy.yml:6:17:"),
    "!!bool maybe": (
        "policy.yml",
        POLICY.replace("one_factor", "!!bool maybe"),
        "policy.yml:5:15:",
    ),
    "!!timestamp x": (
        "policy.yml",
        POLICY.replace("app.example.com", "!!timestamp x"),
        "policy.yml:4:15:",
    ),
    "!!binary": (
        "policy.yml",
        POLICY.replace("app.example.com", "!!binary x"),
        "policy.yml:4:15:",
    ),
    "3000-deep nesting": ("policy.yml", POLICY + f"      networks: {DEEP}\n", "policy.yml:6:"),
    # hash_key_file with a NUL byte (see crasher())
    "NUL byte in a *_file path": ("gateway.yml", None, "gateway.yml:3:18:"),
    "!!timestamp in gateway.yml": (
        "gateway.yml",
        "server:\n  address: !!timestamp x\n",
        "gateway.yml:14:12:",
    ),
}


def crasher(case: str, directory: Path) -> tuple[Path, str]:
    name, text, where = CRASHERS[case]
    path = configuration(directory)
    if case == "NUL byte in a *_file path":
        config = path.read_text()
        config = config.replace(f"hash_key: {'k' * 40}", 'hash_key_file: "/run/se\\0crets/k"')
        path.write_text(config)
    elif name == "gateway.yml":
        path.write_text(path.read_text() + str(text))
    else:
        (directory / name).write_text(str(text))
    return path, where


def gateway_command(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


@pytest.mark.parametrize("case", list(CRASHERS))
def test_gateway_check_on_bad_input_is_a_clean_error(case: str, tmp_path: Path) -> None:
    path, where = crasher(case, tmp_path)
    result = gateway_command("check", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr
    assert errors[0].removeprefix("error: ").startswith(f"{tmp_path}/{where}"), errors


@pytest.mark.parametrize("case", list(CRASHERS))
def test_gateway_policy_test_on_bad_input_is_a_clean_error(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, where = crasher(case, tmp_path)
    status = main(["policy", "test", "--config", str(path), "--url", "https://app.example.com/"])
    err = capsys.readouterr().err
    assert status != 0
    assert f"{tmp_path}/{where}" in err, err


BAD_POLICY = POLICY.replace("one_factor", "!!bool maybe")


@pytest.mark.parametrize(
    ("case", "change", "where"),
    [
        ("bad policy", ("policy.yml", BAD_POLICY), "policy.yml:5:15"),
        ("bad users file", ("users.yml", USERS + "    groups: [a,b]x\n"), "users.yml:5:"),
        ("missing users file", ("users.yml", None), "gateway.yml:1:1"),
        ("bad configuration", ("gateway.yml", "server:\n  port: 2001-02-30\n"), "gateway.yml:14:9"),
    ],
)
def test_gateway_serve_with_bad_files_exits_with_a_clean_error(
    case: str, change: tuple[str, str | None], where: str, tmp_path: Path
) -> None:
    path = configuration(tmp_path)
    name, text = change
    if text is None:
        (tmp_path / name).unlink()
    elif name == "gateway.yml":
        path.write_text(path.read_text() + text)
    else:
        (tmp_path / name).write_text(text)
    result = gateway_command("serve", "-c", str(path), "--port", "1")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {tmp_path}/{where}" in result.stderr, result.stderr
