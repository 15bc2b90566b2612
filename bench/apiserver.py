"""Apiserver benchmark: ``kubecore run --role master --plugins store_sqlite`` in its own
process, beside a minimal hypercorn + Starlette app returning a constant JSON body of
the same size (the physical limit of the HTTP stack), in the same run.

Measured on 127.0.0.1:

- GET of one pod at a fixed 200 req/s, open loop: requests leave on a schedule and the
  latency of each is counted from its scheduled time, so a stall is not hidden by the
  client waiting (p50 and p99; the baseline gets the same schedule);
- LIST of 100 pods, sequential (p50; the baseline returns a body of the same size);
- POST of pods, sequential and with 8 concurrent clients (pods/s; the baseline app
  accepts the same bodies);
- watch delivery: time from a POST being sent (the write's own time included) to the
  matching event's arrival on a watch opened from a list's resourceVersion (p50 and
  p99; no baseline: the target is absolute). Counting from the POST's response would
  measure nothing: the server sends the event as soon as the write commits, before
  the client has read its response.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import Measure

LOCAL = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/api/v1beta1"
RATE = 200.0
CONCURRENCY = 8

# The peer: Starlette under hypercorn answering every path with a fixed body.
PEER_APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
get_body = open(sys.argv[1], "rb").read()
list_body = open(sys.argv[2], "rb").read()
async def get(request):
    return Response(get_body, media_type="application/json")
async def listing(request):
    return Response(list_body, media_type="application/json")
async def post(request):
    await request.body()
    return Response(get_body, status_code=201, media_type="application/json")
app = Starlette(routes=[
    Route("/list", listing, methods=["GET"]),
    Route("/pods", post, methods=["POST"]),
    Route("/{rest:path}", get, methods=["GET"]),
])
"""


def pod_body(pod_id: str) -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1beta1", "id": pod_id, "labels": {"app": "bench"},
        "desiredState": {"manifest": {
            "version": "v1beta1",
            "containers": [{"name": "www", "image": "nginx", "ports": [{"containerPort": 80}]}],
        }},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOCAL, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {LOCAL}:{port}")


@contextlib.contextmanager
def master(data_dir: Path, *plugins: str, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """A master process; yields the apiserver's URL."""
    sys.path.insert(0, str(ROOT))
    from tests.processes import KubecoreProcess

    args = ["run", "--role", "master", "--plugins", ",".join(plugins or ("store_sqlite",)),
            "--data-dir", str(data_dir), "--log-format", "json",
            "--set", "apiserver.port=0", "--set", f'apiserver.address="{LOCAL}"', *extra]
    with KubecoreProcess(args, cwd=ROOT) as proc:
        url: str = proc.wait_event("listening", logger="kubecore.apiserver", timeout=60)["url"]
        try:
            yield url
        finally:
            proc.stop()


@contextlib.contextmanager
def peer(get_body: bytes, list_body: bytes, scratch: Path) -> Iterator[str]:
    """The hypercorn + Starlette peer; yields its base URL."""
    (scratch / "peer_app.py").write_text(PEER_APP)
    (scratch / "get.json").write_bytes(get_body)
    (scratch / "list.json").write_bytes(list_body)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, asyncio, hypercorn.asyncio, hypercorn.config, peer_app;"
         "c = hypercorn.config.Config(); c.bind = [sys.argv[3]]; c.accesslog = None;"
         "asyncio.run(hypercorn.asyncio.serve(peer_app.app, c))",
         str(scratch / "get.json"), str(scratch / "list.json"), f"{LOCAL}:{port}"],
        cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://{LOCAL}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_loop_get(url: str, seconds: float) -> list[float]:
    """GET ``url`` at RATE req/s; latency (ms) of each from its scheduled start."""
    latencies: list[float] = []
    count = int(RATE * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await client.get(url)  # warm the connection and the server

        async def one(scheduled: float) -> None:
            response = await client.get(url)
            response.raise_for_status()
            latencies.append((trio.current_time() - scheduled) * 1000)

        async with trio.open_nursery() as nursery:
            start = trio.current_time() + 0.05
            for i in range(count):
                scheduled = start + i / RATE
                await trio.sleep_until(scheduled)
                nursery.start_soon(one, scheduled)
    return latencies


async def sequential_ms(url: str, count: int) -> list[float]:
    async with httpx.AsyncClient(timeout=30) as client:
        await client.get(url)
        out = []
        for _ in range(count):
            started = time.perf_counter()
            (await client.get(url)).raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
        return out


async def post_rate(url: str, count: int, clients: int, tag: str) -> float:
    """Pods/s POSTing ``count`` pods from ``clients`` concurrent connections."""
    per = count // clients

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        for i in range(per):
            body = json.dumps(pod_body(f"{tag}-{index}-{i}")).encode()
            response = await client.post(url, content=body,
                                          headers={"content-type": "application/json"})
            response.raise_for_status()

    async with httpx.AsyncClient(timeout=30) as client:
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(clients):
                nursery.start_soon(worker, index, client)
        return per * clients / (trio.current_time() - started)


async def watch_delivery(base: str, count: int) -> list[float]:
    """For each POST, ms from it being sent to its ADDED event on an already open watch.

    The watch starts from the resourceVersion of a list, as a client that lists then
    watches does: from 0 the server would first replay every existing pod as ADDED,
    and the first POSTs' events would queue behind that replay (which is what the
    delivery p99 of earlier runs measured)."""
    arrived: dict[str, float] = {}
    sent: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=None) as client, trio.open_nursery() as nursery:
        ready = trio.Event()
        complete = trio.Event()
        listed = await client.get(f"{base}{PREFIX}/pods")
        listed.raise_for_status()
        since = listed.json()["resourceVersion"]

        async def watch() -> None:
            async with client.stream("GET", f"{base}{PREFIX}/watch/pods",
                                     params={"resourceVersion": str(since)}) as stream:
                ready.set()
                async for line in stream.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    pod_id = event.get("object", {}).get("id", "")
                    if pod_id.startswith("watch-"):
                        arrived.setdefault(pod_id, trio.current_time())
                        if len(arrived) == count:
                            complete.set()
                            return

        nursery.start_soon(watch)
        await ready.wait()
        await trio.sleep(0.2)
        for i in range(count):
            pod_id = f"watch-{i}"
            sent[pod_id] = trio.current_time()
            response = await client.post(
                f"{base}{PREFIX}/pods", content=json.dumps(pod_body(pod_id)).encode(),
                headers={"content-type": "application/json"})
            response.raise_for_status()
            await trio.sleep(0.01)
        with trio.move_on_after(10):
            await complete.wait()
        nursery.cancel_scope.cancel()
    if len(arrived) < count:
        raise RuntimeError(f"only {len(arrived)} of {count} watch events arrived")
    return [(arrived[k] - sent[k]) * 1000 for k in sent]


