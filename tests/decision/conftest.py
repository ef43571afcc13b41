"""Fixtures of the decision tests: a real gateway app (SQLite sessions and storage, users
file, policy file) behind Starlette's TestClient. Helpers are in tests/decision/support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config.settings import load_settings
from tests.decision.support import Gateway, write_config


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = load_settings(write_config(tmp_path))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)


@pytest.fixture
def untrusting_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose trusted proxies do not include the test client's address."""
    settings = load_settings(write_config(tmp_path, trusted_proxies=["10.9.9.0/24"]))
    app = create_app(settings)
    with TestClient(app, base_url="http://gateway.internal", client=("127.0.0.1", 41000)) as client:
        yield Gateway(app, client)
