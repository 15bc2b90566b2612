"""examples/guestbook runs as its README says (on free ports), on a real Docker daemon.

Everything goes through the CLI in the README's order. The app works end to end only
if every hop does: a write reaches the store through the redis-master service, the
replica copies it through the same service, and a read reaches the replica through the
redis-slave service, each pod finding its services in the environment the apiserver
gave it; the client reaches the frontend through the proxy.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx

from tests.e2e.test_all_in_one_cluster import (
    Cluster,
    all_in_one,
    eventually,
    free_port,
    remove_node_containers,
    running,
    toml_table,
)
from tests.e2e.test_examples import EXAMPLES
from tests.services import list_containers

#: The example's well-known ports: services, then the pods' own.
PORTS = ("6379", "6380", "8000", "7379", "7380", "8001")
#: The README's commands, in order (file names under the example's folder).
CREATE = ("redis-master-pod.yaml", "redis-master-service.json",
          "redis-slave-controller.yaml", "redis-slave-service.json",
          "frontend-controller.yaml", "frontend-service.json")


def copy_with_free_ports(target: Path) -> dict[str, int]:
    """The example copied to ``target``, each well-known port replaced by a free one."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(PORTS):
        ports = {old: free_port() for old in PORTS}
    shutil.copytree(EXAMPLES / "guestbook", target)
    pattern = re.compile(r"\b(" + "|".join(PORTS) + r")\b")
    for path in target.iterdir():
        path.write_text(pattern.sub(lambda m: str(ports[m.group(1)]), path.read_text()))
    return ports


def guestbook(port: int, query: str, host: str = "127.0.0.1") -> str | None:
    """The frontend's answer to ``/cgi-bin/guestbook?query`` on ``host:port``."""
    page = httpx.get(f"http://{host}:{port}/cgi-bin/guestbook?{query}", timeout=5)
    return page.text if page.status_code == 200 else None


def test_guestbook_example(tmp_path: Path, docker_client: docker.DockerClient,
                           busybox_image: str, docker_labels: dict[str, str]) -> None:
    # The manifests and the config name the image the fixture builds.
    assert busybox_image == "kubecore/busybox:test"
    example = tmp_path / "example"
    ports = copy_with_free_ports(example)
    node = f"e2e-guestbook-{uuid.uuid4().hex[:8]}"
    args = ["--config", str(example / "kubecore.toml"), "--hostname-override", node,
            "--set", f"runtime_docker.node={node}",
            "--set", f"runtime_docker.labels={toml_table(docker_labels)}"]
    try:
        with all_in_one(tmp_path, args, node) as cluster:
            run_guestbook(cluster, example, ports, docker_client)
    finally:
        remove_node_containers(docker_client, node, docker_labels)


def run_guestbook(cluster: Cluster, example: Path, ports: dict[str, int],
                  client: docker.DockerClient) -> None:
    """The README's commands, from the first create to the last delete."""
    kubecore = cluster.kubecore
    frontend_port = ports["8000"]
    for name in CREATE:
        kubecore("create", "-f", str(example / name))
    waited = cluster.run("resize", "frontend", "1", "--wait", "--timeout", "90")
    assert waited.returncode == 0, waited.stderr
    assert waited.stderr.splitlines()[-1] == "frontend: 1/1 pods, 1 running"

    pods = eventually(lambda: running(cluster.pods("app=guestbook"), 3),
                      "the three pods to run", timeout=90)
    assert sorted(p["labels"]["name"] for p in pods) == [
        "frontend", "redis-master", "redis-slave"]
    table = kubecore("get", "pods", "-l", "app=guestbook")
    assert table.count("Running") == 3
    services: dict[str, dict[str, Any]] = {
        s["id"]: s for s in cluster.get_json("services", "-l", "app=guestbook")["items"]}
    assert sorted(services) == ["frontend", "redis-master", "redis-slave"]
    assert all(s["portalIP"].startswith("127.77.") for s in services.values())

    def endpoints() -> dict[str, list[str]] | None:
        found = {e["id"]: e.get("endpoints") or []
                 for e in cluster.get_json("endpoints")["items"]}
        ready = all(found.get(name) for name in services)
        return found if ready else None

    found = eventually(endpoints, "every service's endpoints")
    assert found["redis-master"] == [f"127.0.0.1:{ports['7379']}"]
    assert found["redis-slave"] == [f"127.0.0.1:{ports['7380']}"]
    assert found["frontend"] == [f"127.0.0.1:{ports['8001']}"]

    # The page, through the proxy.
    page = eventually(lambda: httpx.get(f"http://127.0.0.1:{frontend_port}/", timeout=5),
                      "the frontend through the proxy")
    assert page.status_code == 200 and "<h1>Guestbook</h1>" in page.text

    # A write: frontend -> redis-master service -> store.
    assert eventually(lambda: guestbook(frontend_port, "cmd=set&value=hello+kubecore"),
                      "a write through the frontend") == "Updated\n"
    # A read: frontend -> redis-slave service -> replica, which copied the entry from
    # the store through the redis-master service. The frontend names the address it
    # read from: the redis-slave service's portal IP and port, from its environment.
    slave = services["redis-slave"]
    expected = (f"entries read from redis-slave at {slave['portalIP']}:{slave['port']}:\n"
                "hello kubecore\n")
    assert eventually(lambda: guestbook(frontend_port, "cmd=get") == expected or None,
                      "the entry read back through the replica")

    # A second entry, through the frontend service's portal IP this time.
    frontend_ip = services["frontend"]["portalIP"]
    assert guestbook(frontend_port, "cmd=set&value=second%20entry",
                     host=frontend_ip) == "Updated\n"
    assert eventually(
        lambda: (guestbook(frontend_port, "cmd=get", host=frontend_ip) or "").endswith(
            "hello kubecore\nsecond entry\n") or None,
        "both entries through the portal IP")

    # The README's teardown.
    for rc in ("frontend", "redis-slave"):
        stopped = cluster.run("stop", rc, "--wait", "--timeout", "90")
        assert stopped.returncode == 0, stopped.stderr
        assert kubecore("rm", rc) == f"replicationControllers/{rc} deleted\n"
    assert kubecore("delete", "-f", str(example / "redis-master-pod.yaml")) == (
        "pods/redis-master deleted\n")
    deleted = kubecore("delete", *(a for name in ("frontend-service.json",
                                                  "redis-slave-service.json",
                                                  "redis-master-service.json")
                                   for a in ("-f", str(example / name))))
    assert deleted.splitlines() == ["services/frontend deleted", "services/redis-slave deleted",
                                    "services/redis-master deleted"]
    assert cluster.pods("app=guestbook") == []
    assert cluster.get_json("services", "-l", "app=guestbook")["items"] == []
    eventually(lambda: not list_containers(
        client, filters={"label": f"kubecore.node={cluster.node}"}), "the containers to go")
