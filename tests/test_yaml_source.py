"""The YAML loader is total: every input is a value or a ConfigError whose issues all have a
position. Fuzzed over every loader built on it (settings with the start-up validation,
policy, users file), plus the inputs that used to escape as tracebacks."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config.settings import load_settings_with_warnings
from gateway.config.yaml import MAX_ALIAS_VALUES, MAX_DEPTH, ConfigError, load_text
from gateway.identity.users_file import parse_users
from gateway.policy import compile_documents, load_policy
from gateway.security.crypto import generate_key
from gateway.validation import validate

KEY = generate_key()

# ------------------------------------------------------------------------------------------
# Fixed inputs: each of these used to raise something other than ConfigError.
# ------------------------------------------------------------------------------------------


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_text(text, "f.yml", environ={})
    return [str(issue) for issue in refused.value.issues]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "networks: 2001-02-30\n",
            "f.yml:1:11: '2001-02-30' looks like a date but is not a valid one "
            "(day is out of range for month); quote it if it is text",
        ),
        (
            "policy: !!bool maybe\n",
            "f.yml:1:9: YAML tag !!bool is not supported: remove it (quote a value, or tag "
            "it !!str, to make it text)",
        ),
        ("domain: !!timestamp x\n", "f.yml:1:9: YAML tag !!timestamp is not supported"),
        ("key: !!binary aGVsbG8=\n", "f.yml:1:6: YAML tag !!binary is not supported"),
        ("n: !!int x\n", "f.yml:1:4: YAML tag !!int is not supported"),
        ("s: !!set {a, b}\n", "f.yml:1:4: YAML tag !!set is not supported"),
        ("p: !!python/name:os.system x\n", "f.yml:1:4: YAML tag !!python/name:os.system is not"),
        ("a: !custom x\n", "f.yml:1:4: YAML tag !custom is not supported"),
        ("n: 0x" + "f" * 2000 + "\n", "f.yml:1:4: the number '0xffffffff"),
        ("n: " + "9" * 5000 + "\n", "f.yml:1:4: the number '99999999"),
        (
            "a: " + "[" * 3000 + "]" * 3000 + "\n",
            f"f.yml:1:{3 + MAX_DEPTH}: mappings and lists are nested more than {MAX_DEPTH} "
            "levels deep",
        ),
        # libyaml's own composer crashes the whole process (SIGSEGV) on this one.
        ("a: " + "[" * 200_000 + "]" * 200_000 + "\n", "levels deep"),
        ("a: &r [*r]\n", "f.yml:1:8: alias '*r' is inside its own anchor"),
        ("a: *nowhere\n", "f.yml:1:4: invalid YAML: alias '*nowhere' refers to no anchor"),
        ("a: &x 1\nb: &x 2\n", "f.yml:2:4: invalid YAML: anchor '&x' is already defined at"),
        ("? [a, b]\n: 1\n", "f.yml:1:3: mapping keys must be text"),
        ("<<: {a: 1}\n", "f.yml:1:1: YAML merge keys ('<<') are not supported"),
        ("a: 'x\x01'\n", "f.yml:1:6: invalid YAML: character U+0001 is not allowed"),
        ("--- 1\n--- 2\n", "f.yml:2:1: invalid YAML: expected a single document"),
    ],
)
def test_bad_yaml_is_a_positioned_error(text: str, expected: str) -> None:
    found = issues(text)
    assert any(expected in issue for issue in found), found


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = issues("\n".join(lines) + "\n")
    assert found == [f"f.yml:6:10: aliases expand to more than {MAX_ALIAS_VALUES} values; "
                     "write the values out instead"]  # fmt: skip


def test_plain_yaml_still_loads_with_positions() -> None:
    document = load_text(
        "a: &n [10.0.0.0/8, {k: v}]\nb: *n\nc: !!str 12\nd: 2001-02-03\ne: '='\nf: =\n",
        "f.yml",
    )
    assert document.data == {
        "a": ["10.0.0.0/8", {"k": "v"}],
        "b": ["10.0.0.0/8", {"k": "v"}],
        "c": "12",
        "d": datetime.date(2001, 2, 3),
        "e": "=",
        "f": "=",
    }
    assert str(document.position(("a", 1, "k"))) == "f.yml:1:24"
    assert str(document.key_position(("a", 1, "k"))) == "f.yml:1:21"
    assert str(document.key_position(("c",))) == "f.yml:3:1"
    assert str(document.position(("b", 0))) == "f.yml:1:8"  # an alias points at its anchor


def test_keys_are_not_interpolated_and_values_are() -> None:
    document = load_text("${A}: ${B}\n", "f.yml", environ={"A": "x", "B": "y"})
    assert document.data == {"${A}": "y"}


# ------------------------------------------------------------------------------------------
# Fuzzing: YAML-ish text built from the real option names, odd scalars, tags and aliases.
# ------------------------------------------------------------------------------------------

# Values that YAML itself must refuse (tags, impossible dates, huge numbers) ...
BAD_YAML = [
    "2001-02-30",
    "2001-02-03 25:61:00",
    "!!bool maybe",
    "!!bool yes",
    "!!timestamp x",
    "!!binary aGk=",
    "!!binary x",
    "!!int x",
    "!!float x",
    "!!null x",
    "!!map {}",
    "!!seq []",
    "!!set {a}",
    "!!omap [a: 1]",
    "!custom x",
    "!<tag:example.com,2000:x> y",
    "0x" + "f" * 300,
    "1" * 1200,
    "*undefined",
]
# ... and values that load but are wrong, odd or borderline for the option they land on.
ODD_VALUES = [
    "2001-02-03",
    "!!str 12",
    "! 12",
    ".inf",
    "-.inf",
    ".nan",
    "1:20:30",
    "0o17",
    "0b101",
    "1e400",
    "9" * 400,
    "~",
    "null",
    "yes",
    "no",
    "on",
    "''",
    '""',
    '"\\0"',
    '"a\\0b"',
    '"/tmp/a\\0b"',
    "'*'",
    "=",
    "<<",
    "${MISSING}",
    "${SET}",
    "$$",
    "'${SET:-x}'",
    "one_factor",
    "two_factor",
    "bypass",
    "deny",
    "10.0.0.0/8",
    "'::1'",
    "999.1.1.1/99",
    "app.example.com",
    "'*.example.com'",
    "'*'",
    "https://auth.example.com",
    "http://localhost",
    "user:alice",
    "group:admins",
    "'^/admin'",
    "'(['",
    "'(?P<User>x)'",
    "GET",
    "example.com",
    "users.yml",
    "policy.yml",
    "/nonexistent",
    "/dev/null",
    ".",
    "ldap://ldap.example.com",
    "'(uid={input})'",
    "'(uid={nope}'",
    "'(&(uid={input})'",
    "'$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA'",
    "'$argon2id$v=99$m=1,t=1,p=1$x$y'",
    "5m",
    "1h30m",
    "10/s",
    "0/s",
    "-3",
    "0",
    "1",
    "65536",
    "-1",
    "true",
    "false",
    "[]",
    "{}",
    "[a, b]",
    "[[a]]",
    "{a: 1}",
    "RS256",
    "none",
    "HS256",
    "'Bearer {secret}'",
    "'-----BEGIN PUBLIC KEY-----'",
    "sha256:abc",
    "CN=build-*",
    "'URI:spiffe://x/*'",
]

KEYS = [
    # settings
    "server", "port", "address", "trusted_proxies", "log", "level", "format", "secrets",
    "encryption_keys", "encryption_keys_file", "hash_key", "hash_key_file", "policy", "files",
    "reload_interval", "session", "cookies", "domain", "portal_url", "default_redirect_url",
    "expiration", "inactivity", "remember_me", "store", "sqlite", "path", "redis", "url",
    "password_file", "authentication", "backend", "file", "watch", "ldap", "urls",
    "users_filter", "groups_filter", "base_dn", "ca_certificate", "implementation",
    "attributes", "username", "credentials", "api_hosts", "networks", "networks_env",
    "upstream", "header", "secret", "api_keys", "client_certificates", "ca_bundle",
    "subjects", "sans", "pinned_fingerprints", "issuers", "name", "issuer", "jwks_url",
    "public_keys", "public_key_files", "audiences", "algorithms", "rate_limits", "per_key",
    "rate", "burst", "storage", "type", "postgres", "dsn", "totp", "digits", "regulation",
    "max_retries",
    # policy
    "access_control", "default_policy", "rules", "domain_regex", "subject", "resources",
    "methods", "query", "key", "value", "operator", "definitions", "network", "hash",
    "groups", "description",
    # users file
    "users", "alice", "displayname", "email", "disabled", "given_name",
    # odd keys
    "1", "yes", "'${SET}'", "!!str k", "'<<'",
]  # fmt: skip
BAD_KEYS = ["<<", "~", "!!int k", "? [a]", "2001-02-30", "1.5"]

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12).map(
    lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
SCALARS = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.sampled_from(ODD_VALUES),
    st.sampled_from(ODD_VALUES),
    TEXT,
    st.sampled_from(BAD_YAML),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(BAD_KEYS)),
            children,
            max_size=5,
        ),
    ),
    max_leaves=12,
)

Tree = Any


def _render(tree: Tree, anchors: list[str], choices: list[int]) -> str:
    """Flow-style YAML; some values get an anchor, some become aliases of earlier ones."""
    choice = choices.pop() if choices else 0
    if choice == 1 and anchors:
        return "*" + anchors[-1]
    if isinstance(tree, dict):
        items = (f"{key}: {_render(value, anchors, choices)}" for key, value in tree.items())
        text = "{" + ", ".join(items) + "}"
    elif isinstance(tree, list):
        text = "[" + ", ".join(_render(item, anchors, choices) for item in tree) + "]"
    else:
        text = str(tree)
    if choice == 2:
        name = f"a{len(anchors)}"
        anchors.append(name)
        return f"&{name} {text}"
    return text


def _paths(tree: Tree, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _paths(value, (*prefix, index))
    return found


def _replace(tree: Tree, path: tuple[Any, ...], value: Tree, add_key: str | None) -> Tree:
    if not path:
        if add_key is not None and isinstance(tree, dict):
            return {**tree, add_key: value}
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: _replace(tree[head], rest, value, add_key)}
    copy = list(tree)
    copy[head] = _replace(copy[head], rest, value, add_key)
    return copy


@st.composite
def yaml_documents(draw: st.DrawFn, base: Tree) -> str:
    """``base`` (a valid document) with a few values replaced or keys added, rendered with
    some anchors and aliases; now and then plain junk text."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(max_size=80))
    tree = base
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        add_key = draw(st.one_of(st.none(), st.sampled_from(KEYS)))
        tree = _replace(tree, path, draw(TREES), add_key)
    choices = draw(st.lists(st.sampled_from([0] * 10 + [1, 2]), max_size=60))
    return _render(tree, [], choices) + "\n"


