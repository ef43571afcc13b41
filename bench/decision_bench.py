"""Forward-auth decisions per second under each HTTP server, against one baseline, in one run.

    uv run python bench/decision_bench.py [--servers uvicorn,granian] [--seconds 5]
        [--rounds 2] [--connections 16] [--scaling]

The gateway runs as `gateway serve --server NAME` (with its connection limits), one
worker, on loopback; every load comes from the same tool (wrk, one thread). The baseline
(1.00x) is a bare Starlette endpoint that answers 200, on uvicorn (uvloop + httptools, no
access log); a raw-ASGI 200 on each server is printed too, as the floor below which no
application can go. Each gateway case is reported as a ratio of the baseline:

  session/sqlite   signed-in browser, SQLite session store      target >= 0.8x
  session/redis    signed-in browser, Redis session store       target >= 0.6x
  apikey           API host, X-API-Key                          target >= 0.8x
  jwt              API host, bearer JWT (RS256, static key)     target >= 0.8x
  portal           GET of the login page (no target)

--scaling also measures session/sqlite with `--workers 2` under each server (wrk with two
threads for both counts), to show what a second worker on a second core buys.

All servers (a private redis-server included) start on free loopback ports and stop at the
end; each load is bounded by --seconds. Needs `wrk` (Debian package wrk; installed when
missing and running as root).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.security.crypto import generate_key
from tests.support.config import USERS_FILE, GatewayConfig, User, users_yml
from tests.support.passwords import password_hash

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password"
TARGETS = {"session/sqlite": 0.8, "session/redis": 0.6, "apikey": 0.8, "jwt": 0.8}
CASES = [*TARGETS, "portal"]
SERVERS = ("uvicorn", "granian")
DECISION = "/api/authz/forward-auth"

POLICY = """\
access_control:
  default_policy: deny
  rules:
    - domain: auth.example.com
      policy: bypass
    - domain: app.example.com
      subject: "group:dev"
      policy: one_factor
    - domain: api.example.com
      subject: ["key:bench", "client:bench/bench-client"]
      policy: one_factor
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start within 60 s")


@contextlib.contextmanager
def running(command: list[str], port: int, what: str, log: Path) -> Iterator[int]:
    """Run ``command`` until the block ends; yields its PID."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, process, what)
            yield process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_healthy(port: int) -> None:
    """granian listens before its worker has loaded the application: wait for an answer."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"the gateway on port {port} did not answer within 60 s")


def plain_server(server: str, target: str, port: int) -> list[str]:
    """An ASGI application under the server itself, as its own command line runs it."""
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
        command += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
        return [*command, "--no-access-log", "--log-level", "warning", "--no-proxy-headers"]
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--loop", "uvloop", "--http", "1", "--no-ws"]
    return [*command, "--log-level", "warning", target]


def gateway_serve(config: Path, server: str, port: int, *, workers: int = 1) -> list[str]:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    return [*command, "--server", server, "--port", str(port), "--workers", str(workers)]


def write_config(directory: Path, port: int, store: str, redis_url: str, public_key: str) -> Path:
    """gateway-<store>.yml, policy.yml and users.yml (the builder of the tests)."""
    issuer = {
        "name": "bench",
        "issuer": "https://idp.example.com",
        "audiences": ["gateway"],
        "algorithms": ["RS256"],
        "username_claim": "client_id",
        "public_keys": [public_key],
    }
    return GatewayConfig(
        port=port,
        secrets={"encryption_keys_file": "encryption.key", "hash_key_file": "hash.key"},
        store=store,
        session={"sqlite": {"path": f"sessions-{store}.sqlite3"}, "redis": {"url": redis_url}},
        authentication=USERS_FILE,
        storage={"type": "sqlite", "sqlite": {"path": "gateway.sqlite3"}},
        extra={"log": {"level": "warning"}, "credentials": {"issuers": [issuer]}},
        policy=POLICY,
        users=users_yml(
            password_hash(PASSWORD), bench=User("Bench User", "bench@example.com", ("dev",))
        ),
    ).write(directory, f"gateway-{store}.yml")


