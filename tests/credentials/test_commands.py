"""``gateway keys`` against real SQLite storage, checked with the verifier the service uses."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.settings import Settings, load_settings
from gateway.credentials.api_key_declarations import load_static_api_keys
from gateway.credentials.api_key_verifier import ApiKeyVerifier
from gateway.credentials.api_keys import ApiKeyRejected, hash_secret, parse_api_key
from gateway.storage import open_storage
from gateway.storage.records import ApiKeyRecord
from tests.support.config import Cookie, GatewayConfig

HASH_KEY = "c" * 48


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return GatewayConfig(
        hash_key=HASH_KEY,
        cookies=(Cookie(portal_url="https://auth.example.com/"),),
        storage={"type": "sqlite", "sqlite": {"path": "data/gateway.sqlite3"}},
    ).write(tmp_path)


def keys(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["keys", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def _record(settings: Settings, name: str) -> ApiKeyRecord | None:
    async with await open_storage(settings) as storage:
        return await storage.api_keys.get_api_key_by_name(name)


async def _verify(settings: Settings, key: str, now: float | None = None) -> str:
    async with await open_storage(settings) as storage:
        verifier = ApiKeyVerifier(
            settings.secrets.hash_key.encode(),
            storage.api_keys,
            clock=(lambda: now) if now is not None else time.time,
        )
        found = await verifier.verify(key)
        await verifier.close()
        return found.name


def test_create_prints_the_key_once_and_stores_only_its_hash(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = keys(
        capsys,
        "create",
        "ci-runner",
        "--owner",
        "platform",
        "--group",
        "ci",
        "--group",
        "builders",
        "--scope",
        "api.build.example.com",
        "--network",
        "10.0.0.0/8",
        "--expires",
        "90d",
        "--config",
        str(config),
    )
    assert code == 0, err
    key = out.strip()
    presented = parse_api_key(key)
    assert presented is not None
    assert "only time the key is shown" in err
    assert key not in err
    settings = load_settings(config)
    record = asyncio.run(_record(settings, "ci-runner"))
    assert record is not None
    assert record.key_id == presented.key_id
    assert record.secret_hash == hash_secret(HASH_KEY.encode(), key)
    assert record.groups == ("ci", "builders")
    assert record.scopes == ("api.build.example.com",)
    assert record.networks == ("10.0.0.0/8",)
    assert record.expires_at is not None
    assert record.expires_at == pytest.approx(time.time() + 90 * 86400, abs=60)
    database = (config.parent / "data" / "gateway.sqlite3").read_bytes()
    assert presented.secret.encode() not in database
    assert asyncio.run(_verify(settings, key)) == "ci-runner"


def test_list_never_shows_secrets(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, key, _ = keys(capsys, "create", "reporter", "--config", str(config))
    _, _, _ = keys(capsys, "create", "deployer", "--owner", "ops", "--config", str(config))
    code, out, _ = keys(capsys, "list", "--config", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "ID", "OWNER", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == ["deployer", "reporter"]
    secret_hash = hash_secret(HASH_KEY.encode(), key.strip()).hex()
    code, out_json, _ = keys(capsys, "list", "--json", "--config", str(config))
    rows = json.loads(out_json)
    assert {row["name"] for row in rows} == {"deployer", "reporter"}
    for text in (out, out_json):
        assert key.strip() not in text
        assert key.strip().split("_", 2)[2] not in text
        assert secret_hash not in text
    assert all("hash" not in field for row in rows for field in row)


def test_revoke(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = keys(capsys, "create", "temp", "--config", str(config))
    key = out.strip()
    settings = load_settings(config)
    assert asyncio.run(_verify(settings, key)) == "temp"
    code, _, err = keys(capsys, "revoke", "temp", "--config", str(config))
    assert code == 0 and "Revoked" in err
    with pytest.raises(ApiKeyRejected, match="revoked"):
        asyncio.run(_verify(settings, key))
    _, out, _ = keys(capsys, "list", "--config", str(config))
    assert "revoked" in out
    code, _, err = keys(capsys, "rotate", "temp", "--config", str(config))
    assert code == 1 and "is revoked" in err


def test_rotate_with_grace(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = keys(capsys, "create", "svc", "--config", str(config))
    old = out.strip()
    code, out, err = keys(capsys, "rotate", "svc", "--grace", "24h", "--config", str(config))
    assert code == 0, err
    new = out.strip()
    assert new != old
    assert parse_api_key(new).key_id == parse_api_key(old).key_id  # type: ignore[union-attr]
    assert "old secret stays valid until" in err
    settings = load_settings(config)
    now = time.time()
    assert asyncio.run(_verify(settings, old, now)) == "svc"
    assert asyncio.run(_verify(settings, new, now)) == "svc"
    later = now + 25 * 3600
    assert asyncio.run(_verify(settings, new, later)) == "svc"
    with pytest.raises(ApiKeyRejected, match="wrong secret"):
        asyncio.run(_verify(settings, old, later))
    _, listing, _ = keys(capsys, "list", "--config", str(config))
    assert "rotating" in listing


def test_rotate_without_grace_ends_the_old_secret_at_once(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = keys(capsys, "create", "svc", "--config", str(config))
    old = out.strip()
    _, out, _ = keys(capsys, "rotate", "svc", "--grace", "0", "--config", str(config))
    settings = load_settings(config)
    with pytest.raises(ApiKeyRejected):
        asyncio.run(_verify(settings, old))
    assert asyncio.run(_verify(settings, out.strip())) == "svc"


def test_delete(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys(capsys, "create", "gone", "--config", str(config))
    assert keys(capsys, "delete", "gone", "--config", str(config))[0] == 0
    assert asyncio.run(_record(load_settings(config), "gone")) is None
    code, _, err = keys(capsys, "delete", "gone", "--config", str(config))
    assert code == 1 and "no API key named 'gone'" in err


def test_usage_errors(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(capsys, "create", "dup", "--config", str(config))[0] == 0
    code, _, err = keys(capsys, "create", "dup", "--config", str(config))
    assert code == 1 and "already exists" in err
    code, _, err = keys(capsys, "create", "x", "--network", "10.0.0.0/33", "--config", str(config))
    assert code == 1 and "'10.0.0.0/33' is not an IP address" in err
    code, _, err = keys(capsys, "create", "bad name", "--config", str(config))
    assert code == 1 and "not a valid key name" in err
    code, _, err = keys(capsys, "create", "x", "--expires", "someday", "--config", str(config))
    assert code == 1 and "--expires" in err
    code, _, err = keys(capsys, "create", "x", "--expires", "2001-01-01", "--config", str(config))
    assert code == 1 and "in the past" in err
    code, _, err = keys(capsys, "list", "--config", str(config.parent / "missing.yml"))
    assert code == 2 and "file not found" in err


def test_static_declaration_round_trip(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    code, out, err = keys(
        capsys,
        "create",
        "gitops-bot",
        "--static",
        "--group",
        "deployers",
        "--scope",
        "api.deploy.example.com",
        "--expires",
        "2099-01-01",
        "--config",
        str(config),
    )
    assert code == 0
    key = out.strip()
    declaration = err.split("policy file:\n", 1)[1]
    assert key not in declaration
    entries = yaml.safe_load(declaration)
    static = load_static_api_keys(entries)
    settings = load_settings(config)
    assert asyncio.run(_record(settings, "gitops-bot")) is None  # nothing stored

    async def check() -> str:
        verifier = ApiKeyVerifier(HASH_KEY.encode(), None, static_keys=static)
        return (await verifier.verify(key)).name

    assert asyncio.run(check()) == "gitops-bot"


def test_upstream_secret(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("service-master-key\n"))
    code, _, err = keys(capsys, "upstream-secret", "reports-master", "--config", str(config))
    assert code == 0, err

    async def read() -> str | None:
        async with await open_storage(load_settings(config)) as storage:
            return await storage.secrets.get_secret("reports-master")

    assert asyncio.run(read()) == "service-master-key"
