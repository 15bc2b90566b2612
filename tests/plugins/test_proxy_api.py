"""proxy_userspace fed by a real apiserver (store_sqlite): services and endpoints
created, changed and deleted through the API are served on 127.0.0.1, and an
unreachable apiserver neither blocks the start nor stops the proxier."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
from kubecore_proxy_userspace import ApiFeed, ProxyUserspaceConfig, UserspaceProxier
from structlog.testing import capture_logs

from kubecore.api import API_VERSION, Endpoints, Service
from kubecore.client import AsyncClient
from tests.kubelet.helpers import wait_until as poll
from tests.plugins.test_proxy_userspace import LOCAL, free_port, start_server, wait_until
from tests.sources_api.helpers import DEADLINE, apiserver, client_of


async def named_backend(nursery: trio.Nursery, name: str) -> int:
    """A TCP server on 127.0.0.1 that sends ``name`` and closes."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(name.encode())

    return await start_server(nursery, handle)


async def name_via(port: int) -> str:
    """What a connection through 127.0.0.1:``port`` receives ("" if closed at once)."""
    stream = await trio.open_tcp_stream(LOCAL, port)
    async with stream:
        data = b""
        with trio.fail_after(DEADLINE):
            while chunk := await stream.receive_some(1024):
                data += chunk
    return data.decode()


async def answers(port: int, want: str) -> bool:
    try:
        return await name_via(port) == want
    except OSError:
        return False


async def until_answers(port: int, want: str) -> None:
    """Wait (with a deadline) until a connection through ``port`` receives ``want``."""
    await poll(partial(answers, port, want), DEADLINE, what=f"port {port} to answer {want}")


async def test_services_and_endpoints_follow_the_api(tmp_path: Path) -> None:
    port = free_port()
    async with apiserver(tmp_path) as url, client_of(url) as client, \
            trio.open_nursery() as nursery:
        one = await named_backend(nursery, "one")
        two = await named_backend(nursery, "two")
        await client.create(Service(api_version=API_VERSION, id="web", port=port,
                                    selector={"app": "web"}))
        await client.create(Endpoints(api_version=API_VERSION, id="web",
                                      endpoints=[f"{LOCAL}:{one}"]))
        proxier = UserspaceProxier(ProxyUserspaceConfig(portal_net=""))
        await nursery.start(proxier.run)
        feed = ApiFeed(AsyncClient(url, timeout=DEADLINE), proxier, debounce=0.01)
        await nursery.start(feed.run)
        assert feed.applied >= 1
        assert await name_via(port) == "one"

        # An endpoints change reaches new connections.
        await client.update(Endpoints(api_version=API_VERSION, id="web",
                                      endpoints=[f"{LOCAL}:{two}"]))
        await until_answers(port, "two")

        # A second service in another namespace appears; deleting the first closes it.
        other = free_port()
        await client.create(Service(api_version=API_VERSION, id="db", port=other,
                                    selector={"app": "db"}), namespace="team")
        await client.create(Endpoints(api_version=API_VERSION, id="db",
                                      endpoints=[f"{LOCAL}:{one}"]), namespace="team")
        await until_answers(other, "one")
        await client.delete(Service, "web")
        await wait_until(lambda: proxier.portal_ip(("default", "web")) is None
                         and not _listening(port), DEADLINE)
        await feed.client.aclose()
        nursery.cancel_scope.cancel()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex((LOCAL, port)) == 0


async def test_unreachable_api_starts_and_retries() -> None:
    port = free_port()  # nothing listens there
    proxier = UserspaceProxier(ProxyUserspaceConfig(portal_net=""))
    async with trio.open_nursery() as nursery, \
            AsyncClient(f"http://{LOCAL}:{port}", timeout=1.0) as client:
        await nursery.start(proxier.run)
        feed = ApiFeed(client, proxier, retry=0.01, retry_long=0.05, failures_before_long=2)
        with capture_logs() as logs:
            with trio.fail_after(DEADLINE):
                await nursery.start(partial(feed.run))
            await wait_until(lambda: sum(e["event"] == "proxy watch failed"
                                         for e in logs) >= 6, DEADLINE)
        assert feed.applied == 0
        nursery.cancel_scope.cancel()


async def test_proxy_component_follows_the_api(tmp_path: Path) -> None:
    import kubecore_proxy_userspace

    from kubecore.config import KernelConfig, Settings
    from kubecore.context import Context
    from kubecore.plugins import new_manager

    manager = new_manager()
    manager.register(kubecore_proxy_userspace, name="proxy_userspace")
    port = free_port()
    async with apiserver(tmp_path) as url, client_of(url) as client, \
            trio.open_nursery() as nursery:
        backend = await named_backend(nursery, "api")
        await client.create(Service(api_version=API_VERSION, id="web", port=port,
                                    selector={"app": "web"}))
        await client.create(Endpoints(api_version=API_VERSION, id="web",
                                      endpoints=[f"{LOCAL}:{backend}"]))
        ctx = Context(settings=Settings({
            "kubecore": KernelConfig(role="node", api_server=url, data_dir=tmp_path),
            "proxy_userspace": ProxyUserspaceConfig(portal_net=""),
        }), hook=manager.hook)
        await nursery.start(partial(kubecore_proxy_userspace.run_proxy, ctx))
        assert await name_via(port) == "api"
        nursery.cancel_scope.cancel()
