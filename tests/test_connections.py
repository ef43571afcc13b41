"""`gateway serve` protects itself: header size, request deadline, idle and connection limits.

Each test runs the real `gateway serve` as a child process on a free loopback port, with
its open-files limit set by prlimit(1), and talks to it over raw sockets: what a hostile or
broken client would do. Every loop is bounded in count and in time. Each test runs under
every server `server.implementation` offers (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.config.settings import load_settings
from gateway.connections import ConnectionLimits, connection_budget
from tests.decision.support import write_config
from tests.services import LOOPBACK, free_port, listening_ports, port_is_open

ROOT = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT = 2.0
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: gateway.internal\r\n\r\n"
SERVERS = ("uvicorn", "granian")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def health(self, timeout: float = 5.0) -> int:
        """Status of GET /api/health on a new connection."""
        response = httpx.get(f"http://{LOOPBACK}:{self.port}/api/health", timeout=timeout)
        return response.status_code

    def processes(self) -> list[int]:
        """The server process and its descendants (granian's worker is a child)."""
        pids = [self.process.pid]
        for pid in pids:  # grows while walking: children, grandchildren
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text()
                    pids.extend(int(child) for child in children.split())
        return pids

    def open_descriptors(self) -> int:
        """Descriptors of the busiest process: the server or one of its workers."""
        return max(len(os.listdir(f"/proc/{pid}/fd")) for pid in self.processes())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    directory: Path,
    *,
    nofile: tuple[int, int],
    implementation: str,
    server: str = "",
    args: tuple[str, ...] = (),
) -> Iterator[Served]:
    """`gateway serve` under ``implementation`` with RLIMIT_NOFILE = nofile (soft, hard),
    stopped by its PID at the end."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is needed to limit the child's open files")
    port = free_port()
    config = write_config(
        directory,
        address=LOOPBACK,
        port=port,
        server=f"  implementation: {implementation}\n{server}",
    )
    log = directory / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                prlimit,
                f"--nofile={nofile[0]}:{nofile[1]}",
                "--",
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(config),
                *args,
            ],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(process, port, log)
    try:
        deadline = time.monotonic() + 60
        # granian listens before its worker has loaded the application: wait for an answer.
        while not (port_is_open(port) and _answers(served)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway serve did not start:\n{served.log_text()[-4000:]}")
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _answers(served: Served) -> bool:
    try:
        return served.health(timeout=2) == 200
    except httpx.HTTPError:
        return False


def _closed(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is still open."""
    sock.settimeout(0)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except BlockingIOError:
        return received or None
    except OSError:
        return received


