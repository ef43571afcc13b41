"""``api_hosts:`` and ``api_keys:`` in policy files: what the engine carries, and the errors."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import textwrap
from pathlib import Path

import pytest

from gateway.config.yaml import ConfigError, load_text
from gateway.credentials.api_keys import hash_secret
from gateway.policy import PolicyEngine, PolicyWatcher, compile_documents, load_policy
from gateway.policy.testing import add_arguments, run

from .helpers import issues_of, policy_from_text, warnings_of

HASH = "ab" * 32
KEY_ID = "abcdefghijkl"

FULL = f"""\
definitions:
  network:
    partner-a: [198.51.100.0/24, "2001:db8:a::/48"]
access_control:
  default_policy: deny
  rules:
    - domain: api.llm.example.com
      subject: "key:ci-runner"
      policy: one_factor
api_hosts:
  - domain: api.llm.example.com
    networks: [10.20.0.0/16, partner-a]
    upstream:
      - {{header: Authorization, secret: llm-master-key, format: "Bearer {{secret}}"}}
  - domain: "api.*.example.com"
    networks_env: PARTNER_NETS
  - domain: models.example.com
api_keys:
  - name: ci-runner
    id: {KEY_ID}
    hash: {HASH}
    groups: [ci]
    scopes: ["api.*.example.com"]
    networks: [10.0.0.0/8, partner-a]
    expires: 2027-01-01