SETTINGS_BASE: Tree = {
    "secrets": {"encryption_keys": [KEY], "hash_key": "h" * 40},
    "policy": {"files": ["policy.yml"]},
    "session": {
        "store": "memory",
        "cookies": [{"domain": "example.com", "portal_url": "https://auth.example.com"}],
    },
    "authentication": {"backend": "file", "file": {"path": "users.yml"}},
    "credentials": {
        "api_hosts": [{"domain": "api.example.com", "networks": ["10.0.0.0/8"]}],
        "issuers": [
            {
                "name": "ci",
                "issuer": "https://ci.example.com",
                "jwks_url": "https://ci.example.com/jwks",
                "audiences": ["gateway"],
            }
        ],
    },
}
POLICY_BASE: Tree = {
    "definitions": {"network": {"office": ["10.0.0.0/8"]}},
    "access_control": {
        "default_policy": "deny",
        "rules": [
            {"domain": "app.example.com", "policy": "bypass", "networks": ["office"]},
            {
                "domain": ["'*.example.com'"],
                "policy": "one_factor",
                "subject": ["group:admins", ["user:alice"]],
                "resources": ["'^/admin'"],
                "methods": ["GET"],
                "query": [{"key": "a", "value": "b", "operator": "equal"}],
            },
        ],
    },
    "api_hosts": [{"domain": "api.example.com", "networks": ["office"]}],
    "api_keys": [
        {
            "name": "ci",
            "id": "abcdefghijkl",
            "hash": "ab" * 32,
            "groups": ["ci"],
            "networks": ["office"],
            "expires": "2027-01-01",
        }
    ],
}
USERS_BASE: Tree = {
    "users": {
        "alice": {
            "displayname": "Alice",
            "email": "alice@example.com",
            "groups": ["admins"],
            "password": "'$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA'",
            "disabled": "false",
        }
    }
}

