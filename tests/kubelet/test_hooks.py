"""Lifecycle hooks on a real kubelet (runtime_exec): preStop before every graceful stop
(exec and httpGet, the old spec's hook after a change), postStart after a start; and
the dead-container GC on its own timer."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import trio
from kubecore_runtime_exec import ExecRuntime

from kubecore.api import ExecAction, Handler, HTTPGetAction, Lifecycle
from kubecore.kubelet.hashing import container_hash
from kubecore.runtime import ContainerInfo, ContainerState, Runtime
from tests.kubelet.conftest import FAST, KubeletFactory
from tests.kubelet.helpers import PushSource, container, pod, wait_until


def trapping(log: Path, word: str = "term") -> list[str]:
    """A command that notes SIGTERM in ``log`` and exits."""
    return ["sh", "-c", f"trap 'echo {word} >> {log}; exit 0' TERM;"
            " while true; do sleep 0.05; done"]


def note(log: Path, word: str) -> Handler:
    return Handler(exec=ExecAction(command=["sh", "-c", f"echo {word} >> {log}"]))


async def any_running(runtime: Runtime) -> bool:
    return any(c.state is ContainerState.RUNNING for c in await runtime.list_containers())


async def lines(path: Path, count: int) -> list[str] | None:
    file = trio.Path(path)
    found = (await file.read_text()).split() if await file.exists() else []
    return found if len(found) >= count else None


async def test_pre_stop_exec_runs_before_sigterm(tmp_path: Path,
                                                 start_kubelet: KubeletFactory) -> None:
    log = tmp_path / "log"
    source = PushSource()
    web = pod("web", container(command=trapping(log),
                               lifecycle=Lifecycle(pre_stop=note(log, "prestop"))))
    async with start_kubelet([source]) as kubelet:
        source.push(web)
        running = partial(any_running, kubelet.runtime)

        await wait_until(running, what="the container")
        await trio.sleep(0.2)  # the trap is set
        source.push()  # the pod is deleted
        assert await wait_until(lambda: lines(log, 2), what="hook and SIGTERM") == [
            "prestop", "term"]

        # A changed spec stops the old instance with the old spec's hook.
        log.unlink()
        v1 = pod("web", container(command=trapping(log, "term1"),
                                  lifecycle=Lifecycle(pre_stop=note(log, "hook1"))))
        v2 = pod("web", container(command=trapping(log, "term2"),
                                  lifecycle=Lifecycle(pre_stop=note(log, "hook2"))))
        source.push(v1)
        await wait_until(running, what="v1")
        await trio.sleep(0.2)
        source.push(v2)
        assert await wait_until(lambda: lines(log, 2), what="v1 stopped") == [
            "hook1", "term1"]


async def test_pre_stop_http_get(tmp_path: Path, nursery: trio.Nursery,
                                 start_kubelet: KubeletFactory) -> None:
    requests: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        data = await stream.receive_some(4096)
        requests.append(data.split(b"\r\n")[0])
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    hook = Handler(http_get=HTTPGetAction(path="quitquitquit", port=port, host="127.0.0.1"))
    source = PushSource()
    web = pod("web", container(lifecycle=Lifecycle(pre_stop=hook)))
    async with start_kubelet([source]) as kubelet:
        source.push(web)
        running = partial(any_running, kubelet.runtime)

        await wait_until(running, what="the container")
        assert requests == []
        source.push()

        async def gone() -> bool:
            return not await running()

        await wait_until(gone, what="the pod stopped")
    assert requests == [b"GET /quitquitquit HTTP/1.1"]


async def test_post_start_runs_and_its_failure_kills(tmp_path: Path,
                                                     start_kubelet: KubeletFactory) -> None:
    log = tmp_path / "log"
    source = PushSource()
    good = pod("good", container(lifecycle=Lifecycle(post_start=note(log, "started"))))
    bad = pod("bad", container(lifecycle=Lifecycle(
        post_start=Handler(exec=ExecAction(command=["false"])))))
    async with start_kubelet([source]) as kubelet:
        source.push(good, bad)
        assert await wait_until(lambda: lines(log, 1), what="postStart") == ["started"]

        async def bad_killed_twice() -> bool:
            dead = [c for c in await kubelet.runtime.list_containers()
                    if c.pod_uid == bad.uid and c.state is ContainerState.EXITED]
            return len(dead) >= 2

        await wait_until(bad_killed_twice, what="the failing postStart killing twice")
        good_running = [c for c in await kubelet.runtime.list_containers()
                        if c.pod_uid == good.uid]
        assert [c.state for c in good_running] == [ContainerState.RUNNING]


async def test_dead_containers_collected_on_their_own_timer(
    exec_root: Path, start_kubelet: KubeletFactory
) -> None:
    """Dead instances of a pod no sync round touches (its source has not reported) are
    still cut down to ``max_dead_containers`` by the GC timer."""
    left = pod("left", container(command=["true"]))
    runtime = ExecRuntime(exec_root)
    try:
        sandbox = await runtime.run_sandbox(left, "left.default.quiet")
        spec = left.spec.containers[0]
        for _ in range(4):
            await runtime.start_container(left, "left.default.quiet", sandbox, spec,
                                          container_hash(spec))

        async def all_dead() -> bool:
            found = await runtime.list_containers()
            return len(found) == 4 and all(c.state is ContainerState.EXITED for c in found)

        await wait_until(all_dead, what="four dead instances")
    finally:
        await runtime.aclose()
    settings = dataclasses.replace(FAST, sync_frequency=3600.0, max_dead_containers=1,
                                   gc_interval=0.1)
    async with start_kubelet([PushSource("quiet")], settings) as kubelet:

        async def collected() -> list[ContainerInfo] | None:
            found = await kubelet.runtime.list_containers()
            return found if len(found) == 1 else None

        [kept] = await wait_until(collected, what="the GC timer")
        assert kubelet.sync.rounds <= 2  # no sync round did it
        sandboxes = await kubelet.runtime.list_sandboxes()
        assert [s.pod_uid for s in sandboxes] == [left.uid]  # the pod itself is left alone
    assert kept.pod_uid == left.uid
