"""Forward-auth decisions per second against a bare Starlette endpoint, in one run.

    uv run python bench/decision_bench.py [--seconds 5] [--connections 16] [--sessions 20000]

Every server is the same uvicorn (one worker, uvloop + httptools, no access log) on
loopback, and every load comes from the same tool (wrk, one thread). The baseline is a bare
Starlette endpoint that answers 200; each gateway case is reported as a ratio of it:

  session/sqlite   signed-in browser, SQLite session store      target >= 0.8x
  session/redis    signed-in browser, Redis session store       target >= 0.6x
  apikey           API host, X-API-Key                          target >= 0.8x
  jwt              API host, bearer JWT (RS256, static key)     target >= 0.8x
  many/sqlite      20,000 signed-in browsers, SQLite            target >= 0.8x
  many/redis       20,000 signed-in browsers, Redis             target >= 0.8x

The many/* cases create their sessions directly through SessionManager.login against the
store the gateway uses, and wrk (through bench/many_sessions.lua) sends each request with a
cookie picked at random among them, so the sessions are spread over every connection. Their
ratio is to the bare endpoint driven by the same script (bare/many: the same requests, the
same Lua cost in wrk); the ratio to the plain baseline is printed beside it.

All servers (a private redis-server included) start on free loopback ports and stop at the
end; each load is bounded by --seconds. Needs `wrk` (Debian package wrk; installed when
missing and running as root).
"""

from __future__ import annotations

import argparse
import asyncio
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

from gateway.identity.passwords import hash_password
from gateway.security.crypto import Keyring, generate_key
from gateway.session.manager import SessionManager
from gateway.session.stores import open_session_store
from gateway.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password"
TARGETS = {
    "session/sqlite": 0.8,
    "session/redis": 0.6,
    "apikey": 0.8,
    "jwt": 0.8,
    "many/sqlite": 0.8,
    "many/redis": 0.8,
}
# Each case's ratio is to this baseline: the bare endpoint under the same kind of load.
BASELINES = {"many/sqlite": "bare/many", "many/redis": "bare/many"}
MANY_SCRIPT = Path(__file__).resolve().parent / "many_sessions.lua"

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
    config = directory / f"gateway-{store}.yml"
    indented_key = "\n".join("          " + line for line in public_key.strip().splitlines())
    config.write_text(
        f"""\
server:
  port: {port}
log:
  level: warning
secrets:
  encryption_keys_file: encryption.key
  hash_key_file: hash.key
policy:
  files: [policy.yml]
session:
  store: {store}
  sqlite:
    path: sessions-{store}.sqlite3
  redis:
    url: {redis_url}
  cookies:
    - domain: example.com
      portal_url: https://auth.example.com
authentication:
  backend: file
  file:
    path: users.yml
storage:
  type: sqlite
  sqlite:
    path: gateway.sqlite3
credentials:
  issuers:
    - name: bench
      issuer: https://idp.example.com
      audiences: [gateway]
      algorithms: [RS256]
      username_claim: client_id
      public_keys:
        - |
{indented_key}
"""
    )
    return config


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


async def create_sessions(config: Path, count: int) -> list[str]:
    """``count`` sessions of the bench user, made through SessionManager.login against the
    store ``config`` names (the one its gateway reads); returns their Cookie values."""
    settings = load_settings(config)
    store = await open_session_store(settings, Keyring.from_texts(settings.secrets.encryption_keys))
    sessions = SessionManager.from_settings(settings, store)
    domain = settings.session.cookies[0]
    name = settings.session.cookie_name
    values: list[str] = []
    try:
        for start in range(0, count, 100):
            batch = await asyncio.gather(
                *(
                    sessions.login(
                        domain,
                        username="bench",
                        display_name="Bench User",  # as in users.yml: no refresh write
                        email="bench@example.com",
                        groups=("dev",),
                    )
                    for _ in range(min(100, count - start))
                )
            )
            values += [f"{name}={session.id}" for session in batch]
    finally:
        await sessions.close()
    return values


@dataclass
class Load:
    name: str
    port: int
    headers: dict[str, str]
    cookies: Path | None = None
    """A file of Cookie header values: each request picks one at random (Lua in wrk)."""
    warmup: int = 1


