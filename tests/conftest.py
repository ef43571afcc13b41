"""Suite-wide pytest configuration.

The fixtures that start real services (Redis, PostgreSQL, slapd, Caddy, Chromium) live in
tests/services.py, registered here as a plugin so every test can ask for them by name.
"""

pytest_plugins = ("tests.services",)
