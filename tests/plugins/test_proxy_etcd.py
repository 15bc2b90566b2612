"""proxy_userspace fed from the cluster store's keys in a real etcd: services and
endpoints written where the apiserver writes them are served on 127.0.0.1 and followed
as they change; an etcd member that restarts (with changes and a compaction made while
it was away) loses no change; the ``proxy`` component, and ``kubecore run`` as a real
process, read the store of the run's store plugin with ``config_source = "etcd"``."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing, suppress
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from kubecore_proxy_userspace import ProxyUserspaceConfig, StoreFeed, UserspaceProxier
from kubecore_store_etcd.store import EtcdStore
from pydantic import ValidationError
from structlog.testing import capture_logs

from kubecore.api import Endpoints, Service
from kubecore.apiserver.keys import ENDPOINTS_ROOT, SERVICE_ROOT, object_key
from kubecore.apiserver.stored import encode_stored
from kubecore.store import Store
from tests.plugins.test_proxy_api import name_via, named_backend, until_answers
from tests.plugins.test_proxy_userspace import LOCAL, free_port, wait_until
from tests.processes import KubecoreProcess
from tests.services import EtcdCluster
from tests.sources_api.helpers import DEADLINE


async def put_service(store: Store, name: str, port: int, namespace: str = "default") -> None:
    await upsert(store, object_key(SERVICE_ROOT, namespace, name), encode_stored(
        Service(id=name, namespace=namespace, port=port, selector={"app": name})))


async def put_endpoints(store: Store, name: str, ports: list[int],
                        namespace: str = "default") -> None:
    await upsert(store, object_key(ENDPOINTS_ROOT, namespace, name), encode_stored(
        Endpoints(id=name, namespace=namespace, endpoints=[f"{LOCAL}:{p}" for p in ports])))


async def upsert(store: Store, key: str, value: bytes) -> None:
    current = await store.get(key)
    if current is None:
        await store.create(key, value)
    else:
        await store.update(key, value, current.mod_revision)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((LOCAL, port)) == 0


@asynccontextmanager
async def fed(store: Store, **feed: float) -> AsyncIterator[tuple[UserspaceProxier, StoreFeed]]:
    """A proxier fed from ``store``, both running until the block ends."""
    proxier = UserspaceProxier(ProxyUserspaceConfig(portal_net=""))
    source = StoreFeed(store, proxier, debounce=0.01, **feed)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        with trio.fail_after(DEADLINE):
            await nursery.start(source.run)
        yield proxier, source
        nursery.cancel_scope.cancel()


async def test_services_and_endpoints_follow_the_keys(etcd_endpoint: str, key_prefix: str
                                                      ) -> None:
    store = EtcdStore([etcd_endpoint], prefix=key_prefix)
    web, db = free_port(), free_port()
    try:
        async with trio.open_nursery() as backends:
            one = await named_backend(backends, "one")
            two = await named_backend(backends, "two")
            await put_service(store, "web", web)
            await put_endpoints(store, "web", [one])
            # Neither an undecodable value nor a key outside the two roots stops the rest.
            await store.create(object_key(SERVICE_ROOT, "default", "broken"), b"{not json")
            await store.create("/registry/services/other/default/x", b"{}")
            with capture_logs() as logs:
                async with fed(store) as (proxier, source):
                    assert source.applied >= 1
                    assert await name_via(web) == "one"
                    assert proxier.services() == [("default", "web")]
                    assert any(e["event"] == "stored service or endpoints skipped"
                               and e["key"].endswith("/default/broken") for e in logs), logs

                    # An endpoints change reaches new connections.
                    await put_endpoints(store, "web", [two])
                    await until_answers(web, "two")

                    # A service of another namespace appears.
                    await put_service(store, "db", db, namespace="team")
                    await put_endpoints(store, "db", [one], namespace="team")
                    await until_answers(db, "one")

                    # A deleted service closes its listener; the other one stays.
                    await store.delete(object_key(SERVICE_ROOT, "default", "web"))
                    await store.delete(object_key(ENDPOINTS_ROOT, "default", "web"))
                    await wait_until(lambda: not listening(web), DEADLINE)
                    assert proxier.services() == [("team", "db")]
                    assert await name_via(db) == "one"
                    assert source.reads == 1  # one read, then the watch alone
            backends.cancel_scope.cancel()
    finally:
        await store.aclose()


def compact(endpoint: str, revision: int) -> None:
    httpx.post(f"http://{endpoint}/v3/kv/compaction",
               json={"revision": str(revision), "physical": True},
               timeout=5.0).raise_for_status()


async def test_member_restart_loses_no_change(etcd_cluster: Callable[..., EtcdCluster],
                                              key_prefix: str) -> None:
    """The proxy knows one member of three; while that member is away, changes are made
    through another. The watch resumes from its last revision when the member is back;
    after a compaction of the missed revisions it reads the keys again."""
    cluster = await trio.to_thread.run_sync(etcd_cluster, 3)
    watched = EtcdStore(cluster.endpoints[:1], prefix=key_prefix, reconnect_delay_max=0.2,
                        request_timeout=2.0)
    writer = EtcdStore(cluster.endpoints[1:], prefix=key_prefix)
    web, db = free_port(), free_port()
    try:
        async with trio.open_nursery() as backends:
            one = await named_backend(backends, "one")
            two = await named_backend(backends, "two")
            three = await named_backend(backends, "three")
            await put_service(writer, "web", web)
            await put_endpoints(writer, "web", [one])
            with capture_logs() as logs:
                async with fed(watched, retry=0.1, retry_max=0.5) as (_, source):
                    assert await name_via(web) == "one"

                    # Away, then back: changes made meanwhile arrive through the watch.
                    await trio.to_thread.run_sync(cluster.stop, 0)
                    await put_endpoints(writer, "web", [two])
                    await put_service(writer, "db", db)
                    await put_endpoints(writer, "db", [two])
                    await trio.sleep(0.3)  # the watch is retrying meanwhile
                    assert await name_via(web) == "one"  # the last configuration holds
                    await trio.to_thread.run_sync(cluster.start, 0)
                    await trio.to_thread.run_sync(partial(cluster.wait_healthy, [0]))
                    await until_answers(web, "two")
                    await until_answers(db, "two")
                    assert source.reads == 1

                    # Away again, and the missed revisions are compacted: read again.
                    await trio.to_thread.run_sync(cluster.stop, 0)
                    await put_endpoints(writer, "web", [three])
                    await writer.delete(object_key(SERVICE_ROOT, "default", "db"))
                    revision = await writer.revision()
                    await trio.to_thread.run_sync(compact, cluster.endpoints[1], revision)
                    await trio.to_thread.run_sync(cluster.start, 0)
                    await trio.to_thread.run_sync(partial(cluster.wait_healthy, [0]))
                    await until_answers(web, "three")
                    await wait_until(lambda: not listening(db), DEADLINE)
                    assert source.reads >= 2
            assert any(e["event"] == "proxy store watch ended; reading again"
                       for e in logs), logs
            backends.cancel_scope.cancel()
    finally:
        await watched.aclose()
        await writer.aclose()


async def test_unreachable_store_starts_and_retries() -> None:
    dead = f"{LOCAL}:{free_port()}"  # nothing listens there
    store = EtcdStore([dead], request_timeout=0.5, reconnect_delay_max=0.1)
    try:
        with capture_logs() as logs:
            async with fed(store, retry=0.05, retry_max=0.1) as (proxier, source):
                assert source.applied == 0
                assert proxier.services() == []
                await trio.sleep(1.2)
        warnings = [e for e in logs if e["event"] == "proxy cannot read services from the store"]
        assert len(warnings) == 1, logs  # an outage is logged once
        assert source.reads == 0
    finally:
        await store.aclose()


async def test_proxy_component_reads_the_run_store(etcd_endpoint: str, key_prefix: str,
                                                   tmp_path: Path) -> None:
    import kubecore_proxy_userspace
    import kubecore_store_etcd
    from kubecore_store_etcd import EtcdStoreConfig

    from kubecore.config import KernelConfig, Settings
    from kubecore.context import Context
    from kubecore.plugins import new_manager

    manager = new_manager()
    manager.register(kubecore_proxy_userspace, name="proxy_userspace")
    manager.register(kubecore_store_etcd, name="store_etcd")
    store = EtcdStore([etcd_endpoint], prefix=key_prefix)
    port = free_port()
    try:
        async with trio.open_nursery() as nursery:
            backend = await named_backend(nursery, "etcd")
            await put_service(store, "web", port)
            await put_endpoints(store, "web", [backend])
            ctx = Context(settings=Settings({
                "kubecore": KernelConfig(role="node", data_dir=tmp_path),
                "proxy_userspace": ProxyUserspaceConfig(portal_net="", config_source="etcd"),
                "store_etcd": EtcdStoreConfig(endpoints=[etcd_endpoint], prefix=key_prefix),
            }), hook=manager.hook)
            with trio.fail_after(DEADLINE):
                await nursery.start(partial(kubecore_proxy_userspace.run_proxy, ctx))
            assert await name_via(port) == "etcd"
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()


def test_file_source_needs_a_file() -> None:
    with pytest.raises(ValidationError, match="needs services_file"):
        ProxyUserspaceConfig(config_source="file")
    assert ProxyUserspaceConfig().config_source == "auto"


def test_kubecore_run_node_reads_services_from_etcd(
    etcd_endpoint: str, key_prefix: str, tmp_path: Path
) -> None:
    """``kubecore run --role node --plugins proxy_userspace,store_etcd`` with
    ``config_source = "etcd"`` serves what is written under store_etcd's prefix."""
    with closing(socket.create_server((LOCAL, 0))) as backend:
        backend_port = backend.getsockname()[1]

        def serve() -> None:
            with suppress(OSError):  # closed at the end
                while True:
                    conn, _ = backend.accept()
                    with conn:
                        conn.sendall(b"from etcd\n")

        threading.Thread(target=serve, daemon=True).start()
        port = free_port()

        async def write() -> None:
            store = EtcdStore([etcd_endpoint], prefix=key_prefix)
            try:
                await put_service(store, "web", port)
                await put_endpoints(store, "web", [backend_port])
            finally:
                await store.aclose()

        args = ["run", "--role", "node", "--plugins", "proxy_userspace,store_etcd",
                "--data-dir", str(tmp_path / "data"), "--log-format", "json",
                "--set", "proxy_userspace.config_source=etcd",
                "--set", f'store_etcd.endpoints=["{etcd_endpoint}"]',
                "--set", f'store_etcd.prefix="{key_prefix}"']
        with KubecoreProcess(args) as proc:
            proc.wait_event("kubecore is up")
            trio.run(write)
            proc.wait_event("service listening", address=f"{LOCAL}:{port}")
            with socket.create_connection((LOCAL, port), timeout=5) as client:
                assert client.makefile("rb").readline() == b"from etcd\n"
            assert proc.stop() == 0
        assert "Traceback" not in proc.output