"""


def networks(values: tuple[object, ...] | None) -> list[str] | None:
    return None if values is None else [str(value) for value in values]


def test_the_engine_carries_what_the_files_declare() -> None:
    engine = compile_documents(
        [load_text(FULL, "policy.yml")], environ={"PARTNER_NETS": "203.0.113.0/24"}
    )
    assert [
        (host.domain, networks(host.networks), [u.secret for u in host.upstream])
        for host in engine.api_hosts
    ] == [
        (
            "api.llm.example.com",
            ["10.20.0.0/16", "198.51.100.0/24", "2001:db8:a::/48"],
            ["llm-master-key"],
        ),
        ("api.*.example.com", ["203.0.113.0/24"], []),
        ("models.example.com", None, []),  # None: credentials.default_networks
    ]
    [key] = engine.static_api_keys
    assert (key.name, key.key_id, key.secret_hash, key.static) == (
        "ci-runner",
        KEY_ID,
        bytes.fromhex(HASH),
        True,
    )
    assert key.groups == ("ci",) and key.scopes == ("api.*.example.com",)
    assert key.networks == ("10.0.0.0/8", "198.51.100.0/24", "2001:db8:a::/48")
    assert key.allows_address(ipaddress.ip_address("198.51.100.7"))
    assert not key.allows_address(ipaddress.ip_address("192.0.2.1"))
    assert key.expires_at == 1798761600.0
    assert engine.warnings == ()
    assert len(engine.rules) == 1


def test_a_policy_without_declarations_has_none() -> None:
    engine = policy_from_text("access_control: {default_policy: one_factor}")
    assert (engine.api_hosts, engine.static_api_keys) == ((), ())


def test_declarations_from_several_files_and_network_names_across_files(tmp_path: Path) -> None:
    main = tmp_path / "main.yml"
    keys = tmp_path / "keys.yml"
    main.write_text(
        "definitions:\n  network:\n    ci: 10.9.0.0/16\n"
        "access_control: {default_policy: one_factor}\n"
        "api_hosts:\n  - {domain: api.one.example.com, networks: ci}\n"
    )
    # A file with only declarations is fine (no "no access_control section" warning).
    keys.write_text(
        f"api_hosts:\n  - domain: api.two.example.com\n"
        f"api_keys:\n  - {{name: bot, id: {KEY_ID}, hash: {HASH}, networks: ci}}\n"
    )
    engine = load_policy([main, keys], environ={})
    assert [host.domain for host in engine.api_hosts] == [
        "api.one.example.com",
        "api.two.example.com",
    ]
    assert networks(engine.api_hosts[0].networks) == ["10.9.0.0/16"]
    assert [key.networks for key in engine.static_api_keys] == [("10.9.0.0/16",)]
    assert engine.warnings == ()


def test_a_declared_key_verifies_with_the_hash_the_cli_prints() -> None:
    hash_key = b"k" * 40
    key = f"gw_{KEY_ID}_" + "s" * 43
    engine = policy_from_text(
        f"""
        access_control: {{default_policy: one_factor}}
        api_keys:
          - name: deploy-bot
            id: {KEY_ID}
            hash: {hash_secret(hash_key, key).hex()}
        """
    )
    [declared] = engine.static_api_keys
    assert declared.secret_matches(hash_secret(hash_key, key), now=0.0)


def test_networks_env_reads_the_given_environment() -> None:
    text = "access_control: {default_policy: one_factor}\n" + textwrap.dedent(
        """\
        api_hosts:
          - domain: api.partner.example.com
            networks_env: PARTNER_NETS
        """
    )
    engine = compile_documents(
        [load_text(text, "policy.yml")], environ={"PARTNER_NETS": "203.0.113.0/24, 10.0.0.0/8"}
    )
    assert networks(engine.api_hosts[0].networks) == ["203.0.113.0/24", "10.0.0.0/8"]
    with pytest.raises(ConfigError) as refused:
        compile_documents([load_text(text, "policy.yml")], environ={})
    assert str(refused.value) == (
        "policy.yml:3:5: api_hosts.0: networks_env: environment variable PARTNER_NETS is not "
        "set (it must hold space-separated CIDR networks, e.g. '203.0.113.0/24 10.0.0.0/8')"
    )


HEAD = "access_control: {default_policy: one_factor}\n"

# One row per mistake: the policy text after HEAD, the exact errors.
INVALID = [
    pytest.param(
        """
        api_hosts:
          - domain: api..example.com
        """,
        [
            "policy.yml:4:13: api_hosts.0.domain: 'api..example.com' is not a host name or glob "
            "(e.g. api.*.example.com)"
        ],
        id="bad-domain",
    ),
    pytest.param(
        """
        api_hosts:
          - domain: api.x.example.com
            netwroks: [10.0.0.0/8]
        """,
        ["policy.yml:5:5: unknown option 'netwroks' (did you mean 'networks'?)"],
        id="unknown-host-key",
    ),
    pytest.param(
        """
        api_hosts:
          - networks: [10.0.0.0/8]
        """,
        ["policy.yml:4:5: missing required option 'api_hosts.0.domain'"],
        id="missing-domain",
    ),
    pytest.param(
        """
        api_hosts:
          - domain: api.x.example.com
            networks: [ofice, 10.0.0.0/33]
        """,
        [
            "policy.yml:5:16: unknown network 'ofice': not an IP address, a CIDR or a defined "
            "network name (no networks are defined)",
            "policy.yml:5:23: unknown network '10.0.0.0/33': not an IP address, a CIDR or a "
            "defined network name (no networks are defined)",
        ],
        id="unknown-network",
    ),
    pytest.param(
        """
        definitions:
          network:
            office: 192.0.2.0/24
        api_hosts:
          - domain: api.x.example.com
            networks: [offise]
        """,
        [
            "policy.yml:8:16: unknown network 'offise': not an IP address, a CIDR or a defined "
            "network name (did you mean 'office'?)"
        ],
        id="network-hint",
    ),
    pytest.param(
        """
        api_hosts:
          - domain: api.x.example.com
            networks: [10.0.0.0/8]
            networks_env: NETS
        """,
        ["policy.yml:4:5: api_hosts.0: set either networks or networks_env, not both"],
        id="networks-and-env",
    ),
    pytest.param(
        """
        api_hosts:
          - domain: api.x.example.com
            upstream:
              - {secret: master, format: "Token"}
        """,
        [
            "policy.yml:6:34: api_hosts.0.upstream.0.format: format must contain {secret} "
            "exactly once"
        ],
        id="upstream-format",
    ),
    pytest.param(
        """
        api_hosts:
          - domain: api.x.example.com
          - domain: API.X.example.com
        """,
        ["policy.yml:5:13: API host 'api.x.example.com' is already declared at policy.yml:4:13"],
        id="duplicate-host",
    ),
    pytest.param(
        """
        api_hosts:
          domain: api.x.example.com
        """,
        ["policy.yml:4:3: 'api_hosts' must be a list of {domain, networks}"],
        id="hosts-not-a-list",
    ),
    pytest.param(
        """
        api_hosts:
          - api.x.example.com
        """,
        ["policy.yml:4:5: an API host must be a mapping {domain, networks, upstream}"],
        id="host-not-a-mapping",
    ),
    pytest.param(
        f"""
        api_keys:
          - name: ci-runner
            id: ABCDEFGHIJKL
            hash: {HASH[:-1]}
            grups: [ci]
            expires: tomorrow
        """,
        [
            "policy.yml:5:9: id must be 12 characters of a-z and 2-7",
            "policy.yml:6:11: hash must be 64 hex digits (a keyed hash)",
            "policy.yml:7:5: unknown option 'grups' (did you mean 'groups'?)",
            "policy.yml:8:14: 'tomorrow' is not a date (write e.g. 2026-06-30)",
        ],
        id="bad-key",
    ),
    pytest.param(
        f"""
        api_keys:
          - {{name: ci, id: {KEY_ID}, hash: {HASH}, networks: [10.0.0.0/8, partner]}}
        """,
        [
            "policy.yml:4:129: unknown network 'partner': not an IP address, a CIDR or a "
            "defined network name (no networks are defined)"
        ],
        id="key-network",
    ),
    pytest.param(
        f"""
        api_keys:
          - {{name: ci, id: {KEY_ID}, hash: {HASH}}}
          - {{name: ci, id: {KEY_ID}, hash: {HASH}}}
        """,
        [
            "policy.yml:5:12: API key name 'ci' is declared twice",
        ],
        id="duplicate-key",
    ),
    pytest.param(
        """
        api_keys:
          name: ci
        """,
        ["policy.yml:4:3: 'api_keys' must be a list of {name, id, hash} declarations"],
        id="keys-not-a-list",
    ),
    pytest.param(
        """
        api_key: []
        """,
        ["policy.yml:3:1: unknown top-level key 'api_key' (did you mean 'api_keys'?)"],
        id="misspelt-section",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_declarations_are_refused_with_their_position(
    text: str, expected: list[str]
) -> None:
    assert issues_of(HEAD + textwrap.dedent(text)) == expected


def test_keys_are_unique_across_files() -> None:
    first = load_text(
        f"access_control: {{default_policy: one_factor}}\n"
        f"api_keys:\n  - {{name: ci, id: {KEY_ID}, hash: {HASH}}}\n",
        "a.yml",
    )
    second = load_text(
        f"api_keys:\n  - {{name: ci, id: {'b' * 12}, hash: {HASH}}}\n"
        f"api_hosts:\n  - domain: api.x.example.com\n",
        "b.yml",
    )
    with pytest.raises(ConfigError) as refused:
        compile_documents([first, second])
    assert [str(issue) for issue in refused.value.issues] == [
        "b.yml:2:12: API key name 'ci' is already declared at a.yml:3:12"
    ]


def test_other_top_level_keys_are_still_ignored_with_a_warning() -> None:
    assert warnings_of(HEAD + "theme: dark\n") == [
        "policy.yml:2:1: ignoring top-level keys 'theme': a policy file only uses "
        "'access_control', 'definitions', 'api_hosts' and 'api_keys'"
    ]


def test_policy_test_command_loads_a_policy_with_declarations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_NETS", "203.0.113.0/24")
    path = tmp_path / "policy.yml"
    path.write_text(FULL)
    parser = argparse.ArgumentParser(prog="gateway policy")
    add_arguments(parser)
    argv = ["test", "--policy", str(path), "--url", "https://api.llm.example.com/v1", "--json"]
    status = run(parser.parse_args([*argv, "--credential", "key:ci-runner"]))
    out = capsys.readouterr().out
    assert status == 0
    assert json.loads(out) == {
        "level": "one_factor",
        "rule": {"position": 1, "source": f"{path}:7:7"},
        "potential": False,
    }


# -- hot reload ----------------------------------------------------------------------------


def declarations(engine: PolicyEngine) -> tuple[list[str], list[str]]:
    return (
        [host.domain for host in engine.api_hosts],
        [key.name for key in engine.static_api_keys],
    )


def test_reload_swaps_declarations_and_calls_on_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yml"
    key = f"  - {{name: ci, id: {KEY_ID}, hash: {HASH}}}\n"
    other = f"  - {{name: bot, id: {'b' * 12}, hash: {HASH}}}\n"
    hosts = "api_hosts:\n  - domain: llm.example.com\n"
    path.write_text(HEAD + hosts + "api_keys:\n" + key)

    async def scenario() -> None:
        seen: list[tuple[list[str], list[str]]] = []

        async def on_reload(engine: PolicyEngine) -> None:
            seen.append(declarations(engine))

        watcher = PolicyWatcher([path], environ={}, on_reload=on_reload)
        assert declarations(watcher.current) == (["llm.example.com"], ["ci"])

        path.write_text(HEAD + hosts + "api_keys:\n" + key + other)  # add a key
        assert await watcher.reload_now()
        path.write_text(HEAD + "api_keys:\n" + key + other)  # remove the host
        assert await watcher.reload_now()
        assert seen == [(["llm.example.com"], ["ci", "bot"]), ([], ["ci", "bot"])]
        assert watcher.current.api_hosts == ()

        # A broken edit: nothing is called, the last good declarations stay.
        path.write_text(HEAD + hosts + "api_keys:\n" + key.replace(KEY_ID, "x"))
        assert not await watcher.reload_now()
        assert watcher.last_error == f"{path}:5:20: id must be 12 characters of a-z and 2-7"
        assert len(seen) == 2
        assert (watcher.generation, declarations(watcher.current)) == (3, ([], ["ci", "bot"]))

        # A plain function works too, and a failing hook never undoes a good reload.
        def failing(engine: PolicyEngine) -> None:
            raise RuntimeError("hook broke")

        watcher.on_reload = failing
        path.write_text(HEAD + hosts)
        assert await watcher.reload_now()
        assert (watcher.generation, declarations(watcher.current)) == (
            4,
            (["llm.example.com"], []),
        )

    asyncio.run(scenario())
    assert "policy reload hook failed (generation 4)" in caplog.text
