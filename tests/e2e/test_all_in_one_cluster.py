"""End to end: a user drives an all-in-one ``kubecore run`` with the CLI, on each runtime.

One ``kubecore run`` process (store_sqlite, apiserver, scheduler, controllers, kubelet
with source_api, proxy fed from the API) on runtime_exec or runtime_docker. Everything
goes through ``kubecore`` commands as a person would type them: create from v0.5
manifest files, list as tables and JSON, resize up and down with ``--wait``, reach the
pods through their service on the proxy, stop, remove and delete, and bad files end in
``error:`` lines with exit status 1.

The Docker variant runs the busybox test image (also as infra image, with
``infra_command`` sleep); its containers carry the test labels
(``runtime_docker.labels``) and a node name of their own (``runtime_docker.node``), by
which teardown removes them: the kubelet leaves its pods running when it stops.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from tests.e2e.test_example_standalone_kubelet import _sweep as sweep_exec_pods
from tests.processes import KubecoreProcess, run_kubecore
from tests.services import list_containers

T = TypeVar("T")

#: The plugins of an all-in-one run besides the runtime (the builtins come anyway).
CLUSTER_PLUGINS = ("store_sqlite", "scheduler_priority", "proxy_userspace", "source_api")
#: The infra container's command when the busybox test image is the infra image.
INFRA_COMMAND = '["sleep", "2147483647"]'


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


def toml_table(values: dict[str, str]) -> str:
    """``{"a" = "b"}``: a TOML inline table for ``--set``."""
    return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in values.items()) + "}"


def docker_args(node: str, image: str, labels: dict[str, str]) -> list[str]:
    """``kubecore run`` arguments for an all-in-one on runtime_docker whose containers
    carry ``labels`` and the node name ``node``, with ``image`` as infra image."""
    return ["--plugins", ",".join(["runtime_docker", *CLUSTER_PLUGINS]),
            "--hostname-override", node,
            "--set", f"runtime_docker.node={node}",
            "--set", f"runtime_docker.labels={toml_table(labels)}",
            "--set", f"runtime_docker.infra_image={image}",
            "--set", f"runtime_docker.infra_command={INFRA_COMMAND}"]


def remove_node_containers(client: Any, node: str, labels: dict[str, str]) -> None:
    """Remove every container the runtime made for ``node`` (all carry ``labels``)."""
    for container in client.containers.list(all=True,
                                            filters={"label": f"kubecore.node={node}"}):
        assert all(container.labels.get(k) == v for k, v in labels.items()), container.labels
        container.remove(force=True, v=True)


@dataclass
class Cluster:
    """A running all-in-one ``kubecore run`` and the CLI pointed at it."""

    proc: KubecoreProcess
    url: str
    node: str

    def run(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run_kubecore([*argv, "--server", self.url], timeout=timeout)

    def kubecore(self, *argv: str) -> str:
        """Run a command that must succeed; its stdout."""
        result = self.run(*argv)
        assert result.returncode == 0, (argv, result.stderr)
        return result.stdout

    def get_json(self, what: str, *argv: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubecore("get", what, *argv, "-o", "json"))
        return found

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("pods", "-l", selector)["items"]
        return items


@contextmanager
def all_in_one(tmp_path: Path, args: list[str], node: str) -> Iterator[Cluster]:
    """``kubecore run`` (role all) with ``args`` on free ports, stopped at the end; the
    run must stop cleanly and log no traceback."""
    argv = ["run", "--data-dir", str(tmp_path / "data"), "--log-format", "json",
            "--set", "apiserver.port=0", "--set", "kubelet.port=0",
            "--set", "kubelet.sync_frequency=1", "--set", "kubelet.grace_period=1",
            "--set", "controllers.resync_interval=1", *args]
    with KubecoreProcess(argv) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up")
        yield Cluster(proc, url, node)
        assert proc.stop() == 0
    assert "Traceback" not in proc.output


@dataclass
class Runtime:
    """How a runtime is selected, what pod serves HTTP on it and how to clean up."""

    name: str
    node: str
    args: list[str]
    image: str
    #: The container's command, given the port it listens on.
    command: Callable[[int], list[str]]
    #: The container port and host port of the pod.
    ports: Callable[[int], dict[str, int]]
    #: Whether the pods listening on this port have all stopped.
    gone: Callable[[int], bool]
    #: Removes whatever the run left (its pods outlive the kubelet on purpose).
    cleanup: Callable[[], None]


# Two replicas of an exec pod share the host: SO_REUSEPORT lets both listen on one port.
EXEC_SERVER = """\
import http.server, sys
class Server(http.server.ThreadingHTTPServer):
    allow_reuse_port = True
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=sys.argv[2], **kwargs)
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture(params=["exec", pytest.param("docker", marks=pytest.mark.docker)])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    node = f"e2e-cli-{uuid.uuid4().hex[:8]}"
    if request.param == "exec":
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from a pod\n")
        spec = Runtime(
            "exec", node,
            ["--plugins", ",".join(["runtime_exec", *CLUSTER_PLUGINS]),
             "--hostname-override", node],
            "python",
            lambda port: [sys.executable, "-c", EXEC_SERVER, str(port), str(www)],
            lambda port: {"containerPort": port},
            port_closed,
            lambda: trio.run(sweep_exec_pods, tmp_path / "data" / "exec"),
        )
    else:
        client = request.getfixturevalue("docker_client")
        image: str = request.getfixturevalue("busybox_image")
        labels: dict[str, str] = request.getfixturevalue("docker_labels")
        spec = Runtime(
            "docker", node,
            docker_args(node, image, labels),
            image,
            # Each pod answers with its hostname, which the runtime sets to the pod's id.
            lambda port: ["sh", "-c", 'echo "hello from $(hostname)" > /www/index.html'
                          f" && exec httpd -f -p {port} -h /www"],
            # Published on a free port of 127.0.0.1: replicas never collide.
            lambda port: {"containerPort": port, "hostPort": 0},
            lambda port: not list_containers(
                client, filters={"label": f"kubecore.node={node}"}),
            lambda: remove_node_containers(client, node, labels),
        )
    try:
        yield spec
    finally:
        spec.cleanup()


