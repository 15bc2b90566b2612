"""A manifest HTTP server for the source tests: a Starlette app whose body, ETag and
status the test changes, served by hypercorn on 127.0.0.1 and stoppable mid-test."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubecore.http import serve_asgi


class ManifestServer:
    """Serves ``body`` at ``/manifests``; ``etag`` adds an ETag and honours
    If-None-Match with 304, ``last_modified`` (a date string) likewise with
    If-Modified-Since; any ``status`` but 200 is answered instead of the body."""

    def __init__(self, body: bytes = b"[]", *, etag: bool = True,
                 last_modified: str | None = None) -> None:
        self.body = body
        self.etag = etag
        self.last_modified = last_modified
        self.status = 200
        self.requests = 0
        self.not_modified = 0
        self.url = ""
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()

    def _tag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest() + '"'

    async def _serve(self, request: Request) -> Response:
        self.requests += 1
        if self.status != 200:
            return Response(b"down", status_code=self.status)
        headers = {"ETag": self._tag()} if self.etag else {}
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        if (self.etag and request.headers.get("if-none-match") == self._tag()) or (
            self.last_modified is not None
            and request.headers.get("if-modified-since") == self.last_modified
        ):
            self.not_modified += 1
            return Response(status_code=304, headers=headers)
        return Response(self.body, headers=headers, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/manifests", self._serve)])

    async def start(self, nursery: trio.Nursery, port: int = 0) -> str:
        """Serve on ``port`` (0 = any); returns the manifest URL."""
        self._done = trio.Event()
        scope = trio.CancelScope()
        self._scope = scope
        done = self._done

        async def run(*, task_status: trio.TaskStatus[str]) -> None:
            try:
                with scope:
                    await serve_asgi(self.app(), name="test-manifests", address="127.0.0.1",
                                     port=port, graceful_timeout=0.1, task_status=task_status)
            finally:
                done.set()

        base: str = await nursery.start(run)
        self.url = base.rstrip("/") + "/manifests"
        return self.url

    async def stop(self) -> None:
        """Stop serving: the port refuses connections afterwards."""
        assert self._scope is not None
        self._scope.cancel()
        await self._done.wait()


@asynccontextmanager
async def manifest_server(body: bytes = b"[]", *, etag: bool = True
                          ) -> AsyncIterator[tuple[ManifestServer, trio.Nursery]]:
    server = ManifestServer(body, etag=etag)
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        yield server, nursery
        nursery.cancel_scope.cancel()
