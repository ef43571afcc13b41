"""``/api/ready`` is DEGRADED after any failed policy reload, not only an invalid file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import load_settings
from tests.decision.support import POLICY, Gateway, write_config


@pytest.fixture
def polling_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose policy watcher polls every 20 ms."""
    config = write_config(tmp_path)
    text = config.read_text().replace(
        "  files: [policy.yml]\n", "  files: [policy.yml]\n  reload_interval: 0.02\n"
    )
    config.write_text(text)
    app = create_app(load_settings(config))
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)


def ready(gateway: Gateway) -> dict[str, object]:
    response = gateway.client.get("/api/ready")
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within 5 s"
        time.sleep(0.02)


def test_a_failed_reload_of_any_kind_degrades_readiness(
    polling_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ready(polling_gateway) == {"status": "OK", "policy": {"generation": 1}}
    # Before, this raised ValueError inside the loader: logged, and readiness stayed OK.
    (tmp_path / "policy.yml").write_text(POLICY + "      networks: 2001-02-30\n")
    until(lambda: ready(polling_gateway)["status"] == "DEGRADED")
    body = ready(polling_gateway)
    assert body["policy"] == {
        "generation": 1,
        "error": f"{tmp_path}/policy.yml:23:17: '2001-02-30' looks like a date but is not a "
        "valid one (day is out of range for month); quote it if it is text",
    }

    (tmp_path / "policy.yml").write_text(POLICY)
    until(lambda: ready(polling_gateway)["status"] == "OK")
    assert ready(polling_gateway)["policy"] == {"generation": 2}

    # An exception that is nobody's ConfigError: shown by type only, details in the log.
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("gateway.policy.reload.compile_documents", broken)
    (tmp_path / "policy.yml").write_text(
        POLICY.replace("default_policy: deny", "# changed\n  default_policy: deny")
    )
    until(lambda: ready(polling_gateway)["status"] == "DEGRADED")
    assert ready(polling_gateway)["policy"] == {
        "generation": 2,
        "error": "policy reload failed: unexpected RuntimeError (details in the gateway log)",
    }
