"""The baseline for bench/decision_bench.py: a bare Starlette endpoint that returns 200."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def allow(_: Request) -> Response:
    return Response(status_code=200)


app = Starlette(routes=[Route("/api/authz/forward-auth", allow, methods=["GET", "HEAD"])])
