"""Fixtures for the machine-credential tests: a clock, a JWKS server, certificate makers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.clock import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class JwksServer:
    """A real HTTP server on a free loopback port that serves a JWK set the test controls."""

    url: str
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    body_override: bytes | None = None
    requests: int = 0

    def set_keys(self, *jwks: dict[str, Any]) -> None:
        self.document = {"keys": list(jwks)}


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = (
                state.body_override
                if state.body_override is not None
                else json.dumps(state.document).encode()
            )
            self.send_response(state.status)
            self.send_header("Content-Type", "application/jwk-set+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="jwks", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
