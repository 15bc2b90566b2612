"""A real ``kubecore run --role node`` on runtime_docker + source_file, end to end.

Each test runs its own kubelet process with a unique node name (the runtime scopes its
containers by the ``kubecore.node`` label), so tests never see each other's pods.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import pytest
from docker.models.containers import Container
from kubecore_source_file import pod_id_for

from tests.processes import KubecoreProcess

T = TypeVar("T")
PORT = 80


def eventually(check: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, docker.errors.NotFound):
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def manifest(image: str, command: list[str], *, port: bool = False) -> str:
    main: dict[str, Any] = {"name": "main", "image": image, "command": command,
                            "imagePullPolicy": "PullNever"}
    if port:
        main["ports"] = [{"name": "http", "containerPort": PORT, "hostPort": 0}]
    return json.dumps({"version": "v1beta1", "id": "ignored", "containers": [main]})


def toml_table(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in labels.items()) + "}"


class Node:
    """One kubelet process over a watched manifest directory, restartable in place."""

    def __init__(self, tmp_path: Path, image: str, labels: dict[str, str],
                 client: docker.DockerClient, kubelet: dict[str, str],
                 extra: Sequence[str] = ()) -> None:
        self.name = f"e2e-docker-{uuid.uuid4().hex[:8]}"
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir()
        self.client = client
        self.labels = labels
        self.args = [
            "run", "--role", "node", "--plugins", "runtime_docker,source_file",
            "--hostname-override", self.name, "--data-dir", str(tmp_path / "data"),
            "--log-format", "json",
            "--set", f"source_file.path={self.manifests}",
            "--set", "kubelet.port=0",
            "--set", f"runtime_docker.infra_image={image}",
            "--set", 'runtime_docker.infra_command=["sleep", "2147483647"]',
            "--set", f"runtime_docker.labels={toml_table(labels)}",
            "--set", f"runtime_docker.node={self.name}",
            *[a for key, value in kubelet.items() for a in ("--set", f"kubelet.{key}={value}")],
            *extra,
        ]
        self.proc: KubecoreProcess | None = None
        self.url = ""

    def start(self) -> KubecoreProcess:
        self.proc = KubecoreProcess(self.args)
        self.url = self.proc.wait_event("kubelet running")["url"]
        return self.proc

    def containers(self, pod_uid: str | None = None, role: str = "container",
                   *, all: bool = False) -> list[Container]:
        filters = [f"kubecore.node={self.name}", f"kubecore.role={role}"]
        if pod_uid is not None:
            filters.append(f"kubecore.pod.uid={pod_uid}")
        found: list[Container] = self.client.containers.list(all=all,
                                                             filters={"label": filters})
        return found

    def running(self, pod_uid: str) -> list[Container]:
        return self.containers(pod_uid)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.__exit__()
        # Every container this node made carries the test labels, so cleanup finds it.
        for c in self.containers(all=True) + self.containers(role="sandbox", all=True):
            assert all(c.labels.get(k) == v for k, v in self.labels.items()), c.labels
            c.remove(force=True, v=True)


@pytest.fixture
def node_factory(tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str,
                 docker_labels: dict[str, str]) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(extra: Sequence[str] = (), **kubelet: str) -> Node:
        node = Node(tmp_path, busybox_image, docker_labels, docker_client,
                    {"sync_frequency": "1", "grace_period": "1", **kubelet}, extra)
        nodes.append(node)
        node.start()
        return node

    yield make
    for node in nodes:
        node.close()


def started_at(c: Container) -> str:
    c.reload()
    value: str = c.attrs["State"]["StartedAt"]
    return value


def test_dropped_manifest_runs_through_the_file_watch_and_serves(
    node_factory: Callable[..., Node], busybox_image: str
) -> None:
    # Re-reads an hour apart: only the file watch can bring a new manifest in.
    node = node_factory(extra=["--set", "source_file.check_interval=3600"])
    first = node.manifests / "first.json"
    first.write_text(manifest(busybox_image, ["sleep", "600"]))
    # Running means the directory was read once already (at start or on the watch).
    eventually(lambda: node.running(pod_id_for(first)), "the first pod", timeout=30)
    path = node.manifests / "web.json"
    path.write_text(manifest(busybox_image, ["httpd", "-f", "-p", str(PORT)], port=True))
    uid = pod_id_for(path)
    [main] = eventually(lambda: node.running(uid), "the pod's container", timeout=30)

    def published() -> int | None:
        info = httpx.get(f"{node.url}/podInfo", params={"podID": uid}, timeout=2)
        if info.status_code != 200:
            return None
        [sandbox] = node.containers(uid, role="sandbox")
        bindings = sandbox.attrs["NetworkSettings"]["Ports"].get(f"{PORT}/tcp") or []
        return next((int(b["HostPort"]) for b in bindings if b["HostIp"] == "127.0.0.1"),
                    None)

    host_port = eventually(published, "the published port")
    page = eventually(lambda: httpx.get(f"http://127.0.0.1:{host_port}/", timeout=2),
                      "httpd to answer")
    assert page.status_code in (200, 404)  # httpd answers (its root has no index)
    assert main.labels["kubecore.container.name"] == "main"


def test_edit_restarts_only_that_pod(node_factory: Callable[..., Node],
                                     busybox_image: str) -> None:
    node = node_factory()
    a, b = node.manifests / "a.json", node.manifests / "b.json"
    a.write_text(manifest(busybox_image, ["sleep", "600"]))
    b.write_text(manifest(busybox_image, ["sleep", "601"]))
    uid_a, uid_b = pod_id_for(a), pod_id_for(b)
    [first_a] = eventually(lambda: node.running(uid_a), "pod a")
    [first_b] = eventually(lambda: node.running(uid_b), "pod b")
    b_started = started_at(first_b)

    a.write_text(manifest(busybox_image, ["sleep", "602"]))
    [new_a] = eventually(lambda: [c for c in node.running(uid_a) if c.id != first_a.id],
                         "pod a restarted with its new command")
    assert new_a.attrs["Config"]["Cmd"] == ["sleep", "602"]
    [still_b] = node.running(uid_b)
    assert still_b.id == first_b.id and started_at(still_b) == b_started


def test_deleted_file_stops_and_removes_the_pod(node_factory: Callable[..., Node],
                                                busybox_image: str) -> None:
    node = node_factory()
    path = node.manifests / "gone.json"
    path.write_text(manifest(busybox_image, ["sleep", "600"]))
    uid = pod_id_for(path)
    eventually(lambda: node.running(uid), "the pod")
    path.unlink()
    eventually(lambda: not node.containers(uid, all=True)
               and not node.containers(uid, role="sandbox", all=True),
               "the pod's containers removed")


def test_pre_stop_hook_runs_in_the_container_before_it_stops(
    node_factory: Callable[..., Node], busybox_image: str, tmp_path: Path
) -> None:
    node = node_factory()
    shared = tmp_path / "shared"
    shared.mkdir()
    path = node.manifests / "hooked.json"
    main: dict[str, Any] = {
        "name": "main", "image": busybox_image, "imagePullPolicy": "PullNever",
        "command": ["sh", "-c", "trap 'echo term >> /shared/log; exit 0' TERM;"
                    " while true; do sleep 0.1; done"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        "lifecycle": {"preStop": {"exec": {"command": [
            "sh", "-c", "echo prestop >> /shared/log"]}}},
    }
    path.write_text(json.dumps({
        "version": "v1beta1", "containers": [main],
        "volumes": [{"name": "shared", "source": {"hostDir": {"path": str(shared)}}}],
    }))
    uid = pod_id_for(path)
    eventually(lambda: node.running(uid), "the pod")
    time.sleep(0.3)  # the trap is set
    path.unlink()
    eventually(lambda: not node.containers(uid, all=True)
               and not node.containers(uid, role="sandbox", all=True), "the pod removed")
    assert (shared / "log").read_text().split() == ["prestop", "term"]


def test_crashing_container_restarts_with_growing_delays(
    node_factory: Callable[..., Node], busybox_image: str
) -> None:
    node = node_factory(backoff_min="0.5", backoff_max="60")
    path = node.manifests / "crash.json"
    path.write_text(manifest(busybox_image, ["sh", "-c", "exit 1"]))
    assert node.proc is not None
    proc = node.proc

    def restarts() -> list[dict[str, Any]] | None:
        found = [e for e in proc.events if e.get("event") == "container restarted"]
        return found if len(found) >= 4 else None

    events = eventually(restarts, "four restarts", timeout=30)
    stamps = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in events[:4]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    # Backoff 0.5, 1, 2 s: each gap is that wait plus the time a start takes, which a
    # busy daemon stretches alike for every gap, so the steps between gaps show the
    # doubling (0.5 s, then 1 s) whatever Docker's speed.
    steps = [later - earlier for earlier, later in itertools.pairwise(gaps)]
    assert steps[0] > 0.3 and steps[1] > 0.6, gaps
    assert gaps[-1] >= 2.0, gaps


def test_sigkilled_kubelet_adopts_its_pods(node_factory: Callable[..., Node],
                                           busybox_image: str) -> None:
    node = node_factory()
    paths = [node.manifests / f"p{i}.json" for i in range(2)]
    for i, path in enumerate(paths):
        path.write_text(manifest(busybox_image, ["sleep", str(600 + i)]))
    uids = [pod_id_for(p) for p in paths]
    eventually(lambda: all(node.running(uid) for uid in uids), "both pods")

    def snapshot() -> dict[str, str]:
        every = node.containers(all=True) + node.containers(role="sandbox", all=True)
        return {c.id: started_at(c) for c in every}

    before = snapshot()
    assert len(before) == 4  # two pods, each one container and one sandbox
    assert node.proc is not None
    node.proc.stop(signal.SIGKILL)
    assert snapshot() == before  # the containers outlive the kubelet

    proc = node.start()
    # Several sync rounds (1 s each) after the restart: time to duplicate or restart.
    target = time.monotonic() + 3.5
    while time.monotonic() < target:
        assert proc.proc.poll() is None, proc.output
        time.sleep(0.5)
    assert snapshot() == before
    for uid in uids:
        assert len(node.running(uid)) == 1
        assert len(node.containers(uid, role="sandbox")) == 1
    assert not [e for e in proc.events
                if e.get("event") in ("container started", "container restarted",
                                      "stopping container")], proc.output
