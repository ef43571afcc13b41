"""The authorisation endpoints: ``/api/authz/forward-auth`` (Caddy, Traefik) and
``/api/authz/auth-request`` (nginx).

This is the hot path of the whole fleet, so it is a bare ASGI callable: headers are read
straight from the scope, everything that can be is computed in ``__init__``, and the only
awaits are the session lookup (cached) and, for ``Authorization: Basic``, the user backend
(cached briefly). Any exception ends in a deny: the last ``except`` answers 503, never 200.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from gateway.credentials.authenticator import MachineAuthenticator, MachineFailure
from gateway.decision.authenticate import (
    EMPTY_REMOTE_HEADERS,
    Authenticated,
    Authenticator,
    BasicRejected,
    header_value,
    is_basic,
    remote_headers,
)
from gateway.decision.request import AccessRequest, BadRequest, ProxyTrust, read_headers
from gateway.decision.request import from_auth_request as _parse_auth_request
from gateway.decision.request import from_forward_auth as _parse_forward_auth
from gateway.levels import AuthLevel, Level
from gateway.observability.throttle import log_failure, log_throttled
from gateway.policy import ANONYMOUS as ANONYMOUS_SUBJECT
from gateway.policy import Subject
from gateway.runtime import Runtime
from gateway.snapshot import MachineMemoKey, PolicySnapshot

__all__ = ["AuthzEndpoint"]

log = logging.getLogger("gateway.decision")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Flavour = Literal["forward-auth", "auth-request"]

_NO_STORE = (b"cache-control", b"no-store")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_MACHINE_MEMO_SECONDS = 1.0
_LENGTHS = {length: str(length).encode() for length in range(64)}
_REDIRECT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MACHINE_LEVEL = AuthLevel.ONE_FACTOR
"""A machine credential is one factor: enough for ``one_factor``, never for ``two_factor``."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    why: str = ""
    """For the debug log: which rule or check decided (never sent to the client)."""


