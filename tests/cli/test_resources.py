"""``kubecore get|list|create|update|delete`` against a real master on store_sqlite.

One master process (without controllers) serves each module; each test uses its own
object ids (or its own namespace) so the tests do not see each other's objects. The
main paths run the CLI as a real process; the rest use click's CliRunner on the same
server.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from kubecore.cli import main
from kubecore.plugins import BUILTIN_PLUGINS
from tests.processes import KUBECORE, KubecoreProcess, run_kubecore

POD_AND_SERVICE = """\
kind: Pod
apiVersion: v1beta1
id: {name}
labels: {{app: {name}, tier: front}}
desiredState:
  manifest:
    version: v1beta1
    id: {name}
    containers:
    - name: www
      image: nginx
      ports: [{{containerPort: 80, hostPort: 8081}}]
---
kind: Service
apiVersion: v1beta1
id: {name}
port: 80
labels: {{app: {name}}}
selector: {{app: {name}}}
containerPort: 80
"""

RC = {
    "kind": "ReplicationController", "apiVersion": "v1beta1", "id": "", "labels": {},
    "desiredState": {
        "replicas": 2, "replicaSelector": {},
        "podTemplate": {"labels": {}, "desiredState": {"manifest": {
            "version": "v1beta1", "containers": [{"name": "www", "image": "nginx"}]}}},
    },
}


def rc_json(name: str, replicas: int = 2) -> str:
    rc = json.loads(json.dumps(RC))
    labels = {"app": name}
    rc.update(id=name, labels=labels)
    rc["desiredState"].update(replicas=replicas, replicaSelector=labels)
    rc["desiredState"]["podTemplate"]["labels"] = labels
    return json.dumps(rc)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("master")
    args = ["run", "--role", "master", "--plugins", "store_sqlite", "--data-dir", str(data),
            "--log-format", "json", "--set", "apiserver.port=0"]
    if "controllers" in BUILTIN_PLUGINS:
        # The replication counts these tests check are the ones they set by hand.
        args += ["--set", "controllers.replication=false",
                 "--set", "controllers.endpoints=false"]
    with KubecoreProcess(args) as proc:
        url: str = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        yield url
        proc.stop()


def cli(server: str, *args: str, input: str | None = None) -> Result:
    """``kubecore ARGS --server URL`` in-process."""
    return CliRunner().invoke(main, [*args, "--server", server], input=input)


def kubecore(server: str, *args: str, input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``kubecore ARGS --server URL`` as a real process."""
    return run_kubecore([*args, "--server", server], input=input)


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_create_list_get_update_delete_as_processes(server: str, tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(POD_AND_SERVICE.format(name="crud"))
    created = kubecore(server, "create", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""
    assert lines(created.stdout)[:2] == ["NAME IMAGE(S) HOST LABELS STATUS",
                                         "crud nginx <unassigned> app=crud,tier=front Waiting"]
    assert lines(created.stdout)[2] == "NAME LABELS SELECTOR IP PORT"
    assert lines(created.stdout)[3].startswith("crud app=crud app=crud ")

    table = kubecore(server, "list", "pods", "-l", "app=crud")
    assert table.returncode == 0, table.stderr
    assert lines(table.stdout) == ["NAME IMAGE(S) HOST LABELS STATUS",
                                   "crud nginx <unassigned> app=crud,tier=front Waiting"]

    listed = cli(server, "get", "services", "-l", "app=crud", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert body["kind"] == "ServiceList"
    assert [(s["id"], s["port"], s["selector"]) for s in body["items"]] == [
        ("crud", 80, {"app": "crud"})]

    shown = kubecore(server, "get", "pods/crud", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    pod = yaml.safe_load(shown.stdout)
    assert (pod["kind"], pod["id"], pod["namespace"]) == ("Pod", "crud", "default")
    version = pod["resourceVersion"]

    manifest.write_text(POD_AND_SERVICE.format(name="crud").replace("tier: front",
                                                                    "tier: back"))
    updated = cli(server, "update", "-f", str(manifest), "-o", "json")
    assert updated.exit_code == 0, updated.stderr
    first = json.loads(updated.stdout.split("\n}\n")[0] + "\n}")
    assert first["labels"] == {"app": "crud", "tier": "back"}
    assert first["resourceVersion"] > version

    deleted = kubecore(server, "delete", "pods/crud")
    assert (deleted.returncode, deleted.stdout) == (0, "pods/crud deleted\n")
    gone = cli(server, "get", "pods/crud")
    assert gone.exit_code == 1
    assert gone.stderr == 'error: pod "crud" not found\n'


def test_invalid_object_prints_each_cause(server: str) -> None:
    bad = ('{"kind":"Pod","apiVersion":"v1beta1","id":"bad","desiredState":{"manifest":'
           '{"version":"v1beta1","containers":[{"name":"x"}]}}}')
    result = kubecore(server, "create", "-f", "-", input=bad)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'error: Pod "bad" is invalid:',
        "  desiredState.manifest.containers[0].image: required value",
    ]
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_one_line() -> None:
    result = kubecore("http://127.0.0.1:1", "get", "pods")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the apiserver at http://127.0.0.1:1: ")
    assert len(result.stderr.splitlines()) == 1


def test_bad_file_names_the_file_and_causes(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind":"Pod","apiVersion":"v1beta1","id":"x","labels":"oops"}')
    result = cli(server, "create", "-f", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f'error: {bad}: Pod "x" is invalid: 1 problem',
                                          "  labels: expected an object, got string"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pod\nid: [\n")
    result = cli(server, "create", "-f", str(broken))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {broken}: input is invalid: 1 problem"
    missing = cli(server, "create", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 1
    assert missing.stderr == f"error: cannot read {tmp_path / 'nope.yaml'}: " \
                             "No such file or directory\n"


def test_directory_and_stdin_inputs(server: str, tmp_path: Path) -> None:
    (tmp_path / "b-rc.json").write_text(rc_json("dirrc"))
    (tmp_path / "a-pod.yaml").write_text(POD_AND_SERVICE.format(name="dirpod")
                                         .split("---")[0])
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    result = cli(server, "create", "-f", str(tmp_path), "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.index('"dirpod"') < result.stdout.index('"dirrc"')
    rcs = cli(server, "get", "rc", "-l", "app=dirrc")
    assert lines(rcs.stdout) == ["NAME IMAGE(S) SELECTOR REPLICAS",
                                 "dirrc nginx app=dirrc 2"]
    piped = cli(server, "create", "-f", "-", "-o", "yaml",
                input=rc_json("stdinrc").replace('"id": "stdinrc"', '"id": "stdinrc2"'))
    assert piped.exit_code == 0, piped.stderr
    assert yaml.safe_load(piped.stdout)["id"] == "stdinrc2"


def test_namespaces_and_field_selectors(server: str) -> None:
    pod = POD_AND_SERVICE.format(name="nsp").split("---")[0]
    assert cli(server, "create", "-f", "-", "-n", "other", input=pod).exit_code == 0
    assert cli(server, "create", "-f", "-", input=pod).exit_code == 0
    everywhere = cli(server, "list", "pods", "--fields", "name=nsp", "-o", "json")
    assert sorted(p["namespace"] for p in json.loads(everywhere.stdout)["items"]) == [
        "default", "other"]
    one = cli(server, "list", "pods", "-n", "other", "-l", "app=nsp", "-o", "json")
    assert [p["namespace"] for p in json.loads(one.stdout)["items"]] == ["other"]
    assert cli(server, "delete", "pods/nsp", "-n", "other").exit_code == 0
    assert cli(server, "get", "pods/nsp", "-n", "other").stderr == \
        'error: pod "nsp" not found\n'
    assert cli(server, "get", "pods/nsp").exit_code == 0


def test_update_is_compare_and_swap_on_the_stored_version(server: str) -> None:
    assert cli(server, "create", "-f", "-", input=rc_json("casrc", 1)).exit_code == 0
    result = cli(server, "update", "rc/casrc", "-f", "-", "-o", "json",
                 input=rc_json("casrc", 4))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["desiredState"]["replicas"] == 4
    # A URL input: the server's own copy, sent back unchanged at the stored version.
    from_url = cli(server, "update", "-f", f"{server}/api/v1beta1/replicationControllers/casrc",
                   "-o", "json")
    assert from_url.exit_code == 0, from_url.stderr
    assert json.loads(from_url.stdout)["desiredState"]["replicas"] == 4
    wrong = cli(server, "update", "rc/other", "-f", "-", input=rc_json("casrc", 4))
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("error: the input holds replicationControllers/casrc")
    missing = cli(server, "update", "-f", "-", input=rc_json("norc"))
    assert missing.exit_code == 1
    assert missing.stderr == 'error: replicationController "norc" not found\n'


def test_other_tables_and_usage_errors(server: str) -> None:
    for resource, header in [("minions", "NAME LABELS"), ("endpoints", "NAME ENDPOINTS"),
                             ("events", "TIME KIND NAME REASON MESSAGE")]:
        result = cli(server, "get", resource, "-n", "empty")
        assert result.exit_code == 0, result.stderr
        assert lines(result.stdout) == [header]
    unknown = cli(server, "get", "widgets")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: unknown resource 'widgets'")
    no_id = cli(server, "delete", "pods")
    assert (no_id.exit_code, no_id.stderr) == (1, "error: delete needs an id: pods/<id>\n")
    no_input = cli(server, "create")
    assert (no_input.exit_code, no_input.stderr) == (
        1, "error: no input: give -f FILE|DIR|URL|-\n")
    bad_selector = cli(server, "list", "pods", "-l", "nonsense")
    assert bad_selector.exit_code == 1
    assert bad_selector.stderr.startswith("error: ")


def test_token_file_and_env_server(server: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    result = CliRunner().invoke(main, ["get", "pods", "--token-file", str(token)],
                                env={"KUBECORE_SERVER": server})
    assert result.exit_code == 0, result.stderr
    missing = CliRunner().invoke(main, ["get", "pods", "--token-file", str(tmp_path / "x")],
                                 env={"KUBECORE_SERVER": server})
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"error: cannot read token file {tmp_path / 'x'}")


def test_watch_streams_until_ctrl_c(server: str) -> None:
    pod = POD_AND_SERVICE.format(name="watched").split("---")[0]
    assert cli(server, "create", "-f", "-", input=pod).exit_code == 0
    proc = subprocess.Popen(
        [*KUBECORE, "get", "pods", "--watch", "-o", "json", "--fields", "name=watched",
         "--server", server],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert (first["type"], first["object"]["id"]) == ("ADDED", "watched")
        assert cli(server, "delete", "pods/watched").exit_code == 0
        second = json.loads(proc.stdout.readline())
        assert (second["type"], second["object"]["id"]) == ("DELETED", "watched")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_table_rows(server: str) -> None:
    pod = POD_AND_SERVICE.format(name="wtable").split("---")[0]
    assert cli(server, "create", "-f", "-", input=pod).exit_code == 0
    proc = subprocess.Popen([*KUBECORE, "get", "pods/wtable", "--watch", "--server", server],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert lines(proc.stdout.readline()) == ["EVENT NAME IMAGE(S) HOST LABELS STATUS"]
        assert lines(proc.stdout.readline()) == [
            "ADDED wtable nginx <unassigned> app=wtable,tier=front Waiting"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