def measure(load: Load, seconds: int, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in load.headers.items():
        command += ["-H", f"{name}: {value}"]
    url = f"http://127.0.0.1:{load.port}/api/authz/forward-auth"
    probe = dict(load.headers)
    if load.cookies is not None:
        command += ["-s", str(MANY_SCRIPT)]
        with load.cookies.open() as lines:
            probe["Cookie"] = lines.readline().strip()
    # Check the answer first: a benchmark of 401s would measure nothing useful.
    status = httpx.get(url, headers=probe).status_code
    if status != 200:
        raise SystemExit(f"{load.name}: expected 200 from the endpoint, got {status}")
    script_args = [] if load.cookies is None else ["--", str(load.cookies)]
    # The warm-up sends every cookie in turn: what is measured is the steady state of a
    # gateway that has seen its sessions, not the first read of each.
    warm_args = [*script_args, "sequential"] if script_args else []
    warmup = [*command[:3], f"-d{load.warmup}s", *command[5:], url, *warm_args]
    subprocess.run(warmup, capture_output=True, check=True)
    output = subprocess.run(
        [*command, url, *script_args], capture_output=True, text=True, check=True
    ).stdout
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
    parser.add_argument(
        "--sessions", type=int, default=20_000, help="distinct sessions of the many/* cases"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated cases to run (the baselines always run)"
    )
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
        (directory / "policy.yml").write_text(POLICY)
        (directory / "users.yml").write_text(
            "users:\n  bench:\n    displayname: Bench User\n    email: bench@example.com\n"
            f'    groups: [dev]\n    password: "{hash_password(PASSWORD)}"\n'
        )
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
            many = {store: directory / f"cookies-{store}.txt" for store in ("sqlite", "redis")}
            for store, cookies in many.items():
                values = asyncio.run(create_sessions(configs[store], args.sessions))
                cookies.write_text("".join(value + "\n" for value in values))
            # Long enough for the warm-up to send every cookie once even while each is a
            # store read (a few thousand a second).
            many_warmup = max(1, args.sessions // 2_000)
            loads = [
                Load("bare", ports["bare"], forwarded),
                Load("bare/many", ports["bare"], forwarded, many["sqlite"]),
                Load("many/sqlite", ports["sqlite"], forwarded, many["sqlite"], many_warmup),
                Load("many/redis", ports["redis"], forwarded, many["redis"], many_warmup),
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
            if args.only:
                wanted = {"bare", "bare/many", *args.only.split(",")}
                loads = [load for load in loads if load.name in wanted]
            results: dict[str, float] = {}
            for _ in range(args.rounds):
                for load in loads:  # interleaved, so a slow moment hits every case alike
                    rate = measure(load, args.seconds, args.connections)
                    results[load.name] = max(results.get(load.name, 0.0), rate)

    baseline = results["bare"]
    print(
        f"\nforward-auth decisions, {args.connections} connections, "
        f"best of {args.rounds} x {args.seconds}s, {args.sessions} sessions in many/*"
    )
    print(f"{'case':<16}{'req/s':>10}{'ratio':>9}{'target':>9}  {'µs/req':>8}  vs bare")
    print(f"{'bare starlette':<16}{baseline:>10.0f}{1.0:>8.2f}x{'':>9}  {1e6 / baseline:>8.1f}")
    many_base = results["bare/many"]
    print(f"{'bare/many':<16}{many_base:>10.0f}{1.0:>8.2f}x{'':>9}  {1e6 / many_base:>8.1f}")
    missed = 0
    for name, target in TARGETS.items():
        if name not in results:
            continue
        ratio = results[name] / results[BASELINES.get(name, "bare")]
        verdict = "ok" if ratio >= target else "MISSED"
        missed += ratio < target
        rate, cost = results[name], 1e6 / results[name]
        plain = f"  {rate / baseline:.2f}x" if name in BASELINES else ""
        print(
            f"{name:<16}{rate:>10.0f}{ratio:>8.2f}x{target:>8.1f}x  {cost:>8.1f}{plain}  {verdict}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
