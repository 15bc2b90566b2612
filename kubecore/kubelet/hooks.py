"""Lifecycle hooks: a container's ``postStart`` and ``preStop`` handlers.

A handler is ``exec`` (a command run in the container; it succeeded when it exits 0) or
``httpGet`` (``http://<host or the pod's address>:<port><path>``, a named port resolved
as for liveness probes; as in v0.5 any HTTP answer counts as success, a connection
that fails does not). The sync loop runs ``postStart`` right after a start (a failure
kills the container, which then restarts as its policy and backoff allow: v0.5's rule)
and ``preStop`` before every graceful stop, within the stop's grace period.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from kubecore.api import Container, Handler
from kubecore.kubelet.probes import LOOPBACK, http_get_url
from kubecore.runtime import ContainerError, PortMapping, Runtime

#: The least time a hook is given, even with a grace period of 0.
MIN_HOOK_SECONDS = 1.0


async def run_handler(
    runtime: Runtime,
    container_id: str,
    container: Container,
    handler: Handler,
    mappings: Sequence[PortMapping],
    *,
    ip: str = LOOPBACK,
    timeout: float,  # noqa: ASYNC109 (handed on to the runtime's exec)
) -> str | None:
    """Run ``handler`` for the container once, within ``timeout`` seconds; ``None`` when
    it succeeded, else why not (for the log)."""
    timeout = max(timeout, MIN_HOOK_SECONDS)
    if handler.exec is not None and handler.exec.command:
        try:
            code, output = await runtime.exec_in_container(
                container_id, handler.exec.command, timeout=timeout
            )
        except ContainerError as exc:
            return exc.message
        if code != 0:
            text = output.decode(errors="replace").strip()[-200:]
            return f"exit code {code}" + (f": {text}" if text else "")
        return None
    if handler.http_get is not None:
        url = http_get_url(handler.http_get, container, mappings, ip)
        if url is None:
            return f"no port {handler.http_get.port!r} in the container"
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                await client.get(url)
        except httpx.HTTPError as exc:
            return f"GET {url}: {exc or type(exc).__name__}"
        return None
    return "the handler has neither exec nor httpGet"