class AuthzEndpoint:
    """One authorisation endpoint; ``flavour`` picks the request format and answer rules."""

    def __init__(self, runtime: Runtime, flavour: Flavour) -> None:
        self._runtime = runtime
        self._flavour = flavour
        self._parse = _parse_forward_auth if flavour == "forward-auth" else _parse_auth_request
        server = runtime.settings.server
        self._trust = ProxyTrust(server.trusted_proxies, paths=server.paths)
        self._sessions = runtime.sessions
        # The policy in force, read once per request; its memos (API-host membership,
        # machine identities) die with it when a reload swaps in the next one.
        self._snapshots = runtime.snapshots
        self._metrics = runtime.metrics
        self._authenticator = Authenticator(runtime)
        self._machines: MachineAuthenticator | None = runtime.machines
        self._portal = {
            cookie.domain: cookie.portal_url for cookie in runtime.settings.session.cookies
        }
        self._label = flavour
        # Decided once: the level is set before the app is built, and a disabled debug log
        # must cost the hot path nothing.
        self._debug = log.isEnabledFor(logging.DEBUG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            answer = await self._answer(scope)
        except Exception as error:
            # Fail closed: whatever went wrong, this request does not pass. A store or the
            # directory being down is one line per kind per interval, anything else keeps its
            # traceback, rate limited too: an outage must not write a traceback per request.
            log_failure(log, error, "authorisation failed; denying the request")
            answer = Answer(503, [_TEXT, _NO_STORE, _NOSNIFF], b"Service Unavailable")
        if self._flavour == "auth-request":
            answer = _for_nginx(answer)
        self._metrics.decision(self._label, answer.status, time.perf_counter() - started)
        if self._debug:
            log.debug("%s: %d %s", self._label, answer.status, answer.why or "-")
        # An explicit length keeps uvicorn from switching to chunked encoding.
        length = len(answer.body)
        answer.headers.append((b"content-length", _LENGTHS.get(length) or str(length).encode()))
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        body = b"" if scope.get("method") == "HEAD" else answer.body
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> Answer:
        client = scope.get("client")
        peer = client[0] if client else ""
        try:
            headers = read_headers(scope["headers"])
            access = self._parse(headers, peer, self._trust)
        except BadRequest as error:
            return Answer(400, [_TEXT, _NO_STORE, _NOSNIFF], str(error).encode(), why=str(error))
        snapshot = self._snapshots.current
        cookie_domain = self._sessions.cookie_domain_for(access.host)
        machines = self._machines
        if machines is not None and _is_api_host(snapshot, access.host, cookie_domain is not None):
            return await self._machine_answer(machines, snapshot, headers, access)
        if cookie_domain is None:
            return Answer(
                400, [_TEXT, _NO_STORE, _NOSNIFF], b"the target host is outside every cookie domain"
            )

        # Basic credentials on a host that passes everyone belong to the app behind it (WebDAV,
        # a registry): not checked, not counted toward a ban. Only when no rule about the user
        # could match (not `potential`); then the user's own decision is this one too.
        decision = None
        if is_basic(headers):
            anonymous = snapshot.engine.decide(access.target, ANONYMOUS_SUBJECT)
            if anonymous.level == Level.BYPASS and not anonymous.potential:
                decision = anonymous
        try:
            identity = await self._authenticator.identify(
                headers, access, cookie_domain, basic=decision is None
            )
        except BasicRejected:
            return Answer(
                401,
                [_TEXT, _NO_STORE, _NOSNIFF, (b"www-authenticate", b'Basic realm="gateway"')],
                b"Unauthorized",
            )

        if decision is None:
            decision = snapshot.engine.decide(access.target, identity.subject)
        required = decision.level
        if required.satisfied_by(identity.level):
            answer = self._allow(identity)
        elif required == Level.DENY and (identity.level > AuthLevel.NONE or not decision.potential):
            answer = Answer(403, [_TEXT, _NO_STORE, _NOSNIFF], b"Forbidden")
        else:
            # Not enough yet: anonymous, or one factor where two are needed, or a deny that
            # only potentially matched an anonymous request (the user's rule may allow).
            answer = self._unauthorized(headers, access, cookie_domain.domain)
        if self._debug:
            rule = (
                f"rule #{decision.rule.position} at {decision.rule.source}"
                if decision.rule
                else "default policy"
            )
            answer.why = (
                f"{access.method} {access.host}{access.target.path} "
                f"user={identity.username or '-'} ip={access.client_ip} "
                f"level={level_name(required)} by {rule}"
                + (" (potential match)" if decision.potential else "")
            )
        return answer

    async def _machine_answer(
        self,
        machines: MachineAuthenticator,
        snapshot: PolicySnapshot,
        headers: dict[str, str],
        access: AccessRequest,
    ) -> Answer:
        """API hosts: never a redirect; 401/403/429 with a small JSON body."""
        engine = snapshot.engine
        declared = snapshot.machines
        memo_key: MachineMemoKey = (
            headers.get("x-api-key"),
            headers.get("authorization"),
            headers.get("x-client-cert-der-b64") if access.trusted else None,
            access.host,
            access.client_ip,
        )
        remembered = snapshot.machine_memo.get(memo_key)
        if remembered is not None and remembered[2] > time.monotonic():
            subject, identity_headers, _ = remembered
            if engine.decide(access.target, subject).level.satisfied_by(_MACHINE_LEVEL):
                return Answer(200, list(identity_headers))
            return _machine_failure(_FORBIDDEN)
        if not machines.presented(headers, access.trusted):
            decision = engine.decide(access.target, ANONYMOUS_SUBJECT)
            if decision.level == Level.BYPASS and not decision.potential:
                # A bypass rule still keeps the host's network allowlist.
                api_host = declared.hosts.lookup(access.host) if declared else None
                if api_host is not None and access.client_ip not in api_host.networks:
                    return _machine_failure(_FORBIDDEN)
                return Answer(200, [*EMPTY_REMOTE_HEADERS])
        result = await machines.authenticate(
            headers, access.client_ip, access.trusted, host=access.host, declarations=declared
        )
        if isinstance(result, MachineFailure):
            if result.status >= 500:
                # A store is down: one line per interval, not one per refused request.
                log_throttled(log, ("machine", result.reason), "machine request: %s", result.reason)
            elif result.reason:
                log.info("machine request refused on %s: %s", access.host, result.reason)
            return _machine_failure(result)
        subject = Subject.of(None, result.groups, result.credentials)
        decision = engine.decide(access.target, subject)
        identity_headers = [
            *remote_headers(result.username, tuple(result.groups), result.email, result.name),
            *(
                (name.lower().encode("latin-1"), header_value(value))
                for name, value in result.upstream_headers.items()
            ),
        ]
        # Into this snapshot's memo: after a reload while this request waited, the identity
        # (which may rest on a key or host that is gone) is never seen again.
        if not machines.rate_limited:
            expires = time.monotonic() + _MACHINE_MEMO_SECONDS
            size = sum(len(part) for part in memo_key[:4] if part) + _header_bytes(identity_headers)
            snapshot.machine_memo.put(memo_key, (subject, identity_headers, expires), size)
        if not decision.level.satisfied_by(_MACHINE_LEVEL):
            # deny, or two_factor: a machine credential is one factor and cannot do more.
            return _machine_failure(_FORBIDDEN)
        return Answer(200, list(identity_headers))

    def _allow(self, identity: Authenticated) -> Answer:
        # No Cache-Control on a 200: Caddy and nginx consume it and never relay it to a
        # browser, and every header costs uvicorn a validation on the hottest path.
        return Answer(200, [*identity.remote])

    def _unauthorized(self, headers: dict[str, str], access: AccessRequest, domain: str) -> Answer:
        portal = self._portal[domain]
        location = f"{portal}/?rd={quote(access.url, safe='')}&rm={access.method}"
        accept = headers.get("accept", "")
        api_client = headers.get("x-requested-with", "").lower() == "xmlhttprequest" or (
            accept != "" and "text/html" not in accept
        )
        if api_client:
            return Answer(401, [_TEXT, _NO_STORE, _NOSNIFF], b"Unauthorized")
        status = 302 if access.method in _REDIRECT_METHODS else 303
        return Answer(status, [_TEXT, _NO_STORE, _NOSNIFF, (b"location", location.encode())], b"")


_FORBIDDEN = MachineFailure(403, "forbidden")


def _is_api_host(snapshot: PolicySnapshot, host: str, ours: bool) -> bool:
    """Declared API hosts, and hosts named like one (``api.*``) under a cookie domain."""
    known = snapshot.api_hosts.get(host)
    if known is None:
        declared = snapshot.machines
        api_host = declared.hosts.lookup(host) if declared is not None else None
        known = snapshot.api_hosts.put(
            host, api_host is not None and (api_host.declared or ours), len(host)
        )
    return known


def _header_bytes(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) for name, value in headers)


def _machine_failure(failure: MachineFailure) -> Answer:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in failure.headers().items()
    ]
    return Answer(failure.status, headers, failure.body(), why=failure.reason or failure.error)


def level_name(level: Level) -> str:
    return level.name.lower()


def _for_nginx(answer: Answer) -> Answer:
    """nginx's auth_request turns anything but 2xx/401/403 into a 500, so map the rest."""
    if answer.status < 300 or answer.status in (401, 403):
        return answer
    if answer.status in (302, 303):
        # nginx follows the portal through `error_page 401 =302 $redirection_url`.
        return Answer(401, answer.headers, b"Unauthorized", why=answer.why)
    return Answer(403, [_TEXT, _NO_STORE, _NOSNIFF], b"Forbidden", why=answer.why)