def sign_in(port: int) -> str:
    """Log in through the portal exactly as a browser behind Caddy would; returns the cookie."""
    base = f"http://127.0.0.1:{port}"
    portal = {
        "Host": "auth.example.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "127.0.0.1",
    }
    with httpx.Client(base_url=base, headers=portal) as client:
        page = client.get("/")
        field = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert field, "no CSRF field on the login page"
        # The CSRF cookie is Secure; this client talks plain HTTP to loopback, as Caddy does.
        csrf_cookie = page.headers["set-cookie"].split(";", 1)[0]
        answer = client.post(
            "/login",
            data={"csrf": field.group(1), "username": "bench", "password": PASSWORD},
            headers={"Origin": "https://auth.example.com", "Cookie": csrf_cookie},
        )
        for value in answer.headers.get_list("set-cookie"):
            if value.startswith("gateway_session="):
                return value.split(";", 1)[0]
    raise SystemExit(f"sign-in failed: {answer.status_code}")


@dataclass
class Load:
    name: str
    server: str
    port: int
    pid: int
    headers: dict[str, str]
    path: str = DECISION
    threads: int = 1


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process, its threads and its descendants."""
    total, pids = 0.0, [pid]
    for current in pids:  # grows while walking: workers are children
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                pids.extend(int(child) for child in children.split())
    return total


def measure(load: Load, seconds: int, connections: int) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    command = ["wrk", f"-t{load.threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    url = f"http://127.0.0.1:{load.port}{load.path}"
    # Check the answer first: a benchmark of 401s would measure nothing useful.
    status = httpx.get(url, headers=load.headers).status_code
    if status != 200:
        raise SystemExit(f"{load.name}: expected 200 from the endpoint, got {status}")
    subprocess.run([*command[:3], "-d1s", *command[5:], url], capture_output=True, check=True)
    used = cpu_seconds(load.pid)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(load.pid) - used
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match is None or count is None or errors is not None:
        raise SystemExit(f"{load.name}: wrk reported errors:\n{output}")
    return float(match.group(1)), 1e6 * used / int(count.group(1))


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
        return
    raise SystemExit("wrk is needed: apt-get install wrk")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="best of this many rounds per case")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"servers to run the gateway under, comma-separated (default {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="also measure 2 workers against 1 (signed in)"
    )
    args = parser.parse_args()
    servers = [name for name in args.servers.split(",") if name]
    unknown = set(servers) - set(SERVERS)
    if unknown or not servers:
        raise SystemExit(f"--servers: expected some of {', '.join(SERVERS)}")
    ensure_wrk()
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("redis-server is needed: apt-get install redis-server")

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as temporary:
        directory = Path(temporary)
        for name, text in (("encryption.key", generate_key()), ("hash.key", "b" * 48)):
            (directory / name).write_text(text + "\n")
            (directory / name).chmod(0o600)
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        token = jwt.encode(
            {
                "iss": "https://idp.example.com",
                "aud": "gateway",
                "client_id": "bench-client",
                "sub": "bench-client",
                "exp": int(time.time()) + 3600,
            },
            private_key,
            algorithm="RS256",
        )
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        configs = {
            store: write_config(directory, free_port(), store, redis_url, public_pem)
            for store in ("sqlite", "redis")
        }
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "keys",
                "create",
                "bench",
                "--owner",
                "bench",
                "--config",
                str(configs["sqlite"]),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        api_key = next(word for word in created.stdout.split() if word.startswith("gw_"))
        forwarded = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example.com",
            "X-Forwarded-Uri": "/reports?id=42",
            "X-Forwarded-Method": "GET",
            "X-Forwarded-For": "10.1.2.3",
            "Accept": "text/html",
        }
        api = {**forwarded, "X-Forwarded-Host": "api.example.com", "Accept": "application/json"}
        portal = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}

        with contextlib.ExitStack() as stack:

            def start(what: str, command: Callable[[int], list[str]]) -> tuple[int, int]:
                """Start a server on a free port; returns (port, pid)."""
                port = free_port()
                log = directory / f"{what.replace(' ', '-').replace('/', '-')}.log"
                pid = stack.enter_context(running(command(port), port, what, log))
                if what.startswith("gateway"):
                    wait_healthy(port)
                return port, pid

            stack.enter_context(
                running(
                    [
                        redis_binary,
                        *("--port", str(redis_port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no", "--dir", temporary),
                    ],
                    redis_port,
                    "redis-server",
                    directory / "redis.log",
                )
            )
            loads: list[Load] = []
            for server in dict.fromkeys(["uvicorn", *servers]):
                for what, target in (
                    ("floor", "bench.bare_app:floor"),
                    ("bare", "bench.bare_app:app"),
                ):
                    port, pid = start(
                        f"{what} ({server})", functools.partial(plain_server, server, target)
                    )
                    loads.append(Load(what, server, port, pid, forwarded))
            for server in servers:
                gateways = {
                    store: start(
                        f"gateway {store} ({server})",
                        functools.partial(gateway_serve, config, server),
                    )
                    for store, config in configs.items()
                }
                sqlite, redis = gateways["sqlite"], gateways["redis"]
                loads += [
                    Load(
                        "session/sqlite",
                        server,
                        *sqlite,
                        {**forwarded, "Cookie": sign_in(sqlite[0])},
                    ),
                    Load(
                        "session/redis", server, *redis, {**forwarded, "Cookie": sign_in(redis[0])}
                    ),
                    Load("apikey", server, *sqlite, {**api, "X-API-Key": api_key}),
                    Load("jwt", server, *sqlite, {**api, "Authorization": f"Bearer {token}"}),
                    Load(
                        "portal", server, *sqlite, {**portal, "Host": "auth.example.com"}, path="/"
                    ),
                ]
                if args.scaling:
                    for workers in (1, 2):
                        port, pid = start(
                            f"gateway x{workers} ({server})",
                            functools.partial(
                                gateway_serve, configs["sqlite"], server, workers=workers
                            ),
                        )
                        cookie = {**forwarded, "Cookie": sign_in(port)}
                        loads.append(Load(f"x{workers}", server, port, pid, cookie, threads=2))
            rates: dict[tuple[str, str], float] = {}
            costs: dict[tuple[str, str], float] = {}
            for _ in range(args.rounds):
                for load in loads:  # interleaved, so a slow moment hits every case alike
                    rate, cost = measure(load, args.seconds, args.connections)
                    key = (load.name, load.server)
                    rates[key] = max(rates.get(key, 0.0), rate)
                    costs[key] = min(costs.get(key, math.inf), cost)

    return report(rates, costs, servers, args)


def report(
    rates: dict[tuple[str, str], float],
    costs: dict[tuple[str, str], float],
    servers: list[str],
    args: argparse.Namespace,
) -> int:
    """Print the table; 1 if some server misses a target."""
    baseline = rates["bare", "uvicorn"]
    columns = list(dict.fromkeys(["uvicorn", *servers]))
    print(
        f"\n{args.connections} connections, best of {args.rounds} x {args.seconds}s; ratio: to "
        "bare Starlette on uvicorn; cpu: server CPU µs per request (all its threads, workers)"
    )
    print(
        f"{'case':<16}"
        + "".join(f"{name + ' req/s':>15}{'ratio':>7}{'cpu':>7}" for name in columns)
        + f"{'target':>8}"
    )
    missed = 0
    rows = [("floor", "raw ASGI 200"), ("bare", "bare starlette"), *((c, c) for c in CASES)]
    for key, label in rows:
        line = f"{label:<16}"
        for server in columns:
            rate = rates.get((key, server))
            if rate is None:
                line += f"{'-':>15}{'':>14}"
                continue
            line += f"{rate:>15.0f}{rate / baseline:>6.2f}x{costs[key, server]:>7.1f}"
        target = TARGETS.get(key)
        if target is not None:
            misses = [name for name in servers if rates[key, name] / baseline < target]
            missed += len(misses)
            line += f"{target:>7.1f}x  " + ("ok" if not misses else "MISSED: " + ", ".join(misses))
        print(line)
    if args.scaling:
        print(
            "\nsigned in (session/sqlite), wrk with 2 threads: --workers 2 against --workers 1"
            " (req/s, and server CPU µs per request)"
        )
        for server in servers:
            one, two = rates["x1", server], rates["x2", server]
            cpu = f"{costs['x1', server]:>7.1f} µs x1{costs['x2', server]:>7.1f} µs x2"
            print(f"{server:<10}{one:>8.0f} x1{two:>8.0f} x2{two / one:>6.2f}x  {cpu}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
