"""The browser login portal as a Starlette sub-app: its flows, middleware and error pages.

Pages (all plain HTML forms, no JavaScript)::

    GET  /, POST /login, POST /logout, POST /logout/everywhere    sign_in.py
    GET|POST /2fa, GET|POST /2fa/enroll                           second_factor.py
    GET  /static/...                                              the stylesheet and icon

``rd`` is the URL the person was on when the gateway sent them here and ``rm`` its method.

Every answer, even a 404, 405 or 413, passes through :class:`SecurityHeaders`. Handlers leave
their failures to the exception handlers here, which choose what the person sees:

===========================  ==========================================================
``PageError``                its message page (a form that expired, an unknown host)
``Redirect``                 303 to its location
``SessionExpired``           back to sign-in, keeping ``rd`` (double submit, "sign out
                             everywhere" meanwhile)
``BadForm``                  400 "the form could not be read"
``Unavailable``              503 "try again in a minute", one log line per kind per interval
``ClientDisconnect``         400 with no body: nobody is listening any more
anything else                500 "something went wrong", logged with its traceback, once per
                             kind per interval
===========================  ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ExceptionHandler, Receive, Scope, Send

from gateway.errors import Unavailable
from gateway.identity.model import DirectoryUnavailable
from gateway.observability.throttle import log_failure
from gateway.portal import forms
from gateway.portal.common import PageError, Portal, Redirect, client_ip, log, redirect
from gateway.portal.headers import SecurityHeaders
from gateway.portal.pages import PACKAGE_STATIC, Pages
from gateway.portal.second_factor import SecondFactorFlow
from gateway.portal.sign_in import SignInFlow
from gateway.runtime import Runtime
from gateway.session.model import SessionExpired

__all__ = ["BRAND", "create_portal", "portal_routes"]

BRAND = "Gateway"
_STATIC_CACHE = "public, max-age=3600"

_BAD_FORM = PageError(400, "Something went wrong", "The form could not be read. Please try again.")
_DIRECTORY_DOWN = PageError(
    503,
    "Sign-in is temporarily unavailable",
    "The sign-in service is temporarily unavailable. Try again in a minute.",
)
_STORE_DOWN = PageError(
    503,
    "Sign-in is temporarily unavailable",
    "Sessions cannot be reached right now. Try again in a minute.",
)
_INTERNAL = PageError(
    500, "Something went wrong", "An unexpected error occurred. Please try again in a moment."
)
_NOT_FOUND = PageError(404, "Page not found", "There is nothing at this address.")


def create_portal(runtime: Runtime, *, theme_dir: Path | None = None) -> Starlette:
    """The portal over ``runtime``, to be mounted at the root of the portal host.

    ``theme_dir`` may hold ``templates/`` and ``static/`` that override the built-in ones
    file by file.
    """
    templates = theme_dir / "templates" if theme_dir is not None else None
    static_dir = theme_dir / "static" if theme_dir is not None else None
    theme_static = static_dir if static_dir is not None and static_dir.is_dir() else None
    pages = Pages(
        brand=BRAND,
        templates_dir=templates,
        static_dirs=tuple(d for d in (theme_static, PACKAGE_STATIC) if d is not None),
    )
    portal = Portal(runtime, pages)
    # A theme's static files first, then the package's own.
    static = StaticFiles(directory=theme_static, packages=[("gateway.portal", "static")])
    app = Starlette(
        routes=[
            *SignInFlow(portal).routes(),
            *SecondFactorFlow(portal).routes(),
            Mount(
                "/static", app=SecurityHeaders(static, cache_control=_STATIC_CACHE), name="static"
            ),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            # Starlette hands a handler for Exception to its outermost middleware, which
            # re-raises after answering (for the server to log the traceback on every
            # request) and answers outside the security headers. This one answers inside
            # them, and logs itself, rate limited.
            Middleware(ExceptionMiddleware, handlers={Exception: _unexpected(portal)}),
            Middleware(RequestBodyLimitMiddleware, max_body_size=forms.MAX_BODY_BYTES),
        ],
        exception_handlers=_exception_handlers(portal),
    )

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        raise _NOT_FOUND

    # A mistyped address gets a page, not Starlette's plain-text 404; a missing static file
    # (StaticFiles raises its own 404) keeps the plain one.
    app.router.default = not_found
    return app


def portal_routes(runtime: Runtime, *, theme_dir: Path | None = None) -> list[BaseRoute]:
    """The portal's routes, to be mounted at the root of the portal host: one catch-all
    mount of :func:`create_portal`, so that every answer gets the portal's headers."""
    return [Mount("", app=create_portal(runtime, theme_dir=theme_dir))]


def _exception_handlers(portal: Portal) -> dict[Any, ExceptionHandler]:
    async def show_message(request: Request, error: Exception) -> Response:
        assert isinstance(error, PageError)
        return portal.message(error)

    async def go_elsewhere(request: Request, error: Exception) -> Response:
        assert isinstance(error, Redirect)
        return redirect(error.location)

    async def sign_in_again(request: Request, error: Exception) -> Response:
        # The session ended meanwhile (double submit, "log out everywhere"): start again at
        # sign-in, keeping where the person was going.
        query = request.url.query
        return redirect("/" + (f"?{query}" if query else ""))

    async def bad_form(request: Request, error: Exception) -> Response:
        return portal.message(_BAD_FORM)

    async def try_again(request: Request, error: Exception) -> Response:
        # Whatever is down, a "try again" page and one log line per kind per interval.
        log_failure(log, error, f"dependency unavailable ip={client_ip(request)}")
        directory = isinstance(error, DirectoryUnavailable)
        return portal.message(_DIRECTORY_DOWN if directory else _STORE_DOWN)

    async def nobody_listening(request: Request, error: Exception) -> Response:
        return Response(status_code=400)

    return {
        PageError: show_message,
        Redirect: go_elsewhere,
        SessionExpired: sign_in_again,
        forms.BadForm: bad_form,
        Unavailable: try_again,
        ClientDisconnect: nobody_listening,
    }


def _unexpected(portal: Portal) -> ExceptionHandler:
    async def something_went_wrong(request: Request, error: Exception) -> Response:
        # Traceback kept, but once per kind of error per interval.
        log_failure(log, error, f"portal error on {request.method} {request.url.path}")
        return portal.message(_INTERNAL)

    return something_went_wrong
