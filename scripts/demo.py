"""Set up and run the demo (see scripts/demo). Idempotent: reuses .demo/ when it exists."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.identity.passwords import hash_password
from gateway.security.crypto import generate_key

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
CADDYFILE = ROOT / "caddy" / "demo.Caddyfile"


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def prepare() -> str:
    """Create keys, users and configuration once; return the demo password."""
    DEMO.mkdir(exist_ok=True)
    (DEMO / "data").mkdir(exist_ok=True)
    password_file = DEMO / "password.txt"
    if not password_file.exists():
        _write_private(DEMO / "encryption.key", generate_key() + "\n")
        _write_private(DEMO / "hash.key", secrets.token_urlsafe(48) + "\n")
        password = secrets.token_urlsafe(9)
        _write_private(password_file, password + "\n")
        _write_private(
            DEMO / "users.yml",
            "users:\n"
            "  john:\n"
            "    displayname: John Doe\n"
            "    email: john@gateway.localhost\n"
            "    groups: [admins, dev]\n"
            f'    password: "{hash_password(password)}"\n'
            "  harry:\n"
            "    displayname: Harry Potter\n"
            "    email: harry@gateway.localhost\n"
            "    groups: [dev]\n"
            f'    password: "{hash_password(password)}"\n',
        )
    (DEMO / "gateway.yml").write_text(
        "# Written by scripts/demo.\n"
        "server:\n  address: 127.0.0.1\n  port: 9091\n"
        "secrets:\n  encryption_keys_file: encryption.key\n  hash_key_file: hash.key\n"
        f"policy:\n  files: [{ROOT / 'policies' / 'demo.yml'}]\n"
        "session:\n"
        "  cookies:\n"
        "    - domain: gateway.localhost\n"
        "      portal_url: https://auth.gateway.localhost:8443\n"
        "      default_redirect_url: https://app.gateway.localhost:8443\n"
        "  store: sqlite\n  sqlite:\n    path: data/sessions.sqlite3\n"
        "authentication:\n  backend: file\n  file:\n    path: users.yml\n"
        "storage:\n  type: sqlite\n  sqlite:\n    path: data/gateway.sqlite3\n"
    )
    return password_file.read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the gateway demo.")
    parser.add_argument("--no-caddy", action="store_true", help="run the gateway alone")
    args = parser.parse_args()
    password = prepare()
    check = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(DEMO / "gateway.yml")],
        check=False,
    )
    if check.returncode != 0:
        return check.returncode
    processes: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, CADDY_DATA=str(DEMO / "caddy"), XDG_DATA_HOME=str(DEMO / "caddy"))
    processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(DEMO / "gateway.yml")]
        )
    )
    caddy = None if args.no_caddy else shutil.which("caddy")
    if caddy:
        processes.append(
            subprocess.Popen([sys.executable, str(ROOT / "scripts" / "echo_upstream.py")])
        )
        processes.append(
            subprocess.Popen(
                [
                    caddy,
                    "run",
                    "--adapter",
                    "caddyfile",
                    "--config",
                    str(ROOT / "caddy" / "demo.Caddyfile"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.5)
    print()
    print("  gateway demo is running (Ctrl-C stops it)")
    print(f"  users: john (admins, dev) and harry (dev); password: {password}")
    if caddy:
        print("  open https://app.gateway.localhost:8443/  (accept Caddy's local certificate)")
        print("       https://admin.gateway.localhost:8443/ asks admins for a TOTP code too")
    else:
        print("  Caddy is not installed; the gateway alone listens on http://127.0.0.1:9091")
    print("  try:  curl -i -H 'X-Forwarded-Proto: https' \\")
    print("             -H 'X-Forwarded-Host: app.gateway.localhost' -H 'X-Forwarded-Uri: /' \\")
    print("             -H 'X-Forwarded-Method: GET' -H 'Accept: text/html' \\")
    print("             http://127.0.0.1:9091/api/authz/forward-auth")
    print()
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
