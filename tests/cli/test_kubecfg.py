"""kubecfg verbs: ``run`` / ``run-container``, ``resize``, ``stop``, ``rm``, ``--wait``.

No controller-manager runs: the tests check the replication controller's fields, and
``--wait`` is satisfied by pods created by hand through the API.
"""

from __future__ import annotations

import json
import subprocess

from tests.cli.test_resources import cli, kubecore, lines, rc_json, server
from tests.processes import KUBECORE

__all__ = ["server"]  # the module-scoped master, shared by these tests


def replicas(url: str, name: str) -> int:
    result = cli(url, "get", f"rc/{name}", "-o", "json")
    assert result.exit_code == 0, result.stderr
    count: int = json.loads(result.stdout)["desiredState"]["replicas"]
    return count


def pod_json(name: str, app: str) -> str:
    return json.dumps({
        "kind": "Pod", "apiVersion": "v1beta1", "id": name, "labels": {"app": app},
        "desiredState": {"manifest": {"version": "v1beta1",
                                      "containers": [{"name": "c", "image": "nginx"}]}},
    })


def test_resize_stop_rm_as_processes(server: str) -> None:
    assert cli(server, "create", "-f", "-", input=rc_json("life", 2)).exit_code == 0
    resized = kubecore(server, "resize", "life", "5")
    assert (resized.returncode, resized.stdout) == (
        0, "replicationControllers/life resized to 5\n")
    assert replicas(server, "life") == 5

    refused = kubecore(server, "rm", "life")
    assert refused.returncode == 1
    assert refused.stderr == ("error: replicationControllers/life still wants 5 replicas; "
                              "stop it first (kubecore stop life)\n")

    stopped = cli(server, "stop", "life")
    assert (stopped.exit_code, stopped.stdout) == (0, "replicationControllers/life stopped\n")
    assert replicas(server, "life") == 0

    removed = kubecore(server, "rm", "life")
    assert (removed.returncode, removed.stdout) == (0, "replicationControllers/life deleted\n")
    gone = cli(server, "resize", "life", "1")
    assert gone.exit_code == 1
    assert gone.stderr == 'error: replicationController "life" not found\n'


def test_run_container_with_ports_and_service(server: str) -> None:
    result = kubecore(server, "run-container", "nginx", "3", "my-web", "-p", "8080:80,53",
                      "-s", "8000", "-o", "json")
    assert result.returncode == 0, result.stderr
    rc_text, service_text = result.stdout.split("\n}\n", 1)
    rc = json.loads(rc_text + "\n}")
    assert rc["id"] == "my-web"
    assert rc["labels"] == {"name": "my-web"}
    state = rc["desiredState"]
    assert (state["replicas"], state["replicaSelector"]) == (3, {"name": "my-web"})
    assert state["podTemplate"]["labels"] == {"name": "my-web"}
    [container] = state["podTemplate"]["desiredState"]["manifest"]["containers"]
    assert (container["name"], container["image"]) == ("my-web", "nginx")
    assert [(p.get("hostPort", 0), p["containerPort"]) for p in container["ports"]] == [
        (8080, 80), (0, 53)]
    service = json.loads(service_text)
    assert (service["id"], service["port"], service["selector"]) == (
        "my-web", 8000, {"name": "my-web"})

    table = cli(server, "get", "rc", "-l", "name=my-web")
    assert lines(table.stdout) == ["NAME IMAGE(S) SELECTOR REPLICAS",
                                   "my-web nginx name=my-web 3"]
    no_service = kubecore(server, "run", "busybox", "1", "plain")
    assert no_service.returncode == 0, no_service.stderr
    assert lines(no_service.stdout) == ["NAME IMAGE(S) SELECTOR REPLICAS",
                                        "plain busybox name=plain 1"]
    assert cli(server, "get", "services/plain").exit_code == 1


def test_run_container_rejects_bad_input(server: str) -> None:
    bad_name = cli(server, "run-container", "nginx", "1", "My_Web")
    assert bad_name.exit_code == 1
    assert bad_name.stderr.startswith("error: invalid name 'My_Web': must be a DNS label")
    bad_port = cli(server, "run-container", "nginx", "1", "web", "-p", "80:http")
    assert (bad_port.exit_code, bad_port.stderr) == (
        1, "error: invalid port '80:http': expected [HOSTPORT:]CONTAINERPORT\n")
    assert cli(server, "run-container", "nginx", "1", "dup").exit_code == 0
    dup = cli(server, "run-container", "nginx", "1", "dup")
    assert dup.exit_code == 1
    assert dup.stderr.startswith("error: ")
    assert len(dup.stderr.splitlines()) == 1


def test_resize_wait_succeeds_when_pods_appear(server: str) -> None:
    assert cli(server, "create", "-f", "-", input=rc_json("waiter", 0)).exit_code == 0
    assert cli(server, "create", "-f", "-", input=pod_json("waiter-a", "waiter")).exit_code == 0
    proc = subprocess.Popen(
        [*KUBECORE, "resize", "waiter", "2", "--wait", "--timeout", "20", "--server", server],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        # The second pod appears only once the command has seen the first alone.
        assert proc.stderr.readline() == "waiter: 1/2 pods\n"
        assert cli(server, "create", "-f", "-",
                   input=pod_json("waiter-b", "waiter")).exit_code == 0
        assert proc.wait(timeout=20) == 0
        assert proc.stderr.read() == "waiter: 2/2 pods\n"
        assert proc.stdout.read() == "replicationControllers/waiter resized to 2\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_wait_times_out_with_a_clear_message(server: str) -> None:
    result = cli(server, "run-container", "nginx", "2", "lonely", "--wait", "--timeout", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "lonely: 0/2 pods",
        "error: timed out after 1s waiting for replicationController lonely: 0 of 2 pods",
    ]
    assert replicas(server, "lonely") == 2
