"""End to end with Docker: a service in front of two busybox httpd pods answers through
the proxy from both.

One all-in-one ``kubecore run`` (store_sqlite, apiserver, scheduler, controllers, the
kubelet on runtime_docker, the proxy fed from the API) with the busybox test image as
both pod and infra image: a replication controller of two pods, each serving its own
hostname (its pod id) with busybox httpd on container port 80, published on
127.0.0.1 at a port Docker picks; the endpoints controller lists both published
addresses and requests through the service's port reach both pods.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.e2e.test_all_in_one_cluster import eventually, free_port
from tests.e2e.test_kubelet_docker import toml_table
from tests.processes import KubecoreProcess

LOCAL = "127.0.0.1"
POD_PORT = 80
# Each pod writes its hostname (the runtime sets it to the pod id) as its only page.
SERVE_HOSTNAME = f"hostname > /tmp/index.html && exec httpd -f -p {POD_PORT} -h /tmp"


@pytest.fixture
def node_name(docker_client: docker.DockerClient, docker_labels: dict[str, str]
              ) -> Iterator[str]:
    """A node name of this test alone; its containers are removed at the end."""
    name = f"e2e-proxy-{uuid.uuid4().hex[:8]}"
    yield name
    for container in docker_client.containers.list(
            all=True, filters={"label": f"kubecore.node={name}"}):
        # Every container the run made carries the test labels, so cleanup finds it.
        assert all(container.labels.get(k) == v for k, v in docker_labels.items())
        container.remove(force=True, v=True)


def replication_controller(image: str, replicas: int) -> dict[str, Any]:
    container = {"name": "httpd", "image": image, "imagePullPolicy": "PullNever",
                 "command": ["sh", "-c", SERVE_HOSTNAME],
                 "ports": [{"name": "http", "containerPort": POD_PORT}]}
    return {
        "kind": "ReplicationController", "apiVersion": "v1beta1", "id": "hostnames",
        "labels": {"name": "hostnames"},
        "desiredState": {
            "replicas": replicas, "replicaSelector": {"name": "hostnames"},
            "podTemplate": {
                "labels": {"name": "hostnames"},
                "desiredState": {"manifest": {"version": "v1beta1", "id": "hostnames",
                                              "containers": [container]}},
            },
        },
    }


def test_service_answers_from_both_pods_through_the_proxy(
    tmp_path: Path, busybox_image: str, docker_labels: dict[str, str], node_name: str
) -> None:
    service_port = free_port()
    args = ["run", "--data-dir", str(tmp_path / "data"), "--log-format", "json",
            "--hostname-override", node_name,
            "--set", "apiserver.port=0", "--set", "kubelet.port=0",
            "--set", "kubelet.sync_frequency=1",
            "--set", "controllers.resync_interval=1",
            "--set", f"runtime_docker.infra_image={busybox_image}",
            "--set", 'runtime_docker.infra_command=["sleep", "2147483647"]',
            "--set", f"runtime_docker.labels={toml_table(docker_labels)}",
            "--set", f"runtime_docker.node={node_name}"]
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up", timeout=60)
        api = httpx.Client(base_url=f"{url}/api/v1beta1", timeout=10)
        assert api.post("/replicationControllers",
                        json=replication_controller(busybox_image, 2)).status_code == 200
        service = {"kind": "Service", "apiVersion": "v1beta1", "id": "hostnames",
                   "port": service_port, "selector": {"name": "hostnames"},
                   "containerPort": "http"}
        assert api.post("/services", json=service).status_code == 200

        def running_pods() -> list[str] | None:
            pods = api.get("/pods", params={"labels": "name=hostnames"}).json()["items"]
            running = [p["id"] for p in pods
                       if p["currentState"].get("status") == "Running"]
            return sorted(running) if len(pods) == 2 and len(running) == 2 else None

        pod_ids = eventually(running_pods, "both pods to run", timeout=90)

        def both_endpoints() -> list[str] | None:
            listed: list[str] = api.get("/endpoints/hostnames").json().get("endpoints") or []
            return listed if len(listed) == 2 else None

        listed = eventually(both_endpoints, "the service's two endpoints")
        # The pods' ports are published on loopback, at two different ports.
        assert all(e.startswith(f"{LOCAL}:") for e in listed), listed
        assert len(set(listed)) == 2

        seen: set[str] = set()

        def answered_by_both() -> bool:
            page = httpx.get(f"http://{LOCAL}:{service_port}/index.html", timeout=5)
            if page.status_code == 200:
                seen.add(page.text.strip())
            return len(seen) >= 2

        eventually(answered_by_both, "answers from both pods through the proxy", timeout=60)
        assert seen == set(pod_ids)

        # Round robin: consecutive requests alternate between the two pods.
        answers = [httpx.get(f"http://{LOCAL}:{service_port}/index.html", timeout=5).text.strip()
                   for _ in range(6)]
        assert set(answers) == set(pod_ids)
        assert all(a != b for a, b in itertools.pairwise(answers)), answers
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
