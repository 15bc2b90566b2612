"""The apiserver's ASGI application (Starlette): ``/healthz``, ``/version``, ``/api`` and
the v1beta1 REST API over a :class:`~kubecore.apiserver.registry.Registry`."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kubecore import __version__
from kubecore.apiserver import routes
from kubecore.apiserver.auth import TokenAuth
from kubecore.apiserver.registry import Registry

API_VERSIONS = ["v1beta1"]
PREFIX = "/api/v1beta1"


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def version(_: Request) -> Response:
    return JSONResponse({"major": "0", "minor": "5", "gitVersion": f"kubecore-{__version__}"})


async def api_root(_: Request) -> Response:
    return JSONResponse({"versions": API_VERSIONS})


async def not_found(request: Request, _: Exception) -> Response:
    # v0.5 answers unknown paths and methods with a plain-text 404 naming the URI.
    return PlainTextResponse(f'Not Found: "{request.url.path}"', status_code=404)


def create_app(registry: Registry, *, tokens: frozenset[str] | None = None) -> Any:
    """The ASGI application serving ``registry``; with ``tokens``, every request but
    ``/healthz`` needs one of them as a bearer token (see :mod:`.auth`)."""
    api_routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/api", api_root, methods=["GET"]),
        Route(f"{PREFIX}/bindings", routes.bind, methods=["POST"]),
        Route(f"{PREFIX}/watch/{{resource}}", routes.watch, methods=["GET"]),
        Route(f"{PREFIX}/{{resource}}", routes.collection, methods=["GET", "POST"]),
        Route(f"{PREFIX}/{{resource}}/{{id}}", routes.item, methods=["GET", "PUT", "DELETE"]),
    ]
    app = Starlette(routes=api_routes, exception_handlers={404: not_found, 405: not_found})
    app.state.registry = registry
    if tokens:
        return TokenAuth(app, tokens)
    return app
