"""Connection limits for ``gateway serve``: what uvicorn leaves unguarded.

uvicorn with httptools (what ``uvicorn[standard]`` selects) has

* no limit on the size of a request's headers: llhttp and httptools buffer a header of any
  length (h11's ``h11_max_incomplete_event_size`` applies to the h11 implementation only);
* no deadline for a request that never finishes arriving: its keep-alive timer starts only
  after a response, and any byte received cancels it, so a client that sends its headers a
  byte at a time (slowloris), or connects and sends nothing, keeps its connection forever;
* a ``limit_concurrency`` that counts idle keep-alive connections: once enough clients sit
  idle, every request is answered 503 until they leave. Without it, connections grow until
  the process runs out of file descriptors, and then new ones are dropped at accept.

:class:`LimitedHttpProtocol` adds the three: at most ``max_header_size`` bytes of request
line and headers (else 431); a request must arrive whole within ``request_timeout`` of its
first byte, and a connection with nothing under way is closed after ``idle_timeout``; at
most ``max_connections`` connections, where a new one closes the longest-idle connection to
make room, and is answered 503 only when every connection is busy. The limit is sized below
the open-files limit (:func:`connection_budget`), which :func:`raise_open_files_limit` raises
to its hard maximum at start-up, so the gateway never runs out of file descriptors.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import resource
import socket
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from gateway.observability.throttle import log_throttled

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from gateway.config.settings import Settings

__all__ = [
    "BodyDeadline",
    "ConnectionLimits",
    "LimitedHttpProtocol",
    "ReusePortMultiprocess",
    "ServerConfig",
    "connection_budget",
    "granian_app",
    "granian_header_timeout",
    "raise_open_files_limit",
    "serve_granian",
]

log = logging.getLogger("gateway.server")

_BASE_RESERVE = 128
"""File descriptors kept for everything but client connections and pools: the listening
socket, the event loop's own, standard streams, SQLite files (database, WAL, shared memory
per connection), watched policy and users files, JWKS and other outbound HTTP clients."""

_CLOSE_GRACE = 1.0
"""Seconds a closing connection may take to flush its last bytes before it is aborted (a
client that does not read must not keep the descriptor)."""

_DEFAULT_MAX_CONNECTIONS = 10_000
"""The default limit however many descriptors there are: containers often allow a million,
and memory (some 5 KiB per idle connection, 20 KiB per busy one) runs out first."""

_MAX_SOFT_LIMIT = 1 << 20
"""Never ask for more than this (Linux's default fs.nr_open) when the hard limit is
unlimited."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one server process allows its clients."""

    max_header_size: int = 64 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int) -> ConnectionLimits:
        server = settings.server
        return cls(
            max_header_size=server.max_header_size,
            request_timeout=server.request_timeout,
            idle_timeout=server.idle_timeout,
            max_connections=max_connections,
        )


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.

    Where the raise is not allowed (a seccomp filter such as systemd's ``@resources``, which
    the shipped unit denies because it sets ``LimitNOFILE=`` itself), the limit stays as it
    is: the connection limit is sized from whatever is in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _MAX_SOFT_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as error:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, error)
        else:
            soft = target
    return _MAX_SOFT_LIMIT if soft == resource.RLIM_INFINITY else soft


def _descriptor_reserve(settings: Settings) -> int:
    """Descriptors the gateway may hold besides client connections: fixed needs plus pools."""
    reserve = _BASE_RESERVE
    if settings.storage.postgres is not None and settings.storage.type == "postgres":
        reserve += settings.storage.postgres.pool_size
    if settings.authentication.ldap is not None and settings.authentication.backend == "ldap":
        reserve += settings.authentication.ldap.pool_size
    redis_clients = (settings.session.store == "redis") + (
        settings.credentials.rate_limits.store == "redis"
    )
    reserve += redis_clients * settings.session.redis.pool_size
    return reserve


