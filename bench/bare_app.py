"""The baselines for bench/decision_bench.py: a bare Starlette endpoint that returns 200
(``app``), and the least any ASGI application can do, a 200 in raw ASGI (``floor``)."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


async def allow(_: Request) -> Response:
    return Response(status_code=200)


app = Starlette(routes=[Route("/api/authz/forward-auth", allow, methods=["GET", "HEAD"])])

_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_BODY = {"type": "http.response.body", "body": b""}


async def floor(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(_START)
    await send(_BODY)
