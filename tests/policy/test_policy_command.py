"""``gateway policy test``: one request, JSON lines with expectations, and the real command."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.policy.testing import add_arguments, run
from tests.support.config import Cookie, GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "example.yml"


def command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="gateway policy")
    add_arguments(parser)
    status = run(parser.parse_args(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_one_request_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = command(
        [
            "test",
            "--policy",
            str(EXAMPLE),
            "--url",
            "https://admin.example.com/",
            "--user",
            "alice",
            "--group",
            "admins",
        ],
        capsys,
    )
    assert status == 0
    assert out == (f"level:     two_factor\nrule:      rule #4 at {EXAMPLE}:43:7\npotential: no\n")


def test_one_request_as_json_anonymous_is_potential(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = command(
        ["test", "--policy", str(EXAMPLE), "--url", "https://admin.example.com/", "--json"], capsys
    )
    assert status == 0
    assert json.loads(out) == {
        "level": "two_factor",
        "rule": {"position": 4, "source": f"{EXAMPLE}:43:7"},
        "potential": True,
    }


def test_default_policy_and_machine_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = command(
        ["test", "--policy", str(EXAMPLE), "--url", "https://example.com/"], capsys
    )
    assert (status, out.splitlines()[1]) == (0, "rule:      default policy")
    status, out, _ = command(
        [
            "test",
            "--policy",
            str(EXAMPLE),
            "--url",
            "https://api.example.com/deploy",
            "--method",
            "POST",
            "--credential",
            "key:ci-runner",
            "--json",
        ],
        capsys,
    )
    assert json.loads(out)["rule"]["position"] == 6


def test_bad_url_and_bad_policy_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = command(["test", "--policy", str(EXAMPLE), "--url", "example.com"], capsys)
    assert (status, out) == (2, "")
    assert err == "error: URL must start with http:// or https:// (got 'example.com')\n"
    broken = tmp_path / "broken.yml"
    broken.write_text("access_control:\n  rules:\n    - domain: a.example.com\n      policy: 2fa\n")
    status, out, err = command(
        ["test", "--policy", str(broken), "--url", "https://a.example.com/"], capsys
    )
    assert status == 1
    assert f"{broken}:4:15: unknown policy '2fa'" in err


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "access_control:\n  rules:\n    - domain: a.example.com\n      policy: one_factor\n"
        "    - domain: a.example.com\n      policy: deny\n"
    )
    status, _, err = command(
        ["test", "--policy", str(policy), "--url", "https://a.example.com/"], capsys
    )
    assert status == 0
    assert err == (
        f"warning: {policy}:5:7: rule #2 can never match: rule #1 ({policy}:3:7) comes first "
        "and matches every request it would\n"
    )


LINES = [
    '{"url": "https://public.example.com/", "expect": "bypass"}',
    '{"url": "https://admin.example.com/", "user": "bob", "expect": "two_factor"}',
    "",
    "not json",
    '{"url": "https://admin.example.com/", "usr": "bob"}',
    '{"url": "admin.example.com"}',
    '{"url": "https://admin.example.com/", "expect": "2fa"}',
    '{"url": "https://git.example.com/", "user": "bob", "groups": ["dev"], "ip": "192.0.2.7"}',
    '["https://git.example.com/"]',
    '{"method": "GET"}',
]


def test_json_lines_with_expectations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(LINES) + "\n")
    status, out, err = command(
        ["test", "--policy", str(EXAMPLE), "--requests", str(requests)], capsys
    )
    results = [json.loads(line) for line in out.splitlines()]
    example = str(EXAMPLE)
    assert results == [
        {
            "line": 1,
            "url": "https://public.example.com/",
            "method": "GET",
            "level": "bypass",
            "rule": {"position": 1, "source": f"{example}:27:7"},
            "potential": False,
            "expect": "bypass",
            "ok": True,
        },
        {
            "line": 2,
            "url": "https://admin.example.com/",
            "method": "GET",
            "user": "bob",
            "level": "deny",
            "rule": {"position": 5, "source": f"{example}:46:7"},
            "potential": False,
            "expect": "two_factor",
            "ok": False,
        },
        {"line": 4, "error": "not valid JSON: Expecting value at column 1"},
        {"line": 5, "error": "unknown field 'usr' (did you mean 'user'?)"},
        {"line": 6, "error": "URL must start with http:// or https:// (got 'admin.example.com')"},
        {
            "line": 7,
            "error": "'expect' must be one of bypass, one_factor, two_factor, deny (got '2fa')",
        },
        {
            "line": 8,
            "url": "https://git.example.com/",
            "method": "GET",
            "user": "bob",
            "level": "one_factor",
            "rule": {"position": 10, "source": f"{example}:69:7"},
            "potential": False,
        },
        {"line": 9, "error": 'a request must be a JSON object such as {"url": "https://..."}'},
        {"line": 10, "error": "'url' is required"},
    ]
    assert status == 1
    assert err == "7 of 9 requests failed\n"


def test_json_lines_all_good_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(LINES[0] + "\n" + LINES[7] + "\n"))
    status, out, err = command(["test", "--policy", str(EXAMPLE), "--requests", "-"], capsys)
    assert (status, err) == (0, "")
    assert [json.loads(line)["level"] for line in out.splitlines()] == ["bypass", "one_factor"]


def test_config_file_supplies_the_policy_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = GatewayConfig(
        hash_key="h" * 40,
        policy_files=["policies/main.yml"],
        cookies=(Cookie(portal_url="https://auth.example.com/"),),
        policy=EXAMPLE.read_text(),
    ).write(tmp_path)
    status, out, err = command(
        ["test", "--config", str(config), "--url", "https://public.example.com/", "--json"], capsys
    )
    assert (status, err) == (0, "")
    assert json.loads(out)["rule"]["source"] == f"{tmp_path / 'policies' / 'main.yml'}:27:7"


def test_config_and_policy_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = command(
        ["test", "--config", "g.yml", "--policy", str(EXAMPLE), "--url", "https://a.example.com/"],
        capsys,
    )
    assert (status, err) == (1, "error: give --config or --policy, not both\n")


def gateway(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_installed_command_answers() -> None:
    done = gateway(
        "policy",
        "test",
        "--policy",
        "policies/example.yml",
        "--url",
        "https://wiki.example.com/Home?action=edit",
        "--user",
        "bob",
        "--json",
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {
        "level": "two_factor",
        "rule": {"position": 9, "source": "policies/example.yml:62:7"},
        "potential": False,
    }


def test_the_installed_command_fails_ci_on_a_broken_expectation() -> None:
    lines = (
        '{"url": "https://public.example.com/", "expect": "bypass"}\n'
        '{"url": "https://api.example.com/", "user": "bob", "method": "DELETE", '
        '"expect": "one_factor"}\n'
        "{oops\n"
    )
    done = gateway(
        "policy", "test", "--policy", "policies/example.yml", "--requests", "-", stdin=lines
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [result.get("ok") for result in results] == [True, False, None]
    assert results[1]["level"] == "two_factor"
    assert results[2]["error"].startswith("not valid JSON")


def test_shipped_example_expectations_hold(capsys: pytest.CaptureFixture[str]) -> None:
    expectations = ROOT / "policies" / "example.expectations.jsonl"
    status, out, err = command(
        ["test", "--policy", str(EXAMPLE), "--requests", str(expectations)], capsys
    )
    results = [json.loads(line) for line in out.splitlines()]
    assert (status, err) == (0, "")
    assert len(results) == len(expectations.read_text().splitlines())
    assert all(result["ok"] for result in results)


def test_missing_requests_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.jsonl"
    status, out, err = command(
        ["test", "--policy", str(EXAMPLE), "--requests", str(missing)], capsys
    )
    assert (status, out) == (1, "")
    assert err == f"error: cannot read {missing}: No such file or directory\n"


def test_ambiguous_paths_are_refused_unless_the_mode_says_normalize(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://app.example.com/public/..;/admin"
    status, _, err = command(["test", "--policy", str(EXAMPLE), "--url", url], capsys)
    assert status == 2
    assert "ambiguous path: it contains a '.' or '..' segment" in err
    status, out, _ = command(
        ["test", "--policy", str(EXAMPLE), "--url", url, "--paths", "normalize"], capsys
    )
    assert status == 0
    assert out.startswith("level:")