# A few seconds in the suite; GATEWAY_FUZZ_EXAMPLES=5000 for a longer hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def assert_positioned(error: ConfigError, *files: str) -> None:
    for issue in error.issues:
        assert issue.position is not None, f"issue without a position: {issue}"
        assert issue.position.file in files, str(issue)
        assert issue.position.line >= 1 and issue.position.column >= 1, str(issue)


LDAP_SETTINGS_BASE: Tree = {
    **SETTINGS_BASE,
    "authentication": {
        "backend": "ldap",
        "ldap": {
            "urls": ["ldap://127.0.0.1:9"],
            "base_dn": "dc=example,dc=com",
            "users_filter": "'(&({username_attribute}={input})(objectClass=person))'",
            "start_tls": "true",
            "ca_certificate": "users.yml",
        },
    },
}


def check_settings(text: str) -> None:
    """Load ``text`` as gateway.yml (next to a valid policy and users file) and validate
    it as start-up would: a value, or ConfigError issues with positions."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "gateway.yml"
        path.write_text(text, encoding="utf-8")
        (Path(directory) / "policy.yml").write_text(_render(POLICY_BASE, [], []) + "\n")
        (Path(directory) / "users.yml").write_text(_render(USERS_BASE, [], []) + "\n")
        try:
            settings, _ = load_settings_with_warnings(path, environ={"SET": "value"})
            validate(settings)
        except ConfigError as error:
            files = {str(Path(directory) / name) for name in ("gateway.yml", "policy.yml")}
            assert_positioned(error, *files, str(Path(directory) / "users.yml"))


@FUZZ
@given(yaml_documents(SETTINGS_BASE))
def test_settings_loader_never_crashes(text: str) -> None:
    check_settings(text)


@FUZZ
@given(yaml_documents(LDAP_SETTINGS_BASE))
def test_settings_loader_with_ldap_never_crashes(text: str) -> None:
    check_settings(text)


@FUZZ
@given(yaml_documents(POLICY_BASE))
def test_policy_loader_never_crashes(text: str) -> None:
    try:
        compile_documents([load_text(text, "policy.yml", environ={"SET": "v"})], environ={})
    except ConfigError as error:
        assert_positioned(error, "policy.yml")


@FUZZ
@given(yaml_documents(USERS_BASE))
def test_users_file_loader_never_crashes(text: str) -> None:
    try:
        parse_users(load_text(text, "users.yml"))
    except ConfigError as error:
        assert_positioned(error, "users.yml")


@FUZZ
@given(st.binary(max_size=200))
def test_policy_files_of_any_bytes_never_crash(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.yml"
        path.write_bytes(data)
        try:
            load_policy([path], environ={})
        except ConfigError as error:
            assert_positioned(error, str(path))
