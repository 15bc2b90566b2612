"""``kubecore run`` with the three sources loaded as plugins, configured with ``--set``."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.kubelet.helpers import wait_until
from tests.processes import KubecoreProcess
from tests.services import etcd_put
from tests.sources.helpers import dumps, manifest
from tests.sources.servers import ManifestServer


async def test_kubecore_run_with_every_source(
    tmp_path: Path, nursery: trio.Nursery, etcd_endpoint: str, key_prefix: str
) -> None:
    server = ManifestServer(dumps([manifest("fromurl")]))
    url = await server.start(nursery)
    template = key_prefix + "nodes/{hostname}/boundpods"
    await trio.to_thread.run_sync(etcd_put, etcd_endpoint,
                                  template.format(hostname="node7"),
                                  dumps([manifest("frometcd")]))
    token = tmp_path / "token"
    token.write_text("tok3n\n")
    with KubecoreProcess([
        "run", "--role", "node", "--hostname-override", "node7",
        "--plugins", "runtime_exec,source_http,source_server,source_etcd",
        "--set", "kubelet.port=0", "--set", "kubelet.grace_period=2",
        "--set", f"source_http.url={url}", "--set", "source_http.check_interval=0.2",
        "--set", f"source_server.token_file={token}",
        "--set", f'source_etcd.endpoints=["{etcd_endpoint}"]',
        "--set", f"source_etcd.key_template={template}",
        "--data-dir", str(tmp_path / "data"), "--log-format", "json",
    ]) as proc:
        try:
            event = await trio.to_thread.run_sync(
                lambda: proc.wait_event("listening", logger="kubecore.kubelet"))
            async with httpx.AsyncClient(base_url=event["url"]) as client:
                r = await client.post("/container", json=manifest("posted"))
                assert r.status_code == 401
                r = await client.post("/container", json=manifest("posted"),
                                      headers={"Authorization": "Bearer tok3n"})
                assert r.status_code == 200, r.text

                async def bound() -> list[str] | None:
                    items = (await client.get("/boundPods")).json()["items"]
                    ids = sorted(item["id"] for item in items)
                    return ids if ids == ["frometcd", "fromurl", "posted"] else None

                await wait_until(bound, timeout=20, what="a pod from every source")
                server.body = dumps([manifest("fromurl2")])

                async def changed() -> bool:
                    items = (await client.get("/boundPods")).json()["items"]
                    return "fromurl2" in {item["id"] for item in items}

                await wait_until(changed, timeout=20, what="the URL's new pod")
        finally:
            assert await trio.to_thread.run_sync(proc.stop) == 0
