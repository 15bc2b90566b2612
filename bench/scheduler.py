"""Scheduler benchmark: pods bound per second through the apiserver and its store.

M minions and P pods (full: 1,000 and 10,000; ``--quick``: 100 and 500) are created
through the API of a master process without a scheduler, which then stops. The same
unbound state is kept three times (copies of the SQLite data directory; for etcd,
copies of every key under other key prefixes). Then, for each store:

- kubecore, one process: a master with ``scheduler_priority`` starts on the state;
  the time from its apiserver listening to its log saying the last pod was scheduled
  is the scheduling time (no polling of the apiserver while it works);
- kubecore, scheduler apart (as v0.5 ran it): a master without a scheduler serves the
  second copy, and a second master process runs only the scheduler against it
  (``kubecore.api_server`` set, no store, controllers off); timed from the
  scheduler's start to its log saying the last pod was scheduled;
- baseline: a master without a scheduler starts on the copy, and 16 clients (the
  scheduler's default ``bind_concurrency``) post the same number of bindings round
  robin over the minions: the apiserver's and store's own bind rate, with no
  scheduling decisions.

Ratio = scheduler rate / raw bind rate; the target applies to both scheduler measures
on store_sqlite. store_etcd runs against a private one-member etcd on loopback (as the
tests start it), or against ``KUBECORE_BENCH_ETCD`` (``host:port``) when set; without
an etcd binary it is left out and the run says so.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import trio

from bench import Measure
from bench.apiserver import LOCAL, PREFIX, ROOT, pod_body

if TYPE_CHECKING:
    from tests.processes import KubecoreProcess

JSON = {"content-type": "application/json"}
CLIENTS = 16
TARGET = 500.0  # pods/s with store_sqlite


def minion_body(name: str) -> dict[str, object]:
    return {"kind": "Minion", "apiVersion": "v1beta1", "id": name, "hostIP": LOCAL,
            "resources": {"capacity": {"cpu": 4000, "memory": 8 * 2**30}}}


@contextlib.contextmanager
def master(store_args: list[str], *plugins: str) -> Iterator[tuple[str, KubecoreProcess]]:
    """A master process on the given store; yields its URL and the process (whose
    parsed JSON log is ``proc.events``)."""
    sys.path.insert(0, str(ROOT))
    from tests.processes import KubecoreProcess

    args = ["run", "--role", "master", "--plugins", ",".join(plugins),
            "--log-format", "json", "--set", "apiserver.port=0",
            "--set", f'apiserver.address="{LOCAL}"', *store_args]
    with KubecoreProcess(args, cwd=ROOT) as proc:
        url: str = proc.wait_event("listening", logger="kubecore.apiserver", timeout=60)["url"]
        try:
            yield url, proc
        finally:
            proc.stop(timeout=60)


async def post_all(base: str, requests: list[tuple[str, dict[str, object]]]) -> None:
    """POST every ``(resource, body)`` from :data:`CLIENTS` concurrent clients."""
    queue = iter(requests)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async def worker(client: httpx.AsyncClient) -> None:
        for resource, body in queue:
            response = await client.post(f"{base}{PREFIX}/{resource}",
                                         content=json.dumps(body).encode(), headers=JSON)
            response.raise_for_status()

    async with httpx.AsyncClient(timeout=120, limits=limits) as client, \
            trio.open_nursery() as nursery:
        for _ in range(CLIENTS):
            nursery.start_soon(worker, client)


def populate(base: str, minions: int, pods: int) -> None:
    bodies = [("minions", minion_body(f"node-{i}")) for i in range(minions)]
    bodies += [("pods", pod_body(f"pod-{i}")) for i in range(pods)]
    trio.run(post_all, base, bodies)


def bound_count(base: str) -> int:
    with httpx.Client(timeout=300) as client:
        response = client.get(f"{base}{PREFIX}/pods", params={"fields": "DesiredState.Host!="})
        response.raise_for_status()
        return len(response.json().get("items") or [])


@contextlib.contextmanager
def scheduler_apart(base: str, data_dir: Path) -> Iterator[KubecoreProcess]:
    """A master process running only the scheduler, against the apiserver at ``base``;
    yields it once its scheduler has started."""
    from tests.processes import KubecoreProcess

    args = ["run", "--role", "master", "--plugins", "scheduler_priority",
            "--log-format", "json", "--data-dir", str(data_dir),
            "--set", f'kubecore.api_server="{base}"', "--set", "scheduler.seed=1",
            "--set", "controllers.replication=false", "--set", "controllers.endpoints=false"]
    with KubecoreProcess(args, cwd=ROOT) as proc:
        try:
            proc.wait_event("scheduler starting", timeout=60)
            yield proc
        finally:
            proc.stop(timeout=60)


def wait_scheduled(proc: KubecoreProcess, pods: int, timeout: float) -> None:
    """Until the master's log has said ``pod scheduled`` ``pods`` times."""
    events = proc.events
    seen, index = 0, 0
    deadline = time.monotonic() + timeout
    while seen < pods:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {pods} pods scheduled after {timeout:.0f}s")
        if proc.proc.poll() is not None:
            raise RuntimeError(f"the master exited:\n{proc.output[-3000:]}")
        end = len(events)
        seen += sum(1 for e in events[index:end] if e.get("event") == "pod scheduled")
        index = end
        time.sleep(0.05)


