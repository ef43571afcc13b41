"""Build the Starlette application from :class:`Settings`: routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config.settings import Settings, load_settings
from gateway.credentials.authenticator import MachineAuthenticator
from gateway.decision.endpoint import AuthzEndpoint
from gateway.decision.request import BadRequest, ProxyTrust
from gateway.identity.model import create_user_backend
from gateway.identity.second_factor import SecondFactor
from gateway.observability.logging import configured_secrets, register_secrets
from gateway.observability.metrics import Metrics
from gateway.portal.app import portal_routes
from gateway.runtime import Runtime
from gateway.security.crypto import Keyring
from gateway.security.regulation import Regulator
from gateway.session.manager import SessionManager
from gateway.session.stores import open_session_store
from gateway.snapshot import Snapshots
from gateway.storage import open_storage
from gateway.validation import validate

__all__ = ["build_runtime", "close_runtime", "create_app", "create_app_from_environment"]

log = logging.getLogger("gateway")


async def build_runtime(settings: Settings) -> Runtime:
    """Open every component; raises ConfigError when :func:`validate` (what ``gateway
    check`` runs) finds a problem, before anything is opened."""
    # Before anything can log: a secret that slips into a message comes out as [redacted].
    register_secrets(configured_secrets(settings))
    keyring = Keyring.from_texts(settings.secrets.encryption_keys)
    hash_key = settings.secrets.hash_key.encode()
    policy = (await asyncio.to_thread(validate, settings)).policy
    opened: list[Any] = [policy]
    try:
        storage = await open_storage(settings)
        opened.append(storage)
        store = await open_session_store(settings, keyring)
        opened.append(store)
        sessions = SessionManager.from_settings(settings, store, hash_key)
        opened[-1] = sessions  # closes the store too
        await sessions.start()  # cached sessions follow every replica's changes
        regulator = Regulator.from_settings(settings, store)
        users = create_user_backend(settings)
        await users.start()
        opened.append(users)
        second_factor = SecondFactor.from_settings(
            settings, storage.second_factor, hash_key, keyring=keyring
        )
        machines = MachineAuthenticator.from_settings(settings, storage=storage)
        await machines.start()
        opened.append(machines)
        snapshots = Snapshots(policy, machines)
        # Polling starts only now, with every reload building a whole new snapshot.
        await snapshots.start()
    except BaseException:
        for component in reversed(opened):
            await _close(component)
        raise
    metrics = Metrics()
    metrics.gauge(
        "gateway_policy_generation",
        "Policy loads since start (1 = initial load).",
        lambda: float(policy.generation),
    )
    metrics.gauge(
        "gateway_policy_reload_failures",
        "Policy reloads rejected because the new file was invalid.",
        lambda: float(policy.reload_failures),
    )
    metrics.gauge(
        "gateway_policy_last_reload_ok",
        "1 when the policy files on disk are the ones in force.",
        lambda: 0.0 if policy.last_error else 1.0,
    )
    return Runtime(
        settings=settings,
        keyring=keyring,
        hash_key=hash_key,
        policy=policy,
        snapshots=snapshots,
        sessions=sessions,
        users=users,
        regulator=regulator,
        storage=storage,
        second_factor=second_factor,
        metrics=metrics,
        machines=machines,
    )


async def _close(component: Any) -> None:
    closer = getattr(component, "close", None) or getattr(component, "stop", None)
    if closer is None:
        return
    try:
        await closer()
    except Exception:
        log.exception("error while closing %s", type(component).__name__)


async def close_runtime(runtime: Runtime) -> None:
    """Stop background tasks and close connections, in reverse order of opening."""
    for component in (
        runtime.machines,
        runtime.users,
        runtime.sessions,  # closes its store
        runtime.storage,
        runtime.policy,
    ):
        if component is not None:
            await _close(component)


class ForwardedHeaders:
    """For the portal only: take scheme, host and client address from a trusted proxy.

    The decision endpoints do not use this; they must see the real peer to decide trust.
    """

    def __init__(self, app: ASGIApp, trust: ProxyTrust) -> None:
        self._app = app
        self._trust = trust

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            peer = scope["client"][0]
            if self._trust.is_trusted(peer):
                headers = dict(scope["headers"])
                scope = dict(scope)
                proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
                forwarded_for = headers.get(b"x-forwarded-for")
                if forwarded_for:
                    try:
                        client = self._trust.client_address(peer, forwarded_for.decode("latin-1"))
                        ipaddress.ip_address(client)
                    except (BadRequest, ValueError):
                        response = PlainTextResponse("Bad Request", status_code=400)
                        await response(scope, receive, send)
                        return
                    scope["client"] = (client, 0)
                forwarded_host = headers.get(b"x-forwarded-host")
                if forwarded_host:
                    scope["headers"] = [
                        (name, value) for name, value in scope["headers"] if name != b"host"
                    ] + [(b"host", forwarded_host)]
        await self._app(scope, receive, send)


def _health(_: Request) -> Response:
    return JSONResponse({"status": "OK"})


_METHOD_NOT_ALLOWED = PlainTextResponse(
    "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
)


class GatewayApp:
    """The ASGI application: the two decision endpoints by exact path, all else via Starlette.

    The hot path skips Starlette's router: one dict lookup on the path, then the endpoint.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._trust = ProxyTrust(settings.server.trusted_proxies)
        self._fast: dict[str, ASGIApp] = {}
        self._router: ASGIApp | None = None
        self._starlette = Starlette(routes=[Mount("", app=self._dispatch)], lifespan=self._lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                if scope["method"] in ("GET", "HEAD"):
                    await endpoint(scope, receive, send)
                else:
                    await _METHOD_NOT_ALLOWED(scope, receive, send)
                return
        await self._starlette(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            await PlainTextResponse("Service Unavailable", status_code=503)(scope, receive, send)
            return
        await self._router(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        runtime = await build_runtime(self.settings)
        self.runtime = runtime
        self._router = Router(routes=_routes(runtime, self._trust))
        self._fast = {
            "/api/authz/forward-auth": AuthzEndpoint(runtime, "forward-auth"),
            "/api/authz/auth-request": AuthzEndpoint(runtime, "auth-request"),
        }
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # garbage collector's full passes, which would otherwise rescan it under load.
        gc.collect()
        gc.freeze()
        log.info(
            "gateway ready: %d policy rule(s), session store %s, users %s",
            len(runtime.snapshots.current.engine.rules),
            self.settings.session.store,
            self.settings.authentication.backend,
        )
        try:
            yield
        finally:
            self._fast = {}
            self._router = None
            self.runtime = None
            await close_runtime(runtime)


def create_app(settings: Settings) -> GatewayApp:
    """The gateway as an ASGI application; components open in the lifespan."""
    return GatewayApp(settings)


def _routes(runtime: Runtime, trust: ProxyTrust) -> list[BaseRoute]:
    policy = runtime.policy

    async def ready(_: Request) -> Response:
        body: dict[str, Any] = {"status": "OK", "policy": {"generation": policy.generation}}
        status = 200
        if policy.last_error:
            body["status"] = "DEGRADED"
            body["policy"]["error"] = policy.last_error
        # Both at once: each has its own deadline, and a probe should wait for the longer one
        # only, not their sum.
        session_store, storage = await asyncio.gather(
            _answers(runtime.sessions.ping()), _answers(runtime.storage.ping())
        )
        for name, answers in (("session_store", session_store), ("storage", storage)):
            if not answers:
                body["status"] = "UNAVAILABLE"
                body[name] = "unreachable"
                status = 503
        return JSONResponse(body, status_code=status)

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(
            runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return [
        Route("/api/health", _health, methods=["GET", "HEAD"]),
        Route("/api/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("", app=ForwardedHeaders(Router(routes=portal_routes(runtime)), trust)),
    ]


async def _answers(ping: Awaitable[None]) -> bool:
    """Whether a store answered its ping (the reason is logged by the store, rate limited)."""
    try:
        await ping
    except Exception:
        return False
    return True


def create_app_from_environment() -> GatewayApp:
    """uvicorn factory: reads the configuration named by ``$GATEWAY_CONFIG``."""
    from gateway.observability.logging import configure_logging

    settings = load_settings(os.environ["GATEWAY_CONFIG"])
    configure_logging(settings.log.level, settings.log.format)
    return create_app(settings)
