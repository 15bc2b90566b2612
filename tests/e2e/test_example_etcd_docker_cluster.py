"""examples/etcd-docker-cluster runs as its README says: a three-member etcd on loopback,
a master on it, and two Docker nodes (two hostnames on one machine) fed by the etcd
source.

The configs are the example's own; only ports, data dirs, names and the test labels are
overridden. The RC is created with ``kubecore create -f``; its pods must be bound to
both nodes, run as labelled containers, and be listed with their published addresses
in the endpoints, each answering HTTP. Then the etcd member every client starts on is
killed and the cluster must keep working: a resize brings new pods up on both nodes and
into the endpoints. Throughout, neither kubelet may stop or adopt the other's
containers (both share one Docker daemon, scoped by the ``kubecore.node`` label).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from docker.models.containers import Container

from tests.e2e.test_examples import EXAMPLES, eventually, free_port
from tests.e2e.test_kubelet_docker import toml_table
from tests.processes import KubecoreProcess, run_kubecore
from tests.services import (
    BUSYBOX_TAG,
    EtcdCluster,
    etcd_binary,
    etcd_get,
    etcd_put,
    list_containers,
)

EXAMPLE = EXAMPLES / "etcd-docker-cluster"
SERVICE_PORT = "8000"
EXAMPLE_CPU = 200  # milli-cores each replica of the example requests
CONTAINER_PORT = 80
PAGE = "kubecore busybox test image\n"  # /www/index.html of the busybox test image


class Cluster:
    """The master and both nodes as ``kubecore run`` processes over one etcd cluster."""

    def __init__(self, tmp_path: Path, etcd: EtcdCluster, client: docker.DockerClient,
                 image: str, labels: dict[str, str]) -> None:
        self.example = tmp_path / "example"
        shutil.copytree(EXAMPLE, self.example)
        self.service_port = free_port()
        for name in ("web-controller.yaml", "web-service.yaml"):
            path = self.example / name
            text = path.read_text().replace(BUSYBOX_TAG, image)
            path.write_text(text.replace(f"port: {SERVICE_PORT}", f"port: {self.service_port}"))
        self.tmp = tmp_path
        self.etcd = etcd
        self.docker = client
        self.image = image
        self.labels = labels
        # Unique names: another run's kubelets on this daemon must never match ours.
        suffix = uuid.uuid4().hex[:6]
        self.nodes = [f"node-1-{suffix}", f"node-2-{suffix}"]
        self.endpoints = json.dumps(etcd.endpoints)
        self.procs: list[KubecoreProcess] = []
        self.url = ""

    def start(self) -> None:
        master = self._run([
            "--config", str(self.example / "master.toml"),
            "--data-dir", str(self.tmp / "master"), "--set", "apiserver.port=0",
            "--set", f"store_etcd.endpoints={self.endpoints}",
            "--set", "scheduler.minion_poll_interval=0.5",
            "--set", "controllers.resync_interval=1",
        ])
        self.url = master.wait_event("listening", logger="kubecore.apiserver")["url"]
        master.wait_event("kubecore is up")
        for index, name in enumerate(self.nodes, start=1):
            node = self._run([
                "--config", str(self.example / f"node-{index}.toml"),
                "--hostname-override", name, "--data-dir", str(self.tmp / name),
                "--set", "kubelet.port=0", "--set", f"kubecore.api_server={self.url}",
                "--set", f"source_etcd.endpoints={self.endpoints}",
                "--set", f"runtime_docker.infra_image={self.image}",
                "--set", 'runtime_docker.infra_command=["sleep", "2147483647"]',
                "--set", f"runtime_docker.labels={toml_table(self.labels)}",
                "--set", "kubelet.sync_frequency=1", "--set", "kubelet.grace_period=1",
            ])
            node.wait_event("kubelet running", timeout=30)

    def _run(self, args: list[str]) -> KubecoreProcess:
        proc = KubecoreProcess(["run", "--log-format", "json", *args])
        self.procs.append(proc)
        return proc

    def kubecore(self, *argv: str) -> str:
        result = run_kubecore([*argv, "--server", self.url])
        assert result.returncode == 0, result.stderr
        return result.stdout

    def get(self, resource: str, *args: str) -> Any:
        return json.loads(self.kubecore("get", resource, *args, "-o", "json"))

    def minions(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("minions")["items"]
        return items

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-l", "name=web")["items"]
        return items

    def running_pods(self, count: int) -> list[dict[str, Any]] | None:
        """The RC's pods once there are ``count`` of them, all Running."""
        pods = self.pods()
        running = [p for p in pods if p["currentState"].get("status") == "Running"]
        return pods if len(pods) == count == len(running) else None

    def containers(self, node: str, role: str = "container", *,
                   all: bool = False) -> list[Container]:
        found: list[Container] = list_containers(self.docker, all=all, filters={
            "label": [f"kubecore.node={node}", f"kubecore.role={role}"]})
        return found

    def published(self) -> set[str]:
        """``127.0.0.1:<port>`` of every running pod's port 80, as Docker published it."""
        addresses: set[str] = set()
        for node in self.nodes:
            for sandbox in self.containers(node, "sandbox"):
                bindings = sandbox.attrs["NetworkSettings"]["Ports"].get(
                    f"{CONTAINER_PORT}/tcp") or []
                addresses.update(f"{b['HostIp']}:{b['HostPort']}" for b in bindings)
        return addresses

    def endpoints_settled(self, count: int) -> set[str] | None:
        """The endpoints of ``web`` once they are ``count`` addresses Docker published."""
        listed = set(self.get("endpoints/web").get("endpoints") or [])
        return listed if len(listed) == count and listed == self.published() else None

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.__exit__()
            # Shown by pytest when the test failed: what each process said last.
            print(f"--- {' '.join(proc.args[6:8])}\n{''.join(proc.lines[-40:])}")
        # Everything the nodes made carries the test labels; remove it, ours only.
        for node in self.nodes:
            for role in ("container", "sandbox"):
                for c in self.containers(node, role, all=True):
                    assert all(c.labels.get(k) == v for k, v in self.labels.items()), c.labels
                    with contextlib.suppress(docker.errors.NotFound):
                        c.remove(force=True, v=True)


