"""Suite-wide pytest configuration.

The fixtures that start real services (Redis, PostgreSQL, slapd, Caddy, Chromium) live in
tests/services.py, registered here as a plugin so every test can ask for them by name.
"""

from __future__ import annotations

import pytest

from gateway.observability.throttle import default_throttle

pytest_plugins = ("tests.services",)


@pytest.fixture(autouse=True)
def _fresh_log_throttle() -> None:
    """Repeated log lines are rate limited process-wide; each test sees its own first line."""
    default_throttle.reset()
