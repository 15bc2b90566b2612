"""Liveness probes: httpGet, tcpSocket and exec, as v0.5 ran them.

A probe answers :data:`HEALTHY`, :data:`UNHEALTHY` or :data:`UNKNOWN`; only
``UNHEALTHY`` restarts a container (an error while probing keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import httpx
import trio

from kubecore.api import Container, HTTPGetAction, LivenessProbe
from kubecore.runtime import ContainerError, PortMapping, Runtime

Result = Literal["healthy", "unhealthy", "unknown"]
HEALTHY: Result = "healthy"
UNHEALTHY: Result = "unhealthy"
UNKNOWN: Result = "unknown"

PROBE_TIMEOUT = 1.0
LOOPBACK = "127.0.0.1"


def resolve_port(
    port: int | str, container: Container, mappings: Sequence[PortMapping]
) -> int | None:
    """The host port a probe connects to: a named port is looked up among the
    container's ports; the sandbox's mapping then gives where it is published."""
    number: int | None = None
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        number = int(port)
    else:
        for p in container.ports:
            if p.name == port:
                number = p.container_port
    if not number:
        return None
    for mapping in mappings:
        if mapping.container_port == number and mapping.host_port:
            return mapping.host_port
    return number


def http_get_url(
    action: HTTPGetAction, container: Container, mappings: Sequence[PortMapping], ip: str
) -> str | None:
    """The URL an ``httpGet`` probe or hook requests; ``None`` when its port is none of
    the container's."""
    port = resolve_port(action.port, container, mappings)
    if port is None:
        return None
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return f"http://{action.host or ip}:{port}{path}"


async def probe(
    runtime: Runtime,
    container_id: str,
    container: Container,
    spec: LivenessProbe,
    mappings: Sequence[PortMapping],
    ip: str = LOOPBACK,
) -> Result:
    """Run ``spec`` against the container once."""
    if spec.exec is not None and spec.exec.command:
        try:
            code, output = await runtime.exec_in_container(
                container_id, spec.exec.command, timeout=PROBE_TIMEOUT
            )
        except ContainerError:
            return UNKNOWN
        # v0.5 asks for the output "ok"; the exit status is the modern test.
        text = output.decode(errors="replace").strip().lower()
        return HEALTHY if code == 0 or text == "ok" else UNHEALTHY
    if spec.http_get is not None:
        url = http_get_url(spec.http_get, container, mappings, ip)
        if url is None:
            return UNKNOWN
        try:
            async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return UNKNOWN
        return HEALTHY if 200 <= response.status_code < 400 else UNHEALTHY
    if spec.tcp_socket is not None:
        port = resolve_port(spec.tcp_socket.port, container, mappings)
        if port is None:
            return UNKNOWN
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                stream = await trio.open_tcp_stream(ip, port)
            except OSError:
                return UNHEALTHY
            await stream.aclose()
            return HEALTHY
        return UNKNOWN
    return UNKNOWN
