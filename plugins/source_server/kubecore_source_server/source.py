"""Manifests POSTed to the kubelet's server: ``POST /container`` and ``POST /containers``.

Every accepted POST replaces all of this source's pods (a full snapshot); a body with
any invalid manifest is refused as a whole with 400 and every cause, and the previous
pods stay. The source yields a snapshot at start, then one per accepted POST; snapshots
nobody has read yet are superseded by newer ones.

With a ``state_file``, the last accepted body is written there (atomically, before the
POST is answered) and decoded again at start, so a restarted kubelet starts from the
pods last POSTed and stops none of them; without one (or with no file yet) the first
snapshot is empty. A state file that cannot be read or decoded is logged and ignored.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio
from kubecore_source_http.manifests import MAX_BODY_BYTES, all_causes, decode_pods, split_items
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kubecore.api import Cause, InvalidObject, Reason
from kubecore.kubelet.sources import Snapshot
from kubecore.log import get_logger

log = get_logger("kubecore.source_server")

SOURCE_NAME = "http"


def _status(code: int, reason: str, message: str, causes: Sequence[Cause] = ()) -> Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1beta1", "status": "Failure",
                            "code": code, "reason": reason, "message": message}
    if causes:
        body["details"] = {"causes": [{"reason": c.reason, "message": c.message,
                                       "field": c.field} for c in causes]}
    return JSONResponse(body, status_code=code)


class ServerSource:
    """The source behind ``POST /container`` and ``POST /containers``.

    ``token``: when set, requests need ``Authorization: Bearer <token>``.
    ``state_file``: where the last accepted body is kept across restarts (see the
    module docstring).
    """

    name = SOURCE_NAME

    def __init__(self, token: str | None = None, state_file: Path | None = None) -> None:
        self.token = token
        self.state_file = state_file
        self.accepted = 0
        self._current = Snapshot(pods=[])
        self._version = 0
        self._changed = trio.Event()
        self._loaded = False
        self._write_lock = trio.Lock()

    def _load(self) -> Snapshot:
        """The snapshot of the saved body; empty when there is none or it is unusable.
        Blocks (file system)."""
        path = self.state_file
        if path is None or not path.exists():
            return Snapshot(pods=[])
        try:
            saved = json.loads(path.read_text())
            origin = f"{saved['path']} (saved in {path})"
            data = base64.b64decode(saved["body"])
            decoded = decode_pods(data, origin, SOURCE_NAME)
        except (OSError, ValueError, KeyError, TypeError, InvalidObject) as exc:
            log.warning("saved manifests unusable; starting without them", path=str(path),
                        error=str(exc) or type(exc).__name__)
            return Snapshot(pods=[])
        if decoded.rejected:
            log.warning("saved manifests no longer valid; starting without them",
                        path=str(path))
            return Snapshot(pods=[])
        log.info("manifests restored", path=str(path), pods=[pod.id for pod in decoded.pods])
        return Snapshot(pods=decoded.pods)

    def _save(self, request_path: str, data: bytes) -> None:
        """Write the accepted body atomically (temporary file, fsync, rename). Blocks."""
        path = self.state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"path": request_path, "body": base64.b64encode(data).decode()})
        scratch = path.with_name(f".{path.name}.tmp")
        with scratch.open("w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(scratch, path)

    def routes(self) -> Sequence[BaseRoute]:
        """``POST /container`` (one manifest) and ``POST /containers`` (a list)."""
        return [Route("/container", self._one, methods=["POST"]),
                Route("/containers", self._many, methods=["POST"])]

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """The saved (or empty) snapshot at once, then the newest one after each
        accepted POST."""
        if not self._loaded:
            self._loaded = True
            restored = await trio.to_thread.run_sync(self._load)
            if self._version == 0:  # no POST was accepted meanwhile
                self._current = restored
        seen = self._version
        yield self._current
        while True:
            while self._version <= seen:
                await self._changed.wait()
            seen = self._version
            yield self._current

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    async def _one(self, request: Request) -> Response:
        return await self._post(request, single=True)

    async def _many(self, request: Request) -> Response:
        return await self._post(request, single=False)

    async def _post(self, request: Request, *, single: bool) -> Response:
        if not self._authorized(request):
            return _status(401, "Unauthorized", "a valid bearer token is required")
        origin = f"POST {request.url.path}"
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _status(413, "RequestEntityTooLarge",
                               f"body larger than {MAX_BODY_BYTES} bytes")
        data = bytes(body)
        try:
            items, _ = split_items(data, origin)
            if single and (len(items) != 1 or items[0][0]):
                raise InvalidObject("", "", [Cause(
                    Reason.INVALID, "expected one ContainerManifest object "
                    "(POST /containers takes a list)")], source=origin)
            if not single and items and not items[0][0]:
                raise InvalidObject("", "", [Cause(
                    Reason.INVALID, "expected a list of ContainerManifests "
                    "(POST /container takes one)")], source=origin)
            decoded = decode_pods(data, origin, SOURCE_NAME)
        except InvalidObject as exc:
            return _status(400, "BadRequest", f"{origin}: {exc.describe()}: "
                           + "; ".join(str(c) for c in exc.causes), exc.causes)
        if decoded.rejected:
            causes = all_causes(decoded.rejected)
            return _status(400, "Invalid", f"{origin}: {len(causes)} problems: "
                           + "; ".join(str(c) for c in causes), causes)
        ids = [pod.id for pod in decoded.pods]
        if len(set(ids)) != len(ids):
            dup = next(i for i, pod_id in enumerate(ids) if ids.index(pod_id) != i)
            cause = Cause(Reason.DUPLICATE, f"pod {ids[dup]!r} is listed twice", f"[{dup}].id")
            return _status(400, "Invalid", f"{origin}: {cause}", [cause])
        async with self._write_lock:
            try:
                await trio.to_thread.run_sync(self._save, request.url.path, data)
            except OSError as exc:
                log.error("cannot save the manifests", path=str(self.state_file),
                          error=str(exc))
                return _status(500, "InternalError",
                               f"cannot save the manifests to {self.state_file}: {exc}")
            self._current = Snapshot(pods=decoded.pods)
        self._version += 1
        self.accepted += 1
        self._changed.set()
        self._changed = trio.Event()
        log.info("manifests received", origin=origin, pods=ids)
        return Response(json.dumps({"status": "Success", "pods": ids}),
                        media_type="application/json")