def connection_budget(settings: Settings, open_files: int) -> tuple[int, str | None]:
    """The connection limit for ``open_files`` descriptors, and a warning if the configured
    ``server.limit_concurrency`` had to be lowered to fit."""
    reserve = _descriptor_reserve(settings)
    # A small limit (a test, a tiny container) still leaves a quarter for connections.
    budget = max(open_files - reserve, open_files // 4, 1)
    configured = settings.server.limit_concurrency
    if configured is None:
        return min(budget, _DEFAULT_MAX_CONNECTIONS), None
    if configured <= budget:
        return configured, None
    return budget, (
        f"server.limit_concurrency {configured} does not fit the open-files limit "
        f"{open_files} (of which {reserve} are kept for stores and files); using {budget}: "
        "raise LimitNOFILE (systemd) or the container's nofile ulimit"
    )


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus :class:`ConnectionLimits`, for :class:`LimitedHttpProtocol`.

    A module-level class, so that ``--workers`` (which pickles the configuration into each
    worker process) carries the limits along.
    """

    def __init__(self, app: str, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(
            app,
            http=LimitedHttpProtocol,
            # uvicorn's own check counts idle connections; the protocol enforces the limit.
            limit_concurrency=None,
            # uvicorn takes whole seconds; the protocol uses the same value for new
            # connections as uvicorn does after a response.
            timeout_keep_alive=max(1, math.ceil(limits.idle_timeout)),
            # The gateway serves no WebSocket: an Upgrade is an ordinary request.
            ws="none",
            **options,
        )
        self.limits = limits


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's supervisor, with a listening socket of its own for each worker.

    uvicorn's workers share one socket, and whichever wakes first accepts: under a steady
    load of 16 connections one of two workers held 14 of them, and the second worker added
    about a tenth. Sockets bound with ``SO_REUSEPORT`` let the kernel spread connections
    over the workers. The supervisor closes its copy once a worker has started, so the
    socket of a worker that dies leaves the group with it (no connection waits on a socket
    that nobody accepts from).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._handed_out: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property  # uvicorn's attribute: here a fresh socket for each worker started
    def sockets(self) -> list[socket.socket]:
        sock = reuse_port_socket(self.config.host, self.config.port)
        self._handed_out.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, _: list[socket.socket]) -> None:
        pass

    def _close_handed_out(self) -> None:
        while self._handed_out:
            self._handed_out.pop().close()

    def init_processes(self) -> None:
        try:
            super().init_processes()
        finally:
            self._close_handed_out()

    def restart_all(self) -> None:
        try:
            super().restart_all()
        finally:
            self._close_handed_out()

    def keep_subprocess_alive(self) -> None:
        try:
            super().keep_subprocess_alive()
        finally:
            self._close_handed_out()


def reuse_port_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, to be listened on by one worker.

    Without ``reuse_port`` the bind fails while anything listens there, another gateway's
    workers included: :func:`gateway.serve.run` checks so before it starts any.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Connections:
    """The connections of one server, shared by its protocol instances."""

    def __init__(self) -> None:
        self.idle: dict[LimitedHttpProtocol, None] = {}
        """Connections with nothing under way, longest idle first (dicts keep order)."""
        self.closing = 0
        """Connections closed by a limit but not yet gone (their descriptors are freed on the
        loop's next turn); not counted against the limit, so one arrival evicts one."""


_servers: weakref.WeakKeyDictionary[ServerState, _Connections] = weakref.WeakKeyDictionary()


def _response(status: int, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


_TOO_LARGE = _response(431, "Request Header Fields Too Large")
_TIMED_OUT = _response(408, "Request Timeout")
_BUSY = _response(503, "Service Unavailable")


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, time and connection limits (module docs)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = config.limits if isinstance(config, ServerConfig) else ConnectionLimits()
        table = _servers.get(server_state)
        if table is None:
            table = _servers[server_state] = _Connections()
        self._table = table
        self._deadline: asyncio.TimerHandle | None = None
        self._abort_later: asyncio.TimerHandle | None = None
        self._in_headers = True  # the next bytes are a request line or headers
        self._header_bytes = 0
        self._closed_by_limit = False

    # -- connection life ------------------------------------------------------------------

    def connection_made(  # type: ignore[override]  # uvicorn narrows the transport type
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        table = self._table
        excess = len(self.connections) - table.closing - self._limits.max_connections
        while excess > 0 and table.idle:
            next(iter(table.idle))._close_by_limit(None)
            excess -= 1
        if excess > 0:
            log_throttled(
                log,
                "busy",
                "%d connections, all busy (server.limit_concurrency): answering 503",
                self._limits.max_connections,
            )
            self._close_by_limit(_BUSY)
            return
        table.idle[self] = None
        # uvicorn arms its keep-alive timer only after a response; a connection that never
        # sends a request would otherwise stay open for good.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._table.idle.pop(self, None)
        if self._closed_by_limit:
            self._closed_by_limit = False
            self._table.closing -= 1
        for handle in (self._deadline, self._abort_later):
            if handle is not None:
                handle.cancel()
        self._deadline = self._abort_later = None
        super().connection_lost(exc)

    def _close_by_limit(self, answer: bytes | None) -> None:
        """Close this connection, first writing ``answer`` if no response is under way."""
        if self._closed_by_limit:
            return
        self._closed_by_limit = True
        self._table.closing += 1
        self._table.idle.pop(self, None)
        self._unset_keepalive_if_required()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if answer is not None and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(answer)
        self.transport.close()
        self._abort_later = self.loop.call_later(_CLOSE_GRACE, self.transport.abort)

    # -- receiving ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed_by_limit:
            return  # answered already; the rest of the request is of no interest
        self._table.idle.pop(self, None)
        if self._deadline is None:
            # Bytes of a request have started to arrive (or only line breaks: those count
            # too, or a client could trickle them forever).
            self._deadline = self.loop.call_later(
                self._limits.request_timeout, self._request_timed_out
            )
        while data:
            if self._in_headers:
                # Feed at most what the header budget allows, so a huge header is refused
                # before it is buffered, while a body in the same packet is not counted.
                budget = self._limits.max_header_size - self._header_bytes
                if budget <= 0:
                    log_throttled(
                        log,
                        "too-large",
                        "request headers over %d bytes (server.max_header_size): 431",
                        self._limits.max_header_size,
                        level=logging.INFO,
                    )
                    self._close_by_limit(_TOO_LARGE)
                    return
                if len(data) > budget:
                    piece, data = data[:budget], data[budget:]
                else:
                    piece, data = data, b""
                self._header_bytes += len(piece)
            else:
                # A body, perhaps followed by the start of a pipelined request, whose header
                # bytes are then counted from the next packet on (at most one packet late).
                piece, data = data, b""
            super().data_received(piece)
            if self.transport.is_closing():
                return  # uvicorn answered 400 to a malformed request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a pipelined request, begun within an earlier packet
            self._deadline = self.loop.call_later(
                self._limits.request_timeout, self._request_timed_out
            )

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The whole request is in: from here on the application's own deadlines apply.
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._in_headers = True
        self._header_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (
            not self.transport.is_closing()
            and self._deadline is None
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
        ):
            self._table.idle.pop(self, None)
            self._table.idle[self] = None  # now the most recently idle

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log_throttled(
            log,
            "timeout",
            "a request did not arrive within %gs (server.request_timeout): connection closed",
            self._limits.request_timeout,
            level=logging.INFO,
        )
        # While still in the headers, no application has seen the request: say why. In the
        # body, the application is waiting for it and gets a disconnect instead.
        self._close_by_limit(_TIMED_OUT if self._in_headers else None)


# -- granian ------------------------------------------------------------------------------

_GRANIAN_MIN_BUFFER = 8192
"""granian's smallest ``http1_buffer_size``: below it, the header limit is this."""

_GRANIAN_KILL_TIMEOUT = 10
"""Seconds granian waits for a stopping worker before it kills it."""

_BODY_METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD"})


def granian_header_timeout(limits: ConnectionLimits) -> float:
    """The one timer hyper has for HTTP/1: it starts when a connection opens or a response
    ends, and closes the connection unless a request's headers have arrived whole by then.
    So it is both the idle timeout and the header deadline: the smaller of the two bounds
    both."""
    return min(limits.idle_timeout, limits.request_timeout)


def serve_granian(
    settings: Settings, limits: ConnectionLimits, *, host: str, port: int, workers: int
) -> None:
    """Serve the gateway under granian, ``limits`` mapped onto its options, until stopped."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    server = Server(
        "gateway.app:create_app_from_environment",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=2048,
        # A permit per connection, held until it closes: granian accepts no more than this.
        backpressure=limits.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, math.ceil(granian_header_timeout(limits) * 1000)),
            keep_alive=True,
            max_buffer_size=max(_GRANIAN_MIN_BUFFER, limits.max_header_size),
        ),
        log_enabled=True,
        log_level=LogLevels(settings.log.level),
        # granian's own messages go through the gateway's handlers (format, redaction).
        log_dictconfig={
            "loggers": {
                "_granian": {"handlers": [], "propagate": True},
                "granian.access": {"handlers": [], "propagate": False},
            }
        },
        log_access=False,
        # As uvicorn's supervisor does: a worker that dies is replaced (granian stops when
        # one dies again within a few seconds, a crash loop).
        respawn_failed_workers=True,
        # A worker that has not stopped this long after SIGTERM is killed: one was seen
        # hanging in its shutdown after the whole process group had been sent SIGTERM.
        workers_kill_timeout=_GRANIAN_KILL_TIMEOUT,
    )
    server.serve(target_loader=functools.partial(granian_app, limits), wrap_loader=False)


def granian_app(limits: ConnectionLimits) -> ASGIApp:
    """The application of one granian worker: the gateway, with a deadline for bodies."""
    from gateway.app import create_app_from_environment

    return BodyDeadline(create_app_from_environment(), limits.request_timeout)


_REQUEST_TIMEOUT_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"15"),
    (b"connection", b"close"),
]


class BodyDeadline:
    """A request's body must arrive within ``timeout`` of its headers (granian has no such
    deadline: hyper's timer stops with the headers).

    Requests without a body pass straight through. For the others ``receive`` gives up at
    the deadline: the application sees a disconnect, and the client is answered 408 with
    ``connection: close``. A response sent before the body is read whole also closes the
    connection, or hyper would wait for the rest of the body without a deadline.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        complete = timed_out = started = False

        async def timed_receive() -> Message:
            nonlocal complete, timed_out
            if complete or timed_out:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                log_throttled(
                    log,
                    "timeout",
                    "a request body did not arrive within %gs (server.request_timeout): 408",
                    self.timeout,
                    level=logging.INFO,
                )
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 408 below is the answer
            if message["type"] == "http.response.start":
                started = True
                if not complete:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), (b"connection", b"close")],
                    }
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise
        if timed_out and not started:
            await send(
                {"type": "http.response.start", "status": 408, "headers": _REQUEST_TIMEOUT_HEADERS}
            )
            await send({"type": "http.response.body", "body": b"Request Timeout"})


def _has_body(scope: Scope) -> bool:
    if scope["method"] in _BODY_METHODS_WITHOUT_BODY:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return bool(value.strip() != b"0")
            if name == b"transfer-encoding":
                return True
        return False
    return True
