"""The apiserver's ASGI application (Starlette)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kubecore import __version__

API_VERSIONS = ["v1beta1"]


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def version(_: Request) -> Response:
    return JSONResponse({"major": "0", "minor": "5", "gitVersion": f"kubecore-{__version__}"})


async def api_root(_: Request) -> Response:
    return JSONResponse({"versions": API_VERSIONS})


async def not_found(request: Request, _: Exception) -> Response:
    # v0.5 answers unknown paths and methods with a plain-text 404 naming the URI.
    return PlainTextResponse(f'Not Found: "{request.url.path}"', status_code=404)


def create_app() -> Starlette:
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/api", api_root, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
