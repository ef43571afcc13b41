"""An anonymous client cannot grow the gateway's memory: thousands of distinct long targets
leave the resident size of a real `gateway serve` within the documented memo budget."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.decision.request import TARGET_CACHE_BYTES
from tests.e2e.stack import gateway_config, running_gateway, users_file_authentication
from tests.services import free_port

REQUESTS = 4000
URI_LENGTH = 12_000


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_distinct_long_uris_do_not_grow_the_process(tmp_path: Path) -> None:
    port = free_port()
    config = gateway_config(
        tmp_path, 8443, port, authentication=users_file_authentication(tmp_path)
    )
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "app.example.com",
        "X-Forwarded-Method": "GET",
        "Accept": "text/html",
    }
    with (
        running_gateway(config, port) as process,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):

        def ask(index: int) -> int:
            uri = f"/{index}/" + "a" * URI_LENGTH
            response = client.get(
                "/api/authz/forward-auth", headers={**headers, "X-Forwarded-Uri": uri}
            )
            return response.status_code

        # Warm up: imports, first-request allocations, the allocator's arenas.
        assert {ask(index) for index in range(300)} == {302}
        before = resident_bytes(process.pid)
        assert {ask(index) for index in range(300, REQUESTS)} == {302}
        grown = resident_bytes(process.pid) - before
    # Unbounded, these targets would hold about REQUESTS * 3 * URI_LENGTH (140 MiB): the key,
    # the URL and the policy path of every one. Two target memos of TARGET_CACHE_BYTES each,
    # plus allocator slack, is the bound.
    assert grown < 2 * TARGET_CACHE_BYTES + (24 << 20), f"grew by {grown >> 20} MiB"
