"""examples/standalone-kubelet runs as its README says (on free ports): no master at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import trio
from kubecore_runtime_exec import ExecRuntime

from tests.e2e.test_examples import EXAMPLES, eventually, free_port
from tests.processes import KubecoreProcess

EXAMPLE_PORT = "8090"


async def _sweep(root: Path) -> None:
    """Stop what the kubelet left: exec pods outlive it on purpose (adoption)."""
    runtime = ExecRuntime(root)
    try:
        for sandbox in await runtime.list_sandboxes():
            await runtime.remove_sandbox(sandbox.id)
        for info in await runtime.list_containers():
            await runtime.stop_container(info.id, 0)
            await runtime.remove_container(info.id)
    finally:
        await runtime.aclose()


def test_standalone_kubelet_example(tmp_path: Path) -> None:
    port = free_port()
    example = tmp_path / "example"
    shutil.copytree(EXAMPLES / "standalone-kubelet", example)
    for path in [example / "kubelet.toml", *(example / "manifests").iterdir()]:
        path.write_text(path.read_text().replace(EXAMPLE_PORT, str(port)))
    data = tmp_path / "data"
    args = ["run", "--config", str(example / "kubelet.toml"),
            "--set", f"source_file.path={example / 'manifests'}",
            "--set", "kubelet.port=0", "--data-dir", str(data), "--log-format", "json"]
    try:
        with KubecoreProcess(args) as proc:
            url = proc.wait_event("kubelet running")["url"]
            page = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2),
                              "the pod to serve HTTP", timeout=20)
            assert page.status_code == 200
            bound = httpx.get(f"{url}/boundPods", timeout=2).json()
            assert bound["kind"] == "BoundPods"
            [pod] = bound["items"]
            [container] = pod["spec"]["containers"]
            assert container["command"][-3:] == [str(port), "--bind", "127.0.0.1"]
            assert proc.stop() == 0
        assert "Traceback" not in proc.output
    finally:
        trio.run(_sweep, data / "exec")
