"""Scheduler benchmark: pods bound per second through the apiserver and its store.

M minions and P pods (full: 1,000 and 10,000; ``--quick``: 100 and 500) are created
through the API of a master process without a scheduler, which then stops. A copy of
its data directory is kept. Then:

- kubecore: a master with ``scheduler_priority`` starts on the data directory; the time
  from its apiserver listening to every pod having a host is the scheduling time;
- baseline: a master without a scheduler starts on the copy, and a client posts the
  same number of bindings in a plain sequential loop (the apiserver's bind limit).

Ratio = scheduler rate / raw bind rate. Only store_sqlite is measured.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import trio

from bench import Measure
from bench.apiserver import PREFIX, master, pod_body

JSON = {"content-type": "application/json"}


def minion_body(name: str) -> dict[str, object]:
    return {"kind": "Minion", "apiVersion": "v1beta1", "id": name, "hostIP": "127.0.0.1",
            "resources": {"capacity": {"cpu": 4000, "memory": 8 * 2**30}}}


async def populate(base: str, minions: int, pods: int) -> None:
    """Create the minions and pods from 8 concurrent clients."""
    bodies = [("minions", minion_body(f"node-{i}")) for i in range(minions)]
    bodies += [("pods", pod_body(f"pod-{i}")) for i in range(pods)]
    queue = iter(bodies)

    async def worker(client: httpx.AsyncClient) -> None:
        for resource, body in queue:
            response = await client.post(f"{base}{PREFIX}/{resource}",
                                         content=json.dumps(body).encode(), headers=JSON)
            response.raise_for_status()

    async with httpx.AsyncClient(timeout=60) as client, trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(worker, client)


def bound_count(client: httpx.Client, base: str) -> int:
    items = client.get(f"{base}{PREFIX}/pods").json().get("items") or []
    return sum(1 for item in items if (item.get("desiredState") or {}).get("host"))


def run(quick: bool) -> list[Measure]:
    minions, pods = (100, 500) if quick else (1000, 10_000)
    with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:
        data, copy = Path(tmp) / "data", Path(tmp) / "copy"
        data.mkdir()
        with master(data) as base:
            trio.run(populate, base, minions, pods)
        shutil.copytree(data, copy)

        with master(data, "store_sqlite", "scheduler_priority",
                    extra=("--set", "scheduler.seed=1")) as base:
            started = time.perf_counter()
            with httpx.Client(timeout=60) as client:
                while bound_count(client, base) < pods:
                    time.sleep(0.2)
            scheduled = pods / (time.perf_counter() - started)

        with master(copy) as base, httpx.Client(timeout=60) as client:
            started = time.perf_counter()
            for i in range(pods):
                body = {"kind": "Binding", "apiVersion": "v1beta1",
                        "podID": f"pod-{i}", "host": f"node-{i % minions}"}
                client.post(f"{base}{PREFIX}/bindings", content=json.dumps(body).encode(),
                            headers=JSON).raise_for_status()
            raw = pods / (time.perf_counter() - started)
            assert bound_count(client, base) == pods
    return [
        Measure(f"pods bound ({minions} minions, {pods} pods, store_sqlite)", "pods/s",
                scheduled, raw, "sequential client bindings", target=500.0,
                goal="at_least"),
    ]