def run_trio(fn: Callable[[], Awaitable[Any]]) -> Any:
    return trio.run(fn)


def run(quick: bool) -> list[Measure]:
    seconds = 5.0 if quick else 30.0
    lists = 50 if quick else 300
    posts = 400 if quick else 2000
    watches = 100 if quick else 500
    with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:
        scratch = Path(tmp)
        (scratch / "data").mkdir()
        with master(scratch / "data") as base:
            pods = f"{base}{PREFIX}/pods"
            with httpx.Client(timeout=30) as client:
                for i in range(100):
                    client.post(pods, content=json.dumps(pod_body(f"list-{i}")).encode(),
                                headers={"content-type": "application/json"}
                                ).raise_for_status()
                get_body = client.get(f"{pods}/list-0").content
                list_body = client.get(pods).content
            k_get = run_trio(lambda: open_loop_get(f"{pods}/list-0", seconds))
            k_list = run_trio(lambda: sequential_ms(pods, lists))
            k_seq = run_trio(lambda: post_rate(pods, posts, 1, "seq"))
            k_conc = run_trio(lambda: post_rate(pods, posts, CONCURRENCY, "conc"))
            k_watch = run_trio(lambda: watch_delivery(base, watches))
        with peer(get_body, list_body, scratch) as peer_base:
            p_get = run_trio(lambda: open_loop_get(f"{peer_base}/pod", seconds))
            p_list = run_trio(lambda: sequential_ms(f"{peer_base}/list", lists))
            p_seq = run_trio(lambda: post_rate(f"{peer_base}/pods", posts, 1, "seq"))
            p_conc = run_trio(lambda: post_rate(f"{peer_base}/pods", posts, CONCURRENCY, "c"))
    name = "hypercorn+starlette constant body"
    return [
        Measure("GET pod p50 @200/s", "ms", pct(k_get, 0.5), pct(p_get, 0.5), name),
        Measure("GET pod p99 @200/s", "ms", pct(k_get, 0.99), pct(p_get, 0.99), name,
                target=20.0, goal="at_most"),
        Measure("LIST 100 pods p50", "ms", statistics.median(k_list),
                statistics.median(p_list), name),
        Measure("LIST 100 pods p99", "ms", pct(k_list, 0.99), pct(p_list, 0.99), name),
        Measure("POST pods sequential", "pods/s", k_seq, p_seq, name),
        Measure(f"POST pods {CONCURRENCY} clients", "pods/s", k_conc, p_conc, name),
        Measure("watch delivery after the POST was sent p50", "ms", pct(k_watch, 0.5),
                0.0, "none (absolute)"),
        Measure("watch delivery after the POST was sent p99", "ms", pct(k_watch, 0.99),
                0.0, "none (absolute)", target=50.0, goal="at_most"),
    ]
