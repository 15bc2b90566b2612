"""The kubelet's HTTP server (Starlette), v0.5's read endpoints.

- ``GET /healthz``: ``ok``.
- ``GET /podInfo?podID=&podNamespace=``: the pod's ``info`` map (container name ->
  v1beta1 ContainerStatus); 404 when the node knows nothing of the pod.
- ``GET /boundPods``: the desired pods as a v1beta1 ``BoundPods`` object.
- ``GET /stats/``: machine counters from ``/proc``; ``GET /stats/<podID>/<container>``:
  the running container's counters from the runtime (``?podNamespace=``, default
  ``default``).
- ``GET /containerLogs/<namespace>/<podID>/<container>?tail=N``: the newest instance's
  output as text.
- ``GET /events``: the node's newest events (rejected pods; see
  :mod:`kubecore.kubelet.events`) as a v1beta1 ``EventList``, oldest first, readable
  with or without an apiserver.

Manifest sources may add their own routes (see
:class:`kubecore.kubelet.sources.RouteProvider`); they are mounted after these.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from kubecore.api import API_VERSION, DEFAULT_NAMESPACE, BoundPods, EventList, to_dict
from kubecore.kubelet.status import newest_first, pod_info
from kubecore.runtime import ContainerError, ContainerInfo, ContainerState, ContainerStats

if TYPE_CHECKING:
    from kubecore.kubelet.node import Kubelet


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1beta1", "status": "Failure",
                         "message": message, "reason": "NotFound", "code": 404},
                        status_code=404)


def machine_stats() -> ContainerStats:
    """CPU time (all CPUs, user + system + nice) and used memory of the machine."""
    cpu_ns = 0
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
        ticks = sum(int(v) for v in fields[:3])  # user, nice, system
        cpu_ns = ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    mem[key] = int(parts[0]) * 1024
    except OSError:
        pass
    total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", 0))
    return ContainerStats(timestamp=time.time(), cpu_usage_ns=cpu_ns,
                          memory_usage_bytes=max(0, total - available),
                          memory_limit_bytes=total)


def _stats_json(stats: ContainerStats) -> dict[str, Any]:
    data = dataclasses.asdict(stats)
    data["extra"] = dict(stats.extra)
    return data


def create_app(kubelet: Kubelet, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The kubelet's ASGI app over ``kubelet``'s desired state and runtime."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def containers_of(pod_id: str, namespace: str) -> list[ContainerInfo] | None:
        desired = kubelet.find_pod(pod_id, namespace)
        if desired is None:
            return None
        return [c for c in await kubelet.runtime.list_containers(all=True)
                if c.pod_uid == desired.uid]

    async def pod_info_route(request: Request) -> Response:
        pod_id = request.query_params.get("podID", "")
        namespace = request.query_params.get("podNamespace", "") or DEFAULT_NAMESPACE
        desired = kubelet.find_pod(pod_id, namespace)
        if desired is None:
            return _not_found(f"pod {pod_id!r} in namespace {namespace!r} is not on this node")
        containers = [c for c in await kubelet.runtime.list_containers(all=True)
                      if c.pod_uid == desired.uid]
        sandbox = next((s for s in await kubelet.runtime.list_sandboxes()
                        if s.pod_uid == desired.uid), None)
        info = pod_info(containers, sandbox, desired.pod.spec)
        if not info:
            return _not_found(f"pod {pod_id!r} has no containers yet")
        return JSONResponse({name: to_dict(status) for name, status in info.items()})

    async def bound_pods(request: Request) -> Response:
        pods = BoundPods(kind="BoundPods", api_version="v1beta1", host=kubelet.hostname,
                         items=[d.pod for d in kubelet.desired.pods.values()])
        return JSONResponse(to_dict(pods))

    async def stats_machine(request: Request) -> Response:
        return JSONResponse(_stats_json(machine_stats()))

    async def stats_container(request: Request) -> Response:
        pod_id = request.path_params["pod"]
        name = request.path_params["container"]
        namespace = request.query_params.get("podNamespace", "") or DEFAULT_NAMESPACE
        containers = await containers_of(pod_id, namespace)
        running = [c for c in containers or [] if c.name == name
                   and c.state is ContainerState.RUNNING]
        if not running:
            return _not_found(f"no running container {name!r} in pod {pod_id!r}")
        try:
            stats = await kubelet.runtime.container_stats(newest_first(running)[0].id)
        except ContainerError as exc:
            return _not_found(exc.message)
        return JSONResponse(_stats_json(stats))

    async def container_logs(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        pod_id = request.path_params["pod"]
        name = request.path_params["container"]
        tail_text = request.query_params.get("tail", "")
        tail = int(tail_text) if tail_text.isdigit() else None
        containers = await containers_of(pod_id, namespace)
        found = [c for c in containers or [] if c.name == name]
        if not found:
            return _not_found(f"no container {name!r} in pod {pod_id!r}")
        try:
            data = await kubelet.runtime.container_logs(newest_first(found)[0].id, tail)
        except ContainerError as exc:
            return _not_found(exc.message)
        return Response(data, media_type="text/plain; charset=utf-8")

    async def events(request: Request) -> Response:
        listed = EventList(kind="EventList", api_version=API_VERSION,
                           items=kubelet.events.recent())
        return JSONResponse(to_dict(listed))

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/podInfo", pod_info_route),
        Route("/boundPods", bound_pods),
        Route("/stats/", stats_machine),
        Route("/stats", stats_machine),
        Route("/stats/{pod}/{container}", stats_container),
        Route("/containerLogs/{namespace}/{pod}/{container}", container_logs),
        Route("/events", events),
        *extra_routes,
    ]
    return Starlette(routes=routes)