@pytest.fixture
def cluster(tmp_path: Path, etcd_cluster: Callable[..., EtcdCluster],
            docker_client: docker.DockerClient, busybox_image: str,
            docker_labels: dict[str, str]) -> Iterator[Cluster]:
    made = Cluster(tmp_path, etcd_cluster(3), docker_client, busybox_image, docker_labels)
    try:
        made.start()
        yield made
    finally:
        made.close()


def running_ids(c: Cluster) -> dict[str, set[str]]:
    """Each node's running containers (pods' and infra) by id."""
    return {node: {x.id for role in ("container", "sandbox") for x in c.containers(node, role)}
            for node in c.nodes}


def serves(address: str) -> str:
    """The page ``http://<address>/`` answers with 200 (waiting for it to answer)."""
    page = eventually(lambda: httpx.get(f"http://{address}/", timeout=2), address)
    assert page.status_code == 200, (address, page.status_code)
    return page.text


def test_etcd_docker_cluster_example(cluster: Cluster) -> None:
    c = cluster
    minions = eventually(lambda: c.minions() if len(c.minions()) == 2 else None,
                         "both nodes to register their minions")
    assert sorted(m["id"] for m in minions) == c.nodes
    # A fifth of the machine's cores per pod: every pod moves the least-requested score
    # by whole percents (so the four replicas spread two and two) on any machine, and
    # four of them fit on one node.
    cores = minions[0]["resources"]["capacity"]["cpu"]
    controller = c.example / "web-controller.yaml"
    text = controller.read_text()
    assert f"cpu: {EXAMPLE_CPU}" in text
    controller.write_text(text.replace(f"cpu: {EXAMPLE_CPU}", f"cpu: {int(cores) * 1000 // 5}"))
    c.kubecore("create", "-f", str(controller))
    c.kubecore("create", "-f", str(c.example / "web-service.yaml"))

    pods = eventually(lambda: c.running_pods(2), "two running pods", timeout=60)
    assert {p["currentState"]["host"] for p in pods} == set(c.nodes)
    # They reached the kubelets through etcd: each host key holds its pod, and each
    # container is named for the etcd source.
    for pod in pods:
        host = pod["currentState"]["host"]
        bound = etcd_get(c.etcd.endpoints[0], f"/registry/hosts/{host}/kubelet")
        assert bound is not None and pod["id"].encode() in bound
    for node in c.nodes:
        [container] = c.containers(node)
        assert ".etcd_" in container.name, container.name
        assert all(container.labels.get(k) == v for k, v in c.labels.items())
        assert container.labels["kubecore.container.image"] == c.image
    endpoints = eventually(lambda: c.endpoints_settled(2), "endpoints of both pods")
    for address in endpoints:
        assert address.startswith("127.0.0.1:")
        assert serves(address) == PAGE
    # node-1's proxy forwards to them.
    assert serves(f"127.0.0.1:{c.service_port}") == PAGE
    before = running_ids(c)
    assert all(len(ids) == 2 for ids in before.values()), before  # infra + httpd each

    # Kill the member every client started on; the other two keep a quorum.
    c.etcd.stop(0, kill=True)
    c.kubecore("resize", "web", "4")
    pods = eventually(lambda: c.running_pods(4), "four running pods", timeout=60)
    hosts = [p["currentState"]["host"] for p in pods]
    assert sorted(hosts) == sorted(c.nodes * 2), hosts
    endpoints = eventually(lambda: c.endpoints_settled(4), "endpoints of four pods")
    for address in endpoints:
        assert serves(address) == PAGE
    # Neither kubelet stopped (or replaced) what it or the other one ran before.
    after = running_ids(c)
    for node in c.nodes:
        assert before[node] <= after[node], (node, before[node] - after[node])
        assert len(after[node]) == 4
    assert not after[c.nodes[0]] & after[c.nodes[1]]

    c.etcd.start(0)
    c.etcd.wait_healthy()
    # The restarted member caught up: it serves the RC at its new size.
    rc = etcd_get(c.etcd.endpoints[0], "/registry/controllers/default/web")
    assert rc is not None and json.loads(rc)["desiredState"]["replicas"] == 4
    c.kubecore("stop", "web", "--wait", "--timeout", "60")
    eventually(lambda: not any(c.containers(n) + c.containers(n, "sandbox") for n in c.nodes),
               "the nodes to stop every container")
    c.kubecore("rm", "web")
    for proc in reversed(c.procs):  # the nodes first, so nothing loses the apiserver
        assert proc.stop() == 0
        assert "Traceback" not in proc.output


