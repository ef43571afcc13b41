"""``gateway serve``: run the gateway under uvicorn or granian (docs/performance.md)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import TYPE_CHECKING

from gateway.config.arguments import CONFIG_ENV, MISSING_CONFIG, add_config_argument
from gateway.config.settings import load_settings_with_warnings
from gateway.config.yaml import ConfigError, Issue
from gateway.observability.logging import configure_logging, configured_secrets, register_secrets
from gateway.validation import validate

if TYPE_CHECKING:
    from gateway.config.settings import Settings
    from gateway.connections import ConnectionLimits

__all__ = ["add_arguments", "run"]

SERVER_ENV = "GATEWAY_SERVER"
SERVERS = ("uvicorn", "granian")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--address", help="listen address (default: server.address)")
    parser.add_argument("--port", type=int, help="listen port (default: server.port)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (several need the sqlite or redis session store; default 1)",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=None,
        help=f"the HTTP server (default: ${SERVER_ENV}, else server.implementation)",
    )


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve until interrupted."""
    if not args.config:
        print(f"error: {MISSING_CONFIG}", file=sys.stderr)
        return 2
    chosen = args.server or os.environ.get(SERVER_ENV) or None
    if chosen is not None and chosen not in SERVERS:
        print(
            f"error: ${SERVER_ENV} is {chosen!r}: expected one of {', '.join(SERVERS)}",
            file=sys.stderr,
        )
        return 2
    warnings: list[Issue] = []
    try:
        settings, warnings = load_settings_with_warnings(args.config)
        # What start-up would find (and `gateway check` reports), said here without a
        # traceback, before the server starts.
        warnings.extend(validate(settings).warnings)
    except ConfigError as error:
        for issue in [*warnings, *error.warnings]:
            print(f"warning: {issue}", file=sys.stderr)
        for issue in error.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.workers > 1 and settings.session.store == "memory":
        print(
            "error: the memory session store cannot be shared by several workers; "
            "use session.store: sqlite or redis",
            file=sys.stderr,
        )
        return 2
    register_secrets(configured_secrets(settings))
    configure_logging(settings.log.level, settings.log.format)
    from gateway.connections import (
        ConnectionLimits,
        connection_budget,
        granian_header_timeout,
        raise_open_files_limit,
    )

    # Before the workers start: they inherit the limit, and each sizes nothing itself.
    open_files = raise_open_files_limit()
    max_connections, problem = connection_budget(settings, open_files)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    limits = ConnectionLimits.from_settings(settings, max_connections)
    host = args.address or settings.server.address
    port = args.port or settings.server.port
    implementation = chosen or settings.server.implementation
    logging.getLogger("gateway.server").info(
        "connection limits: %d connections per process (open files %d), headers up to %d "
        "bytes, requests within %gs, idle connections closed after %gs (server %s)",
        max_connections,
        open_files,
        settings.server.max_header_size,
        settings.server.request_timeout,
        # granian closes idle connections with its header timer (docs/performance.md).
        granian_header_timeout(limits)
        if implementation == "granian"
        else math.ceil(limits.idle_timeout),
        implementation,
    )
    if implementation == "granian":
        return _run_granian(settings, limits, host, port, args.workers)
    return _run_uvicorn(limits, host, port, args.workers)


def _run_uvicorn(limits: ConnectionLimits, host: str, port: int, workers: int) -> int:
    import uvicorn

    from gateway.connections import ReusePortMultiprocess, ServerConfig, reuse_port_socket

    config = ServerConfig(
        "gateway.app:create_app_from_environment",
        limits=limits,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # The decision endpoints must see the real peer to decide whom to trust, so uvicorn
        # must not rewrite the client address; the portal reads forwarded headers itself.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,
    )
    # What uvicorn.run() does, with a configuration it cannot build itself.
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            try:
                # Nothing listens there yet (SO_REUSEPORT would join another server's group).
                reuse_port_socket(host, port, reuse_port=False).close()
            except OSError as error:
                print(f"error: cannot listen on {host}:{port}: {error}", file=sys.stderr)
                return 3
            ReusePortMultiprocess(config).run()
            return 0
        server.run()
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else 3


def _run_granian(
    settings: Settings, limits: ConnectionLimits, host: str, port: int, workers: int
) -> int:
    from gateway.connections import serve_granian

    try:
        serve_granian(settings, limits, host=host, port=port, workers=workers)
    except KeyboardInterrupt:
        return 0
    return 0