def _status(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(match.group(1)) if match else None


@pytest.fixture(scope="module", params=SERVERS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One gateway per server: 1,024 descriptors, long idle timeout, 2 s request deadline.

    The idle timeout is long on purpose: idle connections must not starve requests even
    before it closes them.
    """
    directory = tmp_path_factory.mktemp(f"serve-{request.param}")
    limits = f"  request_timeout: {REQUEST_TIMEOUT}s\n  idle_timeout: 60s\n"
    with serve(
        directory, nofile=(1024, 1024), implementation=request.param, server=limits
    ) as served:
        yield served


def _raise_own_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the test process may open only {hard} files; {wanted} are needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_idle_connections_do_not_starve_requests(gateway: Served) -> None:
    _raise_own_limit(4096)
    idle: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(1100):  # more than the gateway's 1,024 descriptors
            if time.monotonic() - started > 30:
                break
            idle.append(socket.create_connection((LOOPBACK, gateway.port), timeout=5))
        assert len(idle) == 1100, "could not even open the idle connections"
        # Requests are answered while all of them are still open (the idle timeout is 60 s).
        for _ in range(3):
            asked = time.monotonic()
            assert gateway.health() == 200
            waited = time.monotonic() - asked
            print(f"answered after {waited:.2f}s")
            assert waited < 5
        assert gateway.open_descriptors() < 1024
        closed = sum(_closed(sock) is not None for sock in idle)
        print(f"idle connections closed to make room: {closed} of {len(idle)}")
        assert closed > 0
    finally:
        for sock in idle:
            sock.close()
    assert gateway.health() == 200


def test_slowloris_is_cut_off_after_the_request_timeout(gateway: Served) -> None:
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as sock:
        head = b"GET /api/health HTTP/1.1\r\nHost: gateway.internal\r\nX-Slow: " + b"a" * 200
        first_byte = time.monotonic()
        answer: bytes | None = None
        for byte in head:  # one byte every 0.1 s: 20 s in all, far past the deadline
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                answer = b""
                break
            answer = _closed(sock)
            if answer is not None:
                break
            time.sleep(0.1)
        cut_after = time.monotonic() - first_byte
    assert answer is not None, "the connection was still open after 20 s"
    assert cut_after < REQUEST_TIMEOUT + 1.5, f"cut off only after {cut_after:.1f}s"
    assert cut_after >= REQUEST_TIMEOUT - 0.5
    assert _status(answer) in (408, None)
    assert gateway.health() == 200


def test_a_slow_body_is_cut_off_after_the_request_timeout(gateway: Served) -> None:
    head = (
        b"POST /login HTTP/1.1\r\nHost: auth.example.com\r\nOrigin: https://auth.example.com\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
    )
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as sock:
        sock.sendall(head)
        started = time.monotonic()
        answer: bytes | None = None
        for _ in range(200):  # one byte every 0.1 s: 20 s in all, far past the deadline
            try:
                sock.sendall(b"a")
            except OSError:
                answer = b""
                break
            answer = _closed(sock)
            if answer is not None:
                break
            time.sleep(0.1)
        cut_after = time.monotonic() - started
    assert answer is not None, "the connection was still open after 20 s"
    assert cut_after < REQUEST_TIMEOUT + 1.5, f"cut off only after {cut_after:.1f}s"
    assert _status(answer) != 200
    assert gateway.health() == 200


def test_a_32_mib_header_is_refused_while_others_are_answered(gateway: Served) -> None:
    chunk = b"a" * 65536
    answered_meanwhile = 0
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: gateway.internal\r\nX-Big: ")
        started = time.monotonic()
        refused = False
        for index in range(32 * 1024 * 1024 // len(chunk)):
            if time.monotonic() - started > 30:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # reset or broken pipe: the gateway closed the connection
                refused = True
                break
            if index % 64 == 0 and answered_meanwhile < 4:
                assert gateway.health() == 200
                answered_meanwhile += 1
        else:
            with contextlib.suppress(OSError):
                sock.sendall(b"\r\n\r\n")
        sock.settimeout(5)
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    assert refused or _status(answer) in (431, None), answer[:200]
    assert _status(answer) != 200
    assert answered_meanwhile >= 1
    assert gateway.health() == 200


@pytest.mark.parametrize(
    "implementation",
    [
        "uvicorn",
        pytest.param(
            "granian",
            marks=pytest.mark.xfail(
                raises=TimeoutError,
                strict=True,
                reason="granian never answers 503: at its limit it stops accepting, and a new "
                "connection waits in the listen backlog until one closes (docs/performance.md)",
            ),
        ),
    ],
)
def test_when_every_connection_is_busy_new_ones_get_503(
    tmp_path: Path, implementation: str
) -> None:
    # Busy: each has sent part of a request. Only these count against the limit of 4.
    limits = "  limit_concurrency: 4\n  request_timeout: 10s\n"
    with serve(
        tmp_path, nofile=(1024, 1024), implementation=implementation, server=limits
    ) as served:
        busy = [socket.create_connection((LOOPBACK, served.port), timeout=5) for _ in range(4)]
        try:
            for sock in busy:
                sock.sendall(b"GET /api/health HTTP/1.1\r\n")
            time.sleep(0.3)  # let the gateway read them
            with socket.create_connection((LOOPBACK, served.port), timeout=5) as extra:
                # Answered at once, before it sends anything: there is no room to read it.
                answer = extra.recv(65536)
            assert _status(answer) == 503
            # The busy ones finish their requests and are answered normally.
            for sock in busy:
                sock.sendall(b"Host: gateway.internal\r\n\r\n")
                sock.settimeout(5)
                assert _status(sock.recv(65536)) == 200
        finally:
            for sock in busy:
                sock.close()
        assert "all busy (server.limit_concurrency)" in served.log_text()


@pytest.mark.parametrize("implementation", SERVERS)
def test_the_open_files_limit_is_raised_and_sizes_the_connection_limit(
    tmp_path: Path, implementation: str
) -> None:
    with serve(tmp_path, nofile=(512, 2048), implementation=implementation) as served:
        limits = Path(f"/proc/{served.process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == ["2048", "2048"], line
        assert served.health() == 200
        deadline = time.monotonic() + 10
        while "connection limits:" not in served.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "1920 connections per process (open files 2048)" in served.log_text()


def test_uvicorn_workers_each_listen_on_a_socket_of_their_own(tmp_path: Path) -> None:
    """One shared socket lets one worker take most connections; SO_REUSEPORT spreads them."""
    with serve(
        tmp_path, nofile=(1024, 1024), implementation="uvicorn", args=("--workers", "2")
    ) as served:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [
                pid for pid in served.processes()[1:] if served.port in (listening_ports(pid) or ())
            ]
        assert len(workers) == 2, "each worker listens on the port"
        assert served.port not in (listening_ports(served.process.pid) or ()), "not the supervisor"
        connections = [
            socket.create_connection((LOOPBACK, served.port), timeout=5) for _ in range(32)
        ]
        try:
            for sock in connections:
                sock.sendall(HEALTH)
                sock.settimeout(5)
                assert _status(sock.recv(65536)) == 200
            holders = [sum(1 for _ in _established(pid, served.port)) for pid in workers]
        finally:
            for sock in connections:
                sock.close()
        print(f"connections per worker: {holders}")
        assert min(holders) > 0, holders


def _established(pid: int, port: int) -> Iterator[str]:
    """Inodes of the established connections to ``port`` that process ``pid`` holds."""
    inodes = set()
    for entry in os.scandir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(entry.path)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if fields[3] == "01" and local_port == port and fields[9] in inodes:  # 01: ESTABLISHED
            yield fields[9]


def test_connection_budget_keeps_room_for_pools(tmp_path: Path) -> None:
    redis = "  redis:\n    pool_size: 50\n"
    settings = load_settings(write_config(tmp_path, store="redis", session=redis))
    assert connection_budget(settings, 4096) == (4096 - 128 - 50, None)
    assert connection_budget(settings, 1 << 20) == (10_000, None)  # memory runs out first
    # A tiny limit still leaves a quarter for clients.
    assert connection_budget(settings, 160) == (40, None)
    limited = load_settings(write_config(tmp_path, server="  limit_concurrency: 10000\n"))
    budget, warning = connection_budget(limited, 4096)
    assert budget == 4096 - 128
    assert warning is not None and "limit_concurrency 10000" in warning
    assert connection_budget(limited, 1 << 20) == (10000, None)
    assert ConnectionLimits().max_header_size == 64 * 1024