def rc_yaml(image: str, command: list[str], ports: dict[str, int]) -> str:
    """A v0.5 (v1beta1) replication controller ``web`` of one replica, as YAML."""
    port_items = ", ".join(f"{k}: {v}" for k, v in ports.items())
    return f"""\
kind: ReplicationController
apiVersion: v1beta1
id: web
labels:
  name: web
desiredState:
  replicas: 1
  replicaSelector:
    name: web
  podTemplate:
    labels:
      name: web
    desiredState:
      manifest:
        version: v1beta1
        id: web
        containers:
          - name: web
            image: {image}
            imagePullPolicy: PullNever
            command: {json.dumps(command)}
            ports:
              - {{{port_items}}}
"""


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def running(pods: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    """``pods`` when there are ``count`` of them, all Running."""
    ok = len(pods) == count and all(p["currentState"]["status"] == "Running" for p in pods)
    return pods if ok else None


def test_user_drives_the_cli(tmp_path: Path, runtime: Runtime) -> None:
    pod_port, service_port = (80 if runtime.name == "docker" else free_port()), free_port()
    rc_file = tmp_path / "web-controller.yaml"
    rc_file.write_text(rc_yaml(runtime.image, runtime.command(pod_port),
                               runtime.ports(pod_port)))
    service_file = tmp_path / "web-service.json"
    service_file.write_text(json.dumps({
        "kind": "Service", "apiVersion": "v1beta1", "id": "web", "port": service_port,
        "selector": {"name": "web"}, "containerPort": pod_port,
    }))
    node = runtime.node

    with all_in_one(tmp_path, runtime.args, node) as cluster:
        kubecore = cluster.kubecore
        kubecore("create", "-f", str(rc_file))
        kubecore("create", "-f", str(service_file))

        [pod] = eventually(lambda: running(cluster.pods("name=web"), 1), "the pod to run",
                           timeout=90)
        assert pod["currentState"]["host"] == node
        assert [m["id"] for m in cluster.get_json("minions")["items"]] == [node]

        # Tables, as kubecfg prints them.
        table = kubecore("get", "pods", "-l", "name=web").splitlines()
        assert table[0].split() == ["NAME", "IMAGE(S)", "HOST", "LABELS", "STATUS"]
        assert table[1].split()[1:] == [runtime.image, f"{node}/127.0.0.1", "name=web",
                                        "Running"]
        assert kubecore("get", "rc").splitlines()[1].split() == [
            "web", runtime.image, "name=web", "1"]
        services = kubecore("get", "services").splitlines()
        [web_row] = [line.split() for line in services if line.startswith("web ")]
        assert (web_row[2], web_row[-1]) == ("name=web", str(service_port))

        def endpoints(count: int) -> list[str] | None:
            found: list[str] = cluster.get_json("endpoints/web").get("endpoints") or []
            return found if len(found) == count else None

        [address] = eventually(lambda: endpoints(1), "the endpoints")
        if runtime.name == "exec":
            assert address == f"127.0.0.1:{pod_port}"
        else:
            assert address.startswith("127.0.0.1:") and address != f"127.0.0.1:{pod_port}"

        def through_proxy() -> str | None:
            page = httpx.get(f"http://127.0.0.1:{service_port}/index.html", timeout=2)
            return page.text if page.status_code == 200 else None

        first = eventually(through_proxy, "the service through the proxy")
        assert first.startswith("hello from ")
        if runtime.name == "docker":
            assert first == f"hello from {pod['id']}\n"

        # Up with --wait: the command returns once both pods run.
        up = cluster.run("resize", "web", "2", "--wait", "--timeout", "90")
        assert up.returncode == 0, up.stderr
        assert up.stdout == "replicationControllers/web resized to 2\n"
        assert up.stderr.splitlines()[-1] == "web: 2/2 pods, 2 running"
        pods = cluster.pods("name=web")
        assert running(pods, 2), pods
        if runtime.name == "docker":
            # Two published addresses; the proxy's round robin reaches both pods.
            eventually(lambda: endpoints(2), "both endpoints")
            expected = {f"hello from {p['id']}\n" for p in pods}
            answers: set[str | None] = set()

            def both_answered() -> bool:
                answers.add(through_proxy())
                return expected <= answers

            eventually(both_answered, "the proxy to reach both pods")
            assert answers - {None} == expected

        # Down with --wait: one pod left, still serving through the proxy.
        down = cluster.run("resize", "web", "1", "--wait", "--timeout", "90")
        assert down.returncode == 0, down.stderr
        assert down.stderr.splitlines()[-1] == "web: 1/1 pods, 1 running"
        [kept] = running(cluster.pods("name=web"), 1) or []
        eventually(lambda: endpoints(1), "one endpoint")
        if runtime.name == "docker":
            eventually(lambda: through_proxy() == f"hello from {kept['id']}\n",
                       "the remaining pod through the proxy")
        else:
            assert eventually(through_proxy, "the remaining pod") == "hello from a pod\n"

        # Bad files: one error line (plus one per invalid field), exit status 1.
        missing = cluster.run("create", "-f", str(tmp_path / "nope.yaml"))
        assert missing.returncode == 1
        assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
        broken = tmp_path / "broken.yaml"
        broken.write_text("kind: Pod\n  id: [x\n")
        invalid = tmp_path / "invalid.json"
        invalid.write_text(json.dumps({"kind": "ReplicationController",
                                       "apiVersion": "v1beta1", "id": "bad",
                                       "desiredState": {"replicas": -1}}))
        for bad in (broken, invalid):
            result = cluster.run("create", "-f", str(bad))
            assert result.returncode == 1, result
            [error, *fields] = result.stderr.splitlines()
            assert error.startswith("error: "), result.stderr
            assert fields and all(line.startswith("  ") for line in fields), result.stderr
            assert "Traceback" not in result.stderr
        duplicate = cluster.run("create", "-f", str(service_file))
        assert (duplicate.returncode, duplicate.stderr) == (
            1, 'error: service "web" already exists\n')

        # Stop (--wait), remove, delete: nothing left, and the pods are gone.
        stopped = cluster.run("stop", "web", "--wait", "--timeout", "90")
        assert stopped.returncode == 0, stopped.stderr
        assert cluster.pods("name=web") == []
        assert kubecore("rm", "web") == "replicationControllers/web deleted\n"
        assert kubecore("delete", "-f", str(service_file)) == "services/web deleted\n"
        gone = cluster.run("get", "services/web")
        assert (gone.returncode, gone.stderr) == (1, 'error: service "web" not found\n')
        assert cluster.get_json("rc")["items"] == []

        eventually(lambda: port_closed(service_port), "the service's listener to close")
        eventually(lambda: runtime.gone(pod_port), "the pod to stop")
