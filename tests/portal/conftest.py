"""Fixtures of the portal tests: every test gets a fresh gateway (its own temporary
directory, session store and database) behind Starlette's TestClient.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.config.settings import load_settings
from gateway.portal.app import portal_routes
from gateway.runtime import Runtime
from tests.portal.support import CLIENT_IP, PORTAL, Gateway, open_runtime, write_configuration


@pytest.fixture
def gateway_config(tmp_path: Path) -> Path:
    return write_configuration(tmp_path)


@pytest.fixture
def theme_dir() -> Path | None:
    """No theme; a test module overrides this fixture to try one."""
    return None


@pytest.fixture
def gateway(gateway_config: Path, theme_dir: Path | None) -> Iterator[Gateway]:
    settings = load_settings(gateway_config)
    holder: dict[str, Runtime] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            holder["runtime"] = runtime
            app.router.routes.extend(portal_routes(runtime, theme_dir=theme_dir))
            yield

    app = Starlette(lifespan=lifespan)
    client = TestClient(app, base_url=PORTAL, follow_redirects=False, client=(CLIENT_IP, 40000))
    with client:
        yield Gateway(client, holder["runtime"])
