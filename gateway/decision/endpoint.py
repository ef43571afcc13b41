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
from gateway.decision.authenticate import Authenticated, Authenticator, BasicRejected
from gateway.decision.request import AccessRequest, BadRequest, ProxyTrust
from gateway.decision.request import from_auth_request as _parse_auth_request
from gateway.decision.request import from_forward_auth as _parse_forward_auth
from gateway.policy import ANONYMOUS as ANONYMOUS_SUBJECT
from gateway.policy import Level, Subject
from gateway.runtime import Runtime
from gateway.session.model import AuthLevel

__all__ = ["AuthzEndpoint"]

log = logging.getLogger("gateway.decision")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Flavour = Literal["forward-auth", "auth-request"]

# Headers the endpoint reads; everything else in the scope is skipped without decoding.
_WANTED = frozenset(
    {
        b"x-forwarded-method",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-uri",
        b"x-forwarded-for",
        b"x-original-url",
        b"x-original-method",
        b"cookie",
        b"authorization",
        b"accept",
        b"x-requested-with",
        b"x-api-key",
        b"x-client-cert-der-b64",
        b"x-client-cert-fingerprint",
    }
)
_REMOTE_NAMES = (b"remote-user", b"remote-groups", b"remote-email", b"remote-name")
_NO_STORE = (b"cache-control", b"no-store")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_JSON = (b"content-type", b"application/json")
_EMPTY_REMOTE = [(name, b"") for name in _REMOTE_NAMES]
_REDIRECT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _header_value(value: str) -> bytes:
    """A directory value as a header: UTF-8, with anything that could split headers removed."""
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", "").encode()


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