@pytest.mark.etcd
def test_start_etcd_script_runs_a_three_member_cluster(tmp_path: Path) -> None:
    """start-etcd.sh / stop-etcd.sh as the README uses them: three members, one stopped
    and started again with its data, then all stopped."""
    ports = [free_port() for _ in range(6)]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ETCD")},
           "ETCD_BINARY": etcd_binary(),
           "KUBECORE_ETCD_CLIENT_PORTS": " ".join(map(str, ports[:3])),
           "KUBECORE_ETCD_PEER_PORTS": " ".join(map(str, ports[3:]))}
    data = tmp_path / "etcd"

    def script(name: str, *args: str) -> str:
        done = subprocess.run([str(EXAMPLE / name), str(data), *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        out = script("start-etcd.sh")
        for port in ports[:3]:
            assert f"up: 127.0.0.1:{port}" in out
        status = httpx.post(f"http://127.0.0.1:{ports[2]}/v3/cluster/member/list", json={},
                            timeout=5).json()
        assert sorted(m["name"] for m in status["members"]) == ["etcd-1", "etcd-2", "etcd-3"]
        assert "etcd-2 stopped" in script("stop-etcd.sh", "2")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{ports[1]}/health", timeout=1)
        etcd_put(f"127.0.0.1:{ports[0]}", "key", "value")  # a quorum of two remains
        assert "etcd-2 up" in script("start-etcd.sh", "2")
        # It rejoined with its data and what was written while it was away.
        assert etcd_get(f"127.0.0.1:{ports[1]}", "key") == b"value"
    finally:
        script("stop-etcd.sh")
    assert not list(data.glob("*.pid"))
