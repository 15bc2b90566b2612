"""Helpers for the kubelet tests: pods, a push-driven source, waiting on conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from kubecore.api import BoundPod, Container, PodSpec, RestartPolicy
from kubecore.kubelet.sources import Rejected, Snapshot

T = TypeVar("T")
DEADLINE = 10.0


def container(name: str = "main", command: Sequence[str] = ("sleep", "60"),
              **fields: Any) -> Container:
    fields.setdefault("image", "busybox")
    return Container(name=name, command=list(command), **fields)


def pod(pod_id: str, *containers: Container, uid: str | None = None, namespace: str = "",
        restart: RestartPolicy | None = None) -> BoundPod:
    spec = PodSpec(containers=list(containers) or [container()])
    if restart is not None:
        spec.restart_policy = restart
    return BoundPod(id=pod_id, uid=uid or f"uid-{pod_id}", namespace=namespace, spec=spec)


class PushSource:
    """A manifest source the test drives: ``push`` sends one full snapshot."""

    def __init__(self, name: str = "test") -> None:
        self.name = name
        self._send, self._receive = trio.open_memory_channel[Snapshot](100)

    def push(self, *pods: BoundPod, rejected: Sequence[Rejected] = ()) -> None:
        self._send.send_nowait(Snapshot(pods=list(pods), rejected=list(rejected)))

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        async for snapshot in self._receive:
            yield snapshot


async def wait_until(check: Callable[[], Awaitable[T | None]], timeout: float = DEADLINE,  # noqa: ASYNC109
                     what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
