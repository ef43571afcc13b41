"""gateway.yml loading: interpolation, secret files, defaults, and errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config.settings import load_settings, load_settings_with_warnings
from gateway.config.values import parse_duration
from gateway.config.yaml import ConfigError
from gateway.security.crypto import generate_key

KEY = generate_key()
HASH_KEY = "h" * 40


def write(tmp_path: Path, text: str, name: str = "gateway.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = f"""\
secrets:
  encryption_keys: [{KEY}]
  hash_key: {HASH_KEY}
policy:
  files: [policy.yml]
session:
  cookies:
    - domain: Example.COM
      portal_url: https://auth.example.com/
"""


def test_minimal_configuration_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.server.port == 9091
    assert [str(n) for n in settings.server.trusted_proxies] == ["127.0.0.0/8", "::1/128"]
    assert settings.session.expiration == 3600
    assert settings.session.inactivity == 300
    assert settings.session.remember_me == 30 * 86400
    assert settings.session.store == "sqlite"
    assert settings.session.cookies[0].domain == "example.com"
    assert settings.session.cookies[0].portal_url == "https://auth.example.com"
    assert settings.regulation.max_retries == 3
    assert settings.regulation.find_time == 120
    assert settings.regulation.ban_time == 300
    # Relative paths are resolved against the configuration file's directory.
    assert settings.policy.files == (tmp_path / "policy.yml",)
    assert settings.authentication.file is not None
    assert settings.authentication.file.path == tmp_path / "users.yml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2 hours", 7200.0),
        ("1M", 30 * 86400.0),
        ("1w", 7 * 86400.0),
        ("1y", 365 * 86400.0),
    ],
)
def test_durations_accept_authelia_units(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 fortnights", "-3", "m5", True])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_environment_interpolation_and_defaults(tmp_path: Path) -> None:
    text = MINIMAL.replace(f"hash_key: {HASH_KEY}", "hash_key: ${GW_HASH}") + (
        "server:\n  port: ${GW_PORT:-9999}\n"
    )
    settings = load_settings(write(tmp_path, text), environ={"GW_HASH": "z" * 32})
    assert settings.secrets.hash_key == "z" * 32
    assert settings.server.port == 9999


def test_missing_environment_variable_names_it_with_position(tmp_path: Path) -> None:
    text = MINIMAL.replace(f"hash_key: {HASH_KEY}", "hash_key: ${GW_HASH}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == (
        f"{path}:3:13: environment variable GW_HASH is not set "
        "(set it, or write ${GW_HASH:-default})"
    )


def test_secret_files_are_read_and_loose_permissions_warned(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"{generate_key()}\n\n{KEY}\n")
    key_file.chmod(0o644)
    hash_file = tmp_path / "hash"
    hash_file.write_text(HASH_KEY + "\n")
    hash_file.chmod(0o600)
    text = MINIMAL.replace(f"encryption_keys: [{KEY}]", "encryption_keys_file: keys").replace(
        f"hash_key: {HASH_KEY}", f"hash_key_file: {hash_file}"
    )
    settings, warnings = load_settings_with_warnings(write(tmp_path, text))
    assert settings.secrets.encryption_keys[1] == KEY
    assert len(settings.secrets.encryption_keys) == 2
    assert settings.secrets.hash_key == HASH_KEY
    assert [str(w) for w in warnings] == [
        f"{tmp_path / 'gateway.yml'}:2:25: secret file keys is readable by other users "
        "(mode 644); run: chmod 600 keys"
    ]


def test_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL.replace(f"hash_key: {HASH_KEY}", "hash_key_file: /nonexistent/hash")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"gateway.yml:3:18: cannot read secret file"):
        load_settings(path)


def test_every_error_is_reported_with_file_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
secrets:
  encryption_keys: [not-a-key]
  hash_key: short
policy:
  file: [p.yml]
session:
  expiration: 2 fortnights
  cookies:
    - domain: com
      portal_url: http://auth.example.com
  store: mongo
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    lines = str(caught.value).replace(str(path), "gateway.yml").splitlines()
    assert lines == [
        "gateway.yml:2:20: secrets.encryption_keys: an encryption key must be 32 random bytes "
        "as base64 or 64 hex digits (make one with `gateway secret generate`)",
        "gateway.yml:3:13: secrets.hash_key: String should have at least 32 characters",
        "gateway.yml:5:3: missing required option 'policy.files'",
        "gateway.yml:5:3: unknown option 'file' (did you mean 'files'?)",
        "gateway.yml:7:15: session.expiration: '2 fortnights' is not a duration "
        "(use a number with a unit: s, m, h, d, w, M, y)",
        "gateway.yml:9:15: session.cookies.0.domain: 'com' is a top-level name; browsers "
        "refuse cookies for it (use a registrable domain such as example.com)",
        "gateway.yml:10:19: session.cookies.0.portal_url: 'http://auth.example.com' must be "
        "an absolute https:// URL",
        "gateway.yml:11:10: 'mongo' is not allowed for session.store "
        "(expected 'memory', 'sqlite' or 'redis')",
    ]


def test_portal_outside_cookie_domain_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace("https://auth.example.com/", "https://auth.example.org")
    with pytest.raises(ConfigError, match=r"portal_url https://auth\.example\.org is not inside"):
        load_settings(write(tmp_path, text))


def test_invalid_yaml_points_at_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: [9091\n")
    with pytest.raises(ConfigError, match=r"gateway.yml:3:1: invalid YAML"):
        load_settings(path)


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "policy:\n  files: [x.yml]\n")
    with pytest.raises(ConfigError, match=r"gateway.yml:10:1: duplicate key 'policy'"):
        load_settings(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.yml")


def test_process_environment_is_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_PORT", "7000")
    text = MINIMAL + "server:\n  port: ${GW_TEST_PORT}\n"
    assert load_settings(write(tmp_path, text)).server.port == 7000
    assert os.environ["GW_TEST_PORT"] == "7000"


def test_nul_bytes_in_paths_are_positioned_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace(f"hash_key: {HASH_KEY}", 'hash_key_file: "/run/a\\0b"').replace(
            "files: [policy.yml]", 'files: ["pol\\0icy.yml"]'
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:3:18: 'hash_key_file': a path cannot contain a NUL byte"
    ]
    path = write(tmp_path, MINIMAL.replace("files: [policy.yml]", 'files: ["pol\\0icy.yml"]'))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:5:11: policy.files.0: a path cannot contain a NUL byte"
    ]


def test_a_secret_file_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "hash").write_bytes(b"\xff\xfe" + b"k" * 40)
    path = write(tmp_path, MINIMAL.replace(f"hash_key: {HASH_KEY}", "hash_key_file: hash"))
    with pytest.raises(ConfigError, match=r"gateway.yml:3:18: secret file hash is not UTF-8"):
        load_settings(path)


def test_a_value_from_a_secret_file_is_positioned_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "hash").write_text("short\n")
    (tmp_path / "hash").chmod(0o600)
    path = write(tmp_path, MINIMAL.replace(f"hash_key: {HASH_KEY}", "hash_key_file: hash"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path}:3:18: secrets.hash_key: String should have at least 32 characters"
    )


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "9" * 300, "9" * 400 + "s"])
def test_durations_must_be_finite(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, MINIMAL + f"regulation:\n  ban_time: {text}\n")
    with pytest.raises(ConfigError, match=r"yml:11:13: regulation.ban_time: .*(finite|too large)"):
        load_settings(path)