class AuthzEndpoint:
    """One authorisation endpoint; ``flavour`` picks the request format and answer rules."""

    def __init__(self, runtime: Runtime, flavour: Flavour) -> None:
        self._runtime = runtime
        self._flavour = flavour
        self._parse = _parse_forward_auth if flavour == "forward-auth" else _parse_auth_request
        self._trust = ProxyTrust(runtime.settings.server.trusted_proxies)
        self._sessions = runtime.sessions
        self._policy = runtime.policy
        self._metrics = runtime.metrics
        self._authenticator = Authenticator(runtime)
        self._machines: MachineAuthenticator | None = runtime.machines
        self._portal = {
            cookie.domain: cookie.portal_url for cookie in runtime.settings.session.cookies
        }
        self._label = flavour

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            answer = await self._answer(scope)
        except Exception:
            # Fail closed: whatever went wrong, this request does not pass.
            log.exception("authorisation failed; denying the request")
            answer = Answer(503, [_TEXT, _NO_STORE], b"Service Unavailable")
        if self._flavour == "auth-request":
            answer = _for_nginx(answer)
        self._metrics.decision(self._label, answer.status, time.perf_counter() - started)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        body = b"" if scope.get("method") == "HEAD" else answer.body
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> Answer:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            if raw_name in _WANTED:
                headers[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
        client = scope.get("client")
        peer = client[0] if client else ""
        try:
            access = self._parse(headers, peer, self._trust)
        except BadRequest as error:
            return Answer(400, [_TEXT, _NO_STORE], str(error).encode())
        machines = self._machines
        if machines is not None and machines.is_api_host(access.host):
            return await self._machine_answer(machines, headers, access)
        cookie_domain = self._sessions.cookie_domain_for(access.host)
        if cookie_domain is None:
            return Answer(
                400, [_TEXT, _NO_STORE], b"the target host is outside every cookie domain"
            )

        try:
            identity = await self._authenticator.identify(headers, access, cookie_domain)
        except BasicRejected:
            return Answer(
                401,
                [_TEXT, _NO_STORE, (b"www-authenticate", b'Basic realm="gateway"')],
                b"Unauthorized",
            )

        decision = self._policy.current.decide(access.target, identity.subject)
        required = decision.level
        if required == Level.BYPASS:
            return self._allow(identity)
        level = identity.level
        if required == Level.DENY:
            if level > AuthLevel.NONE or not decision.potential:
                return Answer(403, [_TEXT, _NO_STORE], b"Forbidden")
        elif (required == Level.ONE_FACTOR and level >= AuthLevel.ONE_FACTOR) or (
            required == Level.TWO_FACTOR and level >= AuthLevel.TWO_FACTOR
        ):
            return self._allow(identity)
        return self._unauthorized(headers, access, cookie_domain.domain)

    async def _machine_answer(
        self, machines: MachineAuthenticator, headers: dict[str, str], access: AccessRequest
    ) -> Answer:
        """API hosts: never a redirect; 401/403/429 with a small JSON body."""
        engine = self._policy.current
        if not machines.presented(headers, access.trusted):
            decision = engine.decide(access.target, ANONYMOUS_SUBJECT)
            if decision.level == Level.BYPASS and not decision.potential:
                # A bypass rule still keeps the host's network allowlist.
                api_host = machines.hosts.lookup(access.host)
                if api_host is not None and access.client_ip not in api_host.networks:
                    return _machine_failure(_FORBIDDEN)
                return Answer(200, [_NO_STORE, *_EMPTY_REMOTE])
        result = await machines.authenticate(
            headers, access.client_ip, access.trusted, host=access.host
        )
        if isinstance(result, MachineFailure):
            if result.reason:
                log.info("machine request refused on %s: %s", access.host, result.reason)
            return _machine_failure(result)
        subject = Subject(None, frozenset(result.groups), result.credentials)
        decision = engine.decide(access.target, subject)
        if decision.level not in (Level.BYPASS, Level.ONE_FACTOR):
            # deny, or two_factor: a machine credential is one factor and cannot do more.
            return _machine_failure(_FORBIDDEN)
        answer_headers = [
            _NO_STORE,
            (b"remote-user", _header_value(result.username)),
            (b"remote-groups", _header_value(",".join(result.groups))),
            (b"remote-email", _header_value(result.email)),
            (b"remote-name", _header_value(result.name)),
        ]
        answer_headers.extend(
            (name.lower().encode("latin-1"), _header_value(value))
            for name, value in result.upstream_headers.items()
        )
        return Answer(200, answer_headers)

    def _allow(self, identity: Authenticated) -> Answer:
        headers = [_NO_STORE]
        if identity.username is None:
            headers.extend(_EMPTY_REMOTE)
        else:
            headers.extend(
                (
                    (b"remote-user", _header_value(identity.username)),
                    (b"remote-groups", _header_value(",".join(identity.groups))),
                    (b"remote-email", _header_value(identity.email)),
                    (b"remote-name", _header_value(identity.display_name)),
                )
            )
        return Answer(200, headers)

    def _unauthorized(self, headers: dict[str, str], access: AccessRequest, domain: str) -> Answer:
        portal = self._portal[domain]
        location = f"{portal}/?rd={quote(access.url, safe='')}&rm={access.method}"
        accept = headers.get("accept", "")
        api_client = headers.get("x-requested-with", "").lower() == "xmlhttprequest" or (
            accept != "" and "text/html" not in accept
        )
        if api_client:
            return Answer(401, [_TEXT, _NO_STORE], b"Unauthorized")
        status = 302 if access.method in _REDIRECT_METHODS else 303
        return Answer(status, [_TEXT, _NO_STORE, (b"location", location.encode())], b"")


_FORBIDDEN = MachineFailure(403, "forbidden")


def _machine_failure(failure: MachineFailure) -> Answer:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in failure.headers().items()
    ]
    return Answer(failure.status, headers, failure.body())


def _for_nginx(answer: Answer) -> Answer:
    """nginx's auth_request turns anything but 2xx/401/403 into a 500, so map the rest."""
    if answer.status < 300 or answer.status in (401, 403):
        return answer
    if answer.status in (302, 303):
        # nginx follows the portal through `error_page 401 =302 $redirection_url`.
        return Answer(401, answer.headers, b"Unauthorized")
    return Answer(403, [_TEXT, _NO_STORE], b"Forbidden")
