"""store_etcd beyond the shared contract: importing etcd3 on current protobuf, the key
prefix, endpoint failover, unreachable etcd, and watches that outlive etcd restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from kubecore_store_etcd.compat import parse_old_module
from kubecore_store_etcd.config import parse_endpoint
from kubecore_store_etcd.store import EtcdStore, range_for_prefix

from kubecore import kernel, plugins
from kubecore.config import ConfigError
from kubecore.store import EventType, KeyValue, StoreUnavailable, WatchEvent
from tests.services import EtcdCluster, etcd_get, free_port

T = TypeVar("T")
TIMEOUT = 20.0
WATCH_THREAD = "kubecore-etcd-watch"


async def take(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    with trio.fail_after(TIMEOUT):
        return [await anext(events) for _ in range(n)]


async def eventually(fn: Callable[[], Awaitable[T]]) -> T:
    """``fn()`` retried while etcd is unavailable (restart, leader election)."""
    with trio.fail_after(TIMEOUT):
        while True:
            try:
                return await fn()
            except StoreUnavailable:
                await trio.sleep(0.05)


def watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(WATCH_THREAD)]


# -- importing etcd3 ---------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_etcd3_imports_on_the_installed_protobuf() -> None:
    """In a fresh interpreter with the default (fast) protobuf: the rebuilt modules work,
    and nothing was added to protobuf's default descriptor pool."""
    result = _python(
        "from kubecore_store_etcd.compat import import_etcd3\n"
        "from google.protobuf import descriptor_pool\n"
        "from google.protobuf.internal import api_implementation\n"
        "etcd3 = import_etcd3()\n"
        "rpc = etcd3.etcdrpc\n"
        "req = rpc.RangeRequest(key=b'/a', sort_order=rpc.RangeRequest.ASCEND)\n"
        "assert rpc.RangeRequest.FromString(req.SerializeToString()) == req\n"
        "from etcd3.etcdrpc import kv_pb2\n"
        "assert kv_pb2.Event.DELETE == 1\n"
        "assert etcd3.transactions.Mod('k').__eq__(3).build_message().mod_revision == 3\n"
        "try:\n"
        "    descriptor_pool.Default().FindFileByName('kv.proto')\n"
        "except KeyError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('kv.proto leaked into the default pool')\n"
        "assert import_etcd3() is etcd3\n"
        "print(api_implementation.Type())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("upb", "cpp", "python")


def test_plain_import_is_what_breaks_on_protobuf_4_and_later() -> None:
    """The problem the compat module solves (skipped where protobuf is still 3.x)."""
    import google.protobuf

    if int(google.protobuf.__version__.split(".")[0]) < 4:
        pytest.skip("protobuf 3.x imports etcd3's old generated code unchanged")
    result = _python("import etcd3")
    assert result.returncode != 0
    assert "Descriptors cannot be created directly" in result.stderr


def test_parse_old_module_reads_the_embedded_descriptor() -> None:
    import importlib.util

    spec = importlib.util.find_spec("etcd3")
    assert spec is not None and spec.submodule_search_locations
    source = Path(spec.submodule_search_locations[0], "etcdrpc", "rpc_pb2.py").read_text()
    old = parse_old_module(source)
    assert old is not None
    assert old.serialized.startswith(b"\n\trpc.proto")
    assert set(old.dependencies) == {"etcd3.etcdrpc.kv_pb2", "etcd3.etcdrpc.auth_pb2"}
    assert parse_old_module("DESCRIPTOR = pool.AddSerializedFile(b'x')\n") is None


# -- configuration -----------------------------------------------------------------------


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_endpoint("http://etcd-1:2379/") == ("etcd-1", 2379)
    assert parse_endpoint("[::1]:2379") == ("[::1]", 2379)
    for bad in ("etcd", "etcd:", ":2379", "etcd:99999", "https://etcd:2379"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_range_for_prefix() -> None:
    assert range_for_prefix(b"/a/") == (b"/a/", b"/a0")
    assert range_for_prefix(b"a\xff\xff") == (b"a\xff\xff", b"b")
    assert range_for_prefix(b"\xff") == (b"\xff", b"\x00")
    assert range_for_prefix(b"") == (b"\x00", b"\x00")


def test_plugin_config(tmp_path: Path) -> None:
    loaded = plugins.load(["store_etcd"])
    raw = {
        "kubecore": {"data_dir": str(tmp_path)},
        "store_etcd": {"endpoints": ["127.0.9.1:2379", "127.0.9.2:2379"], "prefix": "/k"},
    }
    ctx = kernel.prepare(raw, loaded)
    store = ctx.hook.kubecore_store(ctx=ctx)
    assert isinstance(store, EtcdStore)
    assert store.endpoints == [("127.0.9.1", 2379), ("127.0.9.2", 2379)]
    assert store.prefix == "/k"
    default = ctx.hook.kubecore_store(ctx=kernel.prepare({}, loaded))
    assert default.endpoints == [("127.0.0.1", 2379)]
    with pytest.raises(ConfigError, match=r"store_etcd\.endpoints.*expected host:port"):
        kernel.prepare({"store_etcd": {"endpoints": ["nohost"]}}, loaded)
    with pytest.raises(ConfigError, match=r"store_etcd\.endpoints"):
        kernel.prepare({"store_etcd": {"endpoints": []}}, loaded)


# -- against a real etcd -------------------------------------------------------------------


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[EtcdStore]:
    made = EtcdStore([etcd_endpoint], prefix=f"/kubecore-plugin/{uuid.uuid4().hex[:12]}")
    try:
        yield made
    finally:
        await made.aclose()


async def test_keys_live_under_the_prefix_in_etcd(store: EtcdStore, etcd_endpoint: str) -> None:
    kv = await store.create("/registry/pods/default/web", b'{"id":"web"}')
    raw = await trio.to_thread.run_sync(etcd_get, etcd_endpoint, f"{store.prefix}{kv.key}")
    assert raw == b'{"id":"web"}'
    assert await trio.to_thread.run_sync(etcd_get, etcd_endpoint, kv.key) is None
    items, _ = await store.list("/registry/")
    assert items == [kv]


async def test_watch_thread_ends_with_its_context(store: EtcdStore) -> None:
    start = await store.revision()
    async with store.watch("/w/", start) as events:
        await store.create("/w/a", b"1")
        await take(events, 1)
        assert len(watch_threads()) == 1
        assert store.active_watches == 1
    assert watch_threads() == []
    assert store.active_watches == 0


async def test_unreachable_etcd_is_store_unavailable() -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = EtcdStore([dead], request_timeout=2.0)
    try:
        with trio.fail_after(TIMEOUT):
            with pytest.raises(StoreUnavailable, match=dead):
                await store.get("/a")
            with pytest.raises(StoreUnavailable):
                await store.create("/a", b"1")
    finally:
        await store.aclose()


async def test_reads_and_then_writes_fail_over_to_the_next_endpoint(etcd_endpoint: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = EtcdStore([dead, etcd_endpoint], prefix=f"/kubecore-plugin/{uuid.uuid4().hex[:12]}")
    try:
        with trio.fail_after(TIMEOUT):
            assert await store.get("/a") is None  # tried the dead one, then the live one
            assert (await store.create("/a", b"1")).value == b"1"
    finally:
        await store.aclose()


async def test_watch_survives_an_etcd_restart(
    etcd_cluster: Callable[..., EtcdCluster],
) -> None:
    cluster = await trio.to_thread.run_sync(etcd_cluster, 1)
    store = EtcdStore(cluster.endpoints, reconnect_delay_max=0.5)
    written: list[KeyValue] = []
    try:
        start = await store.revision()
        async with store.watch("/r/", start) as events:
            written += [await store.create(f"/r/before-{i}", b"x") for i in range(3)]
            got = await take(events, 2)  # one event stays undelivered across the restart

            await trio.to_thread.run_sync(cluster.stop, 0)
            await trio.to_thread.run_sync(cluster.start, 0)
            await trio.to_thread.run_sync(cluster.wait_healthy)

            for i in range(3):
                written.append(
                    await eventually(lambda i=i: store.create(f"/r/after-{i}", b"y"))
                )
            got += await take(events, 4)
            sentinel = await store.create("/r/sentinel", b"z")
            assert (await take(events, 1))[0].kv == sentinel
        assert [e.kv for e in got] == written
        assert [e.revision for e in got] == list(range(start + 1, start + 7))
    finally:
        await store.aclose()
    assert watch_threads() == []


async def test_watch_moves_to_another_member_when_its_member_dies(
    etcd_cluster: Callable[..., EtcdCluster],
) -> None:
    cluster = await trio.to_thread.run_sync(etcd_cluster, 3)
    store = EtcdStore(cluster.endpoints, reconnect_delay_max=0.5)
    written: list[KeyValue] = []
    try:
        start = await store.revision()
        async with store.watch("/f/", start) as events:
            # Store and watch both talk to member 0 first.
            for i in range(2):
                kv = await store.create(f"/f/{i}", b"x")
                written.append(kv)
                written.append(await store.update(kv.key, b"y", kv.mod_revision))
            got = await take(events, 3)  # one event stays undelivered across the failover

            await trio.to_thread.run_sync(lambda: cluster.stop(0, kill=True))
            # Writes proposed while the survivors elect a leader would only time out.
            await trio.to_thread.run_sync(lambda: cluster.wait_healthy([1, 2]))
            for i in range(3, 6):
                written.append(await eventually(lambda i=i: store.create(f"/f/{i}", b"x")))
            got += await take(events, len(written) - 3)
        assert [(e.type, e.kv) for e in got] == [(EventType.PUT, kv) for kv in written]
    finally:
        await store.aclose()
    assert watch_threads() == []
