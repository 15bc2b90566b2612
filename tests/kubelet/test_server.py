"""The kubelet's HTTP server over runtime_exec, and ``kubecore run`` as a real process."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import httpx
from kubecore_source_file import pod_id_for

from kubecore.api import Port
from tests.kubelet.conftest import KubeletFactory
from tests.kubelet.helpers import PushSource, container, pod, wait_until
from tests.processes import KubecoreProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_routes(start_kubelet: KubeletFactory) -> None:
    source = PushSource()
    async with start_kubelet([source], port=0) as kubelet:
        source.push(pod("web", container(command=["sh", "-c", "echo hello; echo world;"
                                                   " exec sleep 60"])))
        assert kubelet.url is not None
        async with httpx.AsyncClient(base_url=kubelet.url) as client:
            assert (await client.get("/healthz")).text == "ok"

            async def running() -> dict[str, object] | None:
                r = await client.get("/podInfo", params={"podID": "web",
                                                         "podNamespace": "default"})
                body: dict[str, object] = r.json() if r.status_code == 200 else {}
                main = body.get("main")
                return body if isinstance(main, dict) and "running" in main["state"] else None

            info = await wait_until(running, what="podInfo running")
            assert "net" in info
            missing = await client.get("/podInfo", params={"podID": "nope"})
            assert missing.status_code == 404

            bound = (await client.get("/boundPods")).json()
            assert bound["kind"] == "BoundPods" and bound["host"] == "node1"
            assert [item["id"] for item in bound["items"]] == ["web"]

            machine = (await client.get("/stats/")).json()
            assert machine["memory_limit_bytes"] > 0 and machine["cpu_usage_ns"] > 0
            stats = await client.get("/stats/web/main")
            assert stats.status_code == 200 and "memory_usage_bytes" in stats.json()
            assert (await client.get("/stats/web/other")).status_code == 404

            async def logged() -> str | None:
                r = await client.get("/containerLogs/default/web/main", params={"tail": "1"})
                return r.text if r.status_code == 200 and r.text.strip() else None

            assert (await wait_until(logged, what="logs")).strip() == "world"


async def test_kubecore_run_serves_a_file_pod(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    port = free_port()
    web = manifests / "web.json"
    web.write_text(json.dumps({
        "version": "v1beta1",
        "containers": [{
            "name": "web", "image": "python",
            "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            "ports": [Port(container_port=port).model_dump(by_alias=True)],
        }],
    }))
    with KubecoreProcess([
        "run", "--role", "node", "--plugins", "runtime_exec,source_file",
        "--set", f"source_file.path={manifests}", "--set", "kubelet.port=0",
        "--set", "kubelet.grace_period=2", "--data-dir", str(tmp_path / "data"),
        "--log-format", "json",
    ]) as proc:
        try:
            proc.wait_event("container started", timeout=20, container="web")

            async def serves() -> bool:
                try:
                    async with httpx.AsyncClient() as client:
                        r = await client.get(f"http://127.0.0.1:{port}/")
                        return r.status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(serves, timeout=15, what="the pod's HTTP server")
            web.unlink()
            proc.wait_event("pod stopped", timeout=20)
            assert pod_id_for(web) in proc.output
        finally:
            assert proc.stop() == 0