def measure(store_args: list[str], copy_args: list[str], apart_args: list[str],
            minions: int, pods: int, store: str) -> tuple[float, float, float]:
    """(scheduler pods/s in the master's process, scheduler pods/s in its own process,
    raw bind pods/s) on one store whose three copies of the state are reached with
    ``store_args``, ``apart_args`` and ``copy_args``."""
    with master([*store_args, "--set", "scheduler.seed=1"], store,
                "scheduler_priority") as (base, proc):
        started = time.perf_counter()
        wait_scheduled(proc, pods, timeout=max(600.0, pods / 5))
        scheduled = pods / (time.perf_counter() - started)
        if bound_count(base) != pods:
            raise RuntimeError("the log said every pod was scheduled, the apiserver not")

    with master(apart_args, store) as (base, _), \
            tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp, \
            scheduler_apart(base, Path(tmp)) as proc:
        started = time.perf_counter()
        wait_scheduled(proc, pods, timeout=max(600.0, pods / 5))
        apart = pods / (time.perf_counter() - started)
        if bound_count(base) != pods:
            raise RuntimeError("the log said every pod was scheduled, the apiserver not")

    with master(copy_args, store) as (base, _):
        bindings: list[tuple[str, dict[str, object]]] = [
            ("bindings", {"kind": "Binding", "apiVersion": "v1beta1", "podID": f"pod-{i}",
                          "host": f"node-{i % minions}"})
            for i in range(pods)
        ]
        started = time.perf_counter()
        trio.run(post_all, base, bindings)
        raw = pods / (time.perf_counter() - started)
        if bound_count(base) != pods:
            raise RuntimeError("raw bindings did not bind every pod")
    return scheduled, apart, raw


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def copy_prefix(endpoint: str, source: str, target: str) -> int:
    """Copy every key under ``source`` to the same key under ``target`` (etcd's JSON
    gateway; 100 puts per transaction). Returns how many keys."""
    end = source[:-1] + chr(ord(source[-1]) + 1)
    with httpx.Client(base_url=f"http://{endpoint}", timeout=60) as client:
        response = client.post("/v3/kv/range", json={"key": _b64(source),
                                                      "range_end": _b64(end)})
        response.raise_for_status()
        kvs = response.json().get("kvs") or []
        for start in range(0, len(kvs), 100):
            puts = [{"requestPut": {
                "key": _b64(target + base64.b64decode(kv["key"]).decode()[len(source):]),
                "value": kv.get("value", ""),
            }} for kv in kvs[start:start + 100]]
            client.post("/v3/kv/txn", json={"success": puts}).raise_for_status()
    return len(kvs)


@contextlib.contextmanager
def etcd() -> Iterator[str | None]:
    """An etcd endpoint: ``KUBECORE_BENCH_ETCD``, else a private one; ``None`` when
    there is no etcd binary."""
    given = os.environ.get("KUBECORE_BENCH_ETCD")
    if given:
        yield given
        return
    if shutil.which("etcd") is None:
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.services import start_etcd_cluster

    cluster = start_etcd_cluster(1)
    try:
        yield cluster.endpoints[0]
    finally:
        cluster.close()


def run_sqlite(minions: int, pods: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:
        data, copy, apart = Path(tmp) / "data", Path(tmp) / "copy", Path(tmp) / "apart"
        data.mkdir()
        with master(["--data-dir", str(data)], "store_sqlite") as (base, _):
            populate(base, minions, pods)
        shutil.copytree(data, copy)
        shutil.copytree(data, apart)
        return measure(["--data-dir", str(data)], ["--data-dir", str(copy)],
                       ["--data-dir", str(apart)], minions, pods, "store_sqlite")


def run_etcd(endpoint: str, minions: int, pods: int) -> tuple[float, float, float]:
    tag = f"/kubecore-bench-{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:

        def args(prefix: str) -> list[str]:
            return ["--data-dir", tmp, "--set", f'store_etcd.endpoints=["{endpoint}"]',
                    "--set", f'store_etcd.prefix="{prefix}"']

        with master(args(f"{tag}/a"), "store_etcd") as (base, _):
            populate(base, minions, pods)
        copy_prefix(endpoint, f"{tag}/a/", f"{tag}/b/")
        copy_prefix(endpoint, f"{tag}/a/", f"{tag}/c/")
        return measure(args(f"{tag}/a"), args(f"{tag}/b"), args(f"{tag}/c"), minions, pods,
                       "store_etcd")


def run(quick: bool) -> list[Measure]:
    minions, pods = (100, 500) if quick else (1000, 10_000)
    size = f"{minions} minions, {pods} pods"
    baseline = f"{CLIENTS} concurrent client bindings"
    measures: list[Measure] = []
    scheduled, apart, raw = run_sqlite(minions, pods)
    measures.append(Measure(f"pods bound ({size}, store_sqlite)", "pods/s", scheduled, raw,
                            baseline, target=TARGET, goal="at_least"))
    measures.append(Measure(f"pods bound, scheduler apart ({size}, store_sqlite)", "pods/s",
                            apart, raw, baseline, target=TARGET, goal="at_least"))
    with etcd() as endpoint:
        if endpoint is None:
            print("store_etcd left out: no etcd binary (set KUBECORE_BENCH_ETCD=host:port)")
        else:
            scheduled, apart, raw = run_etcd(endpoint, minions, pods)
            measures.append(Measure(f"pods bound ({size}, store_etcd)", "pods/s", scheduled,
                                    raw, baseline))
            measures.append(Measure(f"pods bound, scheduler apart ({size}, store_etcd)",
                                    "pods/s", apart, raw, baseline))
    return measures
