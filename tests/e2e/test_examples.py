"""The examples in examples/ run as their READMEs say (on free ports)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.processes import KubecoreProcess, run_kubecore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(check: Callable[[], T | None], what: str, timeout: float = 40.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def copy_with_ports(name: str, target: Path, ports: dict[str, int]) -> Path:
    """The example's folder copied to ``target`` with its well-known ports replaced."""
    shutil.copytree(EXAMPLES / name, target)
    for path in target.iterdir():
        text = path.read_text()
        for old, new in ports.items():
            text = text.replace(old, str(new))
        path.write_text(text)
    return target


def test_all_in_one_example(tmp_path: Path) -> None:
    pod_port, service_port = free_port(), free_port()
    example = copy_with_ports("all-in-one", tmp_path / "example",
                              {"8081": pod_port, "8000": service_port})
    args = ["run", "--config", str(example / "kubecore.toml"), "--data-dir",
            str(tmp_path / "data"), "--log-format", "json", "--set", "apiserver.port=0",
            "--set", "kubelet.port=0", "--set", "controllers.resync_interval=1"]
    with KubecoreProcess(args) as proc:
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up")

        def kubecore(*argv: str) -> str:
            result = run_kubecore([*argv, "--server", url])
            assert result.returncode == 0, result.stderr
            return result.stdout

        kubecore("create", "-f", str(example / "web-controller.yaml"))
        kubecore("create", "-f", str(example / "web-service.yaml"))

        def pods() -> list[dict[str, Any]]:
            listed: dict[str, Any] = json.loads(kubecore("get", "pods", "-l", "name=web",
                                                         "-o", "json"))
            items: list[dict[str, Any]] = listed["items"]
            return items

        eventually(lambda: [p for p in pods() if p["currentState"]["status"] == "Running"],
                   "the pod to run")
        table = kubecore("get", "pods")
        assert "Running" in table and "name=web" in table
        eventually(lambda: f"127.0.0.1:{pod_port}" in kubecore("get", "endpoints/web"),
                   "the endpoints")
        page = eventually(lambda: httpx.get(f"http://127.0.0.1:{service_port}/", timeout=2),
                          "the service through the proxy")
        assert page.status_code == 200

        kubecore("resize", "web", "2")
        eventually(lambda: len(pods()) == 2, "a second pod")
        time.sleep(1)  # a scheduling round or two: the second pod must not be placed
        states = sorted(p["currentState"]["status"] for p in pods())
        assert states == ["Running", "Waiting"]

        kubecore("stop", "web", "--wait", "--timeout", "60")
        assert pods() == []
        kubecore("rm", "web")
        assert proc.stop() == 0
    assert "Traceback" not in proc.output
