"""The kubelet on runtime_exec with real processes: sources, sync, restarts, adoption."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import structlog
import trio
from kubecore_source_file import FileSource, pod_id_for

from kubecore.api import (
    ExecAction,
    HTTPGetAction,
    LivenessProbe,
    RestartPolicy,
    RestartPolicyNever,
    RestartPolicyOnFailure,
)
from kubecore.kubelet.node import Kubelet
from kubecore.runtime import ContainerInfo, ContainerState
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import PushSource, container, pod, wait_until


def manifest(command: list[str], **extra: object) -> str:
    return json.dumps({"version": "v1beta1", "id": "ignored",
                       "containers": [{"name": "main", "image": "busybox",
                                       "command": command}], **extra})


async def containers_of(kubelet: Kubelet, uid: str) -> list[ContainerInfo]:
    return [c for c in await kubelet.runtime.list_containers(all=True) if c.pod_uid == uid]


async def running_of(kubelet: Kubelet, uid: str) -> list[ContainerInfo]:
    return [c for c in await containers_of(kubelet, uid) if c.state is ContainerState.RUNNING]


async def rounds_pass(kubelet: Kubelet, count: int) -> None:
    """Wait until ``count`` more sync rounds have run (so a change would have shown)."""
    target = kubelet.sync.rounds + count

    async def done() -> bool:
        return kubelet.sync.rounds >= target

    await wait_until(done, what=f"{count} sync rounds")


async def test_file_source_drop_edit_rewrite_delete(
    tmp_path: Path, start_kubelet: KubeletFactory
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    source = FileSource(manifests, check_interval=20.0)
    async with start_kubelet([source]) as kubelet:
        a, b = manifests / "a.json", manifests / "b.json"
        a.write_text(manifest(["sleep", "60"]))
        b.write_text(manifest(["sleep", "61"]))
        uid_a, uid_b = pod_id_for(a), pod_id_for(b)
        with trio.fail_after(2.0):  # the watch, well before the 20 s poll
            first_a = (await wait_until(lambda: running_of(kubelet, uid_a)))[0]
            first_b = (await wait_until(lambda: running_of(kubelet, uid_b)))[0]

        a.write_text(manifest(["sleep", "62"]))

        async def replaced() -> list[ContainerInfo]:
            return [c for c in await running_of(kubelet, uid_a) if c.id != first_a.id]

        await wait_until(replaced, what="pod a restarted with its new command")
        assert [c.id for c in await running_of(kubelet, uid_b)] == [first_b.id]
        current_a = (await running_of(kubelet, uid_a))[0]

        reads = source.reads
        a.write_text(manifest(["sleep", "62"]))  # identical rewrite

        async def reread() -> bool:
            return source.reads > reads

        await wait_until(reread, what="the rewrite to be read")
        await rounds_pass(kubelet, 3)
        assert [c.id for c in await running_of(kubelet, uid_a)] == [current_a.id]
        assert [c.id for c in await running_of(kubelet, uid_b)] == [first_b.id]

        a.unlink()

        async def gone() -> bool:
            return not await containers_of(kubelet, uid_a)

        await wait_until(gone, what="pod a removed")
        assert [c.id for c in await running_of(kubelet, uid_b)] == [first_b.id]


async def test_invalid_manifest_next_to_a_valid_one(
    tmp_path: Path, start_kubelet: KubeletFactory
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    good, bad = manifests / "good.yaml", manifests / "bad.yaml"
    good.write_text("version: v1beta1\ncontainers:\n- name: main\n  image: busybox\n"
                    "  command: [sleep, '60']\n")
    bad.write_text("version: v1beta1\ncontainers:\n- name: main\n  image: busybox\n"
                   "  command: [sleep, '60']\n  ports:\n  - containerPort: 99999\n")
    with structlog.testing.capture_logs() as logs:
        async with start_kubelet([FileSource(manifests)]) as kubelet:
            await wait_until(lambda: running_of(kubelet, pod_id_for(good)))
            assert not await containers_of(kubelet, pod_id_for(bad))
    rejected = [line for line in logs if line["event"] == "pod rejected"]
    assert len(rejected) == 1, rejected
    assert rejected[0]["origin"] == str(bad)
    assert rejected[0]["field"] == "containers[0].ports[0].containerPort"
    assert rejected[0]["source"] == "file"


async def test_crashing_container_restarts_with_growing_delays(
    start_kubelet: KubeletFactory,
) -> None:
    source = PushSource()
    async with start_kubelet([source]) as kubelet:
        source.push(pod("crash", container(command=["sh", "-c", "exit 3"])))

        async def four() -> list[ContainerInfo] | None:
            found = await containers_of(kubelet, "uid-crash")
            return found if len(found) >= 4 else None

        instances = sorted(await wait_until(four, what="four instances"),
                           key=lambda c: c.created_at)
        starts = [c.created_at for c in instances[:4]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        # 0.2 s, 0.4 s, 0.8 s (+ detection): each gap longer than the one before.
        assert gaps[0] >= 0.2 and gaps[1] > gaps[0] and gaps[2] > gaps[1], gaps
        assert gaps[2] >= 0.8, gaps


async def test_restart_policies(start_kubelet: KubeletFactory) -> None:
    source = PushSource()
    never = RestartPolicy(never=RestartPolicyNever())
    on_failure = RestartPolicy(on_failure=RestartPolicyOnFailure())
    async with start_kubelet([source]) as kubelet:
        source.push(
            pod("never", container(command=["sh", "-c", "exit 1"]), restart=never),
            pod("okexit", container(command=["sh", "-c", "exit 0"]), restart=on_failure),
            pod("failing", container(command=["sh", "-c", "exit 1"]), restart=on_failure),
        )

        async def failing_restarted() -> bool:
            return len(await containers_of(kubelet, "uid-failing")) >= 2

        await wait_until(failing_restarted, what="onFailure restart after exit 1")
        await rounds_pass(kubelet, 5)  # with a 0.2 s backoff, a restart would show
        for uid in ("uid-never", "uid-okexit"):
            found = await containers_of(kubelet, uid)
            assert len(found) == 1 and found[0].state is ContainerState.EXITED, found


async def test_restarted_kubelet_adopts_without_duplicates(
    start_kubelet: KubeletFactory,
) -> None:
    web = pod("web", container(command=["sleep", "60"]))
    first_source = PushSource()
    async with start_kubelet([first_source]) as kubelet:
        first_source.push(web)
        first = (await wait_until(lambda: running_of(kubelet, "uid-web")))[0]
    second_source = PushSource()
    async with start_kubelet([second_source]) as kubelet:
        await rounds_pass(kubelet, 2)  # no snapshot yet: nothing is touched
        assert [c.id for c in await running_of(kubelet, "uid-web")] == [first.id]
        second_source.push(web)
        await rounds_pass(kubelet, 3)
        found = await containers_of(kubelet, "uid-web")
        assert [c.id for c in found] == [first.id]
        assert found[0].state is ContainerState.RUNNING


async def test_liveness_unhealthy_restarts_and_probe_errors_keep(
    start_kubelet: KubeletFactory,
) -> None:
    source = PushSource()
    failing = LivenessProbe(exec=ExecAction(command=["false"]))
    erroring = LivenessProbe(http_get=HTTPGetAction(path="/", port=1))  # nobody listens
    async with start_kubelet([source]) as kubelet:
        source.push(
            pod("sick", container(command=["sleep", "60"], liveness_probe=failing)),
            pod("unknown", container(command=["sleep", "60"], liveness_probe=erroring)),
        )

        async def restarted() -> bool:
            return len(await containers_of(kubelet, "uid-sick")) >= 2

        await wait_until(restarted, what="the unhealthy container restarted")
        found = await containers_of(kubelet, "uid-unknown")
        assert len(found) == 1 and found[0].state is ContainerState.RUNNING
