"""End to end: the all-in-one cluster on embedded defaults, driven through its REST API.

One ``kubecore run`` process (store_sqlite, apiserver, scheduler, controllers, kubelet
with source_api, proxy fed from the API): a replication controller and a service are
created; the scheduler binds the pod to the registered minion, the kubelet runs it, its
status and address reach the endpoints, and the proxy forwards to it.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.processes import KubecoreProcess

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(check: Callable[[], T | None], what: str, timeout: float = 40.0) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, IndexError) as exc:
            last, result = exc, None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def test_rc_and_service_through_the_proxy(tmp_path: Path) -> None:
    pod_port, service_port = free_port(), free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from a pod\n")
    args = ["run", "--data-dir", str(tmp_path / "data"), "--log-format", "json",
            "--hostname-override", "node-a", "--set", "apiserver.port=0",
            "--set", "kubelet.port=0", "--set", "runtime_docker.without_infra_image=decline",
            "--set", "controllers.resync_interval=1"]
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up")
        api = httpx.Client(base_url=f"{url}/api/v1beta1", timeout=10)
        command = [sys.executable, "-m", "http.server", str(pod_port), "--bind", "127.0.0.1",
                   "--directory", str(tmp_path / "www")]
        rc: dict[str, Any] = {
            "kind": "ReplicationController", "apiVersion": "v1beta1", "id": "web",
            "labels": {"name": "web"},
            "desiredState": {
                "replicas": 1, "replicaSelector": {"name": "web"},
                "podTemplate": {
                    "labels": {"name": "web"},
                    "desiredState": {"manifest": {
                        "version": "v1beta1", "id": "web",
                        "containers": [{"name": "web", "image": "python", "command": command,
                                        "ports": [{"containerPort": pod_port}]}],
                    }},
                },
            },
        }
        service = {"kind": "Service", "apiVersion": "v1beta1", "id": "web",
                   "port": service_port, "selector": {"name": "web"},
                   "containerPort": pod_port}
        assert api.post("/replicationControllers", json=rc).status_code == 200
        assert api.post("/services", json=service).status_code == 200

        def running_pod() -> dict[str, Any] | None:
            pods = api.get("/pods", params={"labels": "name=web"}).json()["items"]
            running = [p for p in pods if p["currentState"].get("status") == "Running"]
            return running[0] if len(pods) == 1 and running else None

        pod = eventually(running_pod, "the pod to run")
        assert pod["currentState"]["host"] == "node-a"
        minions = api.get("/minions").json()["items"]
        assert [m["id"] for m in minions] == ["node-a"]

        endpoints = eventually(
            lambda: api.get("/endpoints/web").json().get("endpoints"), "endpoints"
        )
        assert endpoints == [f"127.0.0.1:{pod_port}"]

        page = eventually(
            lambda: httpx.get(f"http://127.0.0.1:{service_port}/index.html", timeout=2),
            "the service through the proxy",
        )
        assert page.text == "hello from a pod\n"

        # Resize to 0: the controller deletes the pod and the kubelet stops it.
        current = api.get("/replicationControllers/web").json()
        current["desiredState"]["replicas"] = 0
        assert api.put("/replicationControllers/web", json=current).status_code == 200
        eventually(lambda: api.get("/pods", params={"labels": "name=web"}).json()["items"] == [],
                   "the pod to be deleted")

        def port_closed() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", pod_port)) != 0

        eventually(port_closed, "the pod's process to stop")
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
