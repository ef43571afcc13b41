"""Forward-auth decisions per second against a bare Starlette endpoint, in one run.

    uv run python bench/decision_bench.py [--seconds 5] [--connections 16]

Every server is the same uvicorn (one worker, uvloop + httptools, no access log) on
loopback, and every load comes from the same tool (wrk, one thread). The baseline is a bare
Starlette endpoint that answers 200; each gateway case is reported as a ratio of it:

  session/sqlite   signed-in browser, SQLite session store      target >= 0.8x
  session/redis    signed-in browser, Redis session store       target >= 0.6x
  apikey           API host, X-API-Key                          target >= 0.8x
  jwt              API host, bearer JWT (RS256, static key)     target >= 0.8x

All servers (a private redis-server included) start on free loopback ports and stop at the
end; each load is bounded by --seconds. Needs `wrk` (Debian package wrk; installed when
missing and running as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
def running(command: list[str], port: int, what: str, log: Path) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, process, what)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def uvicorn(target: str, port: int, *, factory: bool = False) -> list[str]:
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    command += ["--no-access-log", "--log-level", "warning", "--no-proxy-headers"]
    return command + (["--factory"] if factory else [])


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
    port: int
    headers: dict[str, str]


def measure(load: Load, seconds: int, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    url = f"http://127.0.0.1:{load.port}/api/authz/forward-auth"
    # Check the answer first: a benchmark of 401s would measure nothing useful.
    status = httpx.get(url, headers=load.headers).status_code
    if status != 200:
        raise SystemExit(f"{load.name}: expected 200 from the endpoint, got {status}")
    subprocess.run([*command[:3], "-d1s", *command[5:], url], capture_output=True, check=True)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match is None or errors is not None:
        raise SystemExit(f"{load.name}: wrk reported errors:\n{output}")
    return float(match.group(1))


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
    args = parser.parse_args()
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
        ports = {"bare": free_port(), "sqlite": free_port(), "redis": free_port()}
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        configs = {
            store: write_config(directory, ports[store], store, redis_url, public_pem)
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
        env_gateway = "gateway.app:create_app_from_environment"

        with contextlib.ExitStack() as stack:
            stack.enter_context(
                running(
                    [
                        redis_binary,
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        temporary,
                    ],
                    redis_port,
                    "redis-server",
                    directory / "redis.log",
                )
            )
            stack.enter_context(
                running(
                    uvicorn("bench.bare_app:app", ports["bare"]),
                    ports["bare"],
                    "bare app",
                    directory / "bare.log",
                )
            )
            for store in ("sqlite", "redis"):
                os.environ["GATEWAY_CONFIG"] = str(configs[store])
                stack.enter_context(
                    running(
                        uvicorn(env_gateway, ports[store], factory=True),
                        ports[store],
                        f"gateway ({store})",
                        directory / f"gateway-{store}.log",
                    )
                )
            forwarded = {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "app.example.com",
                "X-Forwarded-Uri": "/reports?id=42",
                "X-Forwarded-Method": "GET",
                "X-Forwarded-For": "10.1.2.3",
                "Accept": "text/html",
            }
            api = {**forwarded, "X-Forwarded-Host": "api.example.com", "Accept": "application/json"}
            loads = [
                Load("bare", ports["bare"], forwarded),
                Load(
                    "session/sqlite",
                    ports["sqlite"],
                    {**forwarded, "Cookie": sign_in(ports["sqlite"])},
                ),
                Load(
                    "session/redis",
                    ports["redis"],
                    {**forwarded, "Cookie": sign_in(ports["redis"])},
                ),
                Load("apikey", ports["sqlite"], {**api, "X-API-Key": api_key}),
                Load("jwt", ports["sqlite"], {**api, "Authorization": f"Bearer {token}"}),
            ]
            results: dict[str, float] = {}
            for _ in range(args.rounds):
                for load in loads:  # interleaved, so a slow moment hits every case alike
                    rate = measure(load, args.seconds, args.connections)
                    results[load.name] = max(results.get(load.name, 0.0), rate)

    baseline = results["bare"]
    print(
        f"\nforward-auth decisions, {args.connections} connections, "
        f"best of {args.rounds} x {args.seconds}s"
    )
    print(f"{'case':<16}{'req/s':>10}{'ratio':>9}{'target':>9}  {'µs/req':>8}")
    print(f"{'bare starlette':<16}{baseline:>10.0f}{1.0:>8.2f}x{'':>9}  {1e6 / baseline:>8.1f}")
    missed = 0
    for name, target in TARGETS.items():
        ratio = results[name] / baseline
        verdict = "ok" if ratio >= target else "MISSED"
        missed += ratio < target
        rate, cost = results[name], 1e6 / results[name]
        print(f"{name:<16}{rate:>10.0f}{ratio:>8.2f}x{target:>8.1f}x  {cost:>8.1f}  {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
