"""Service portal IPs over real HTTP: allocation from portal_net, requested addresses,
immutability, exhaustion and concurrent creates."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest
import trio

from kubecore.apiserver.portals import PortalAllocator, PortalError, parse_portal_net
from kubecore.apiserver.registry import Registry
from tests.apiserver.harness import TIMEOUT, Api, StartServer
from tests.apiserver.objects import service

P = "/api/v1beta1"


async def test_allocated_from_the_default_network_and_unique(api: Api) -> None:
    ips = []
    for i in range(12):
        created = await api.ok("POST", f"{P}/services?namespace=ns{i % 2}",
                               json=service(f"s{i}"))
        ips.append(created["portalIP"])
    net = ipaddress.IPv4Network("127.77.0.0/16")
    assert all(ipaddress.IPv4Address(ip) in net for ip in ips)
    assert len(set(ips)) == len(ips)
    assert not {str(net.network_address), str(net.broadcast_address)} & set(ips)


async def test_a_requested_address(api: Api) -> None:
    created = await api.ok("POST", f"{P}/services", json=service("a", portal_ip="127.77.1.1"))
    assert created["portalIP"] == "127.77.1.1"
    for ip, why in [("127.77.1.1", "already allocated"), ("127.99.0.1", "not in the portal"),
                    ("127.77.0.0", "network or broadcast"),
                    ("127.77.255.255", "network or broadcast")]:
        status = await api.fails(422, "POST", f"{P}/services",
                                 json=service("b", port=81, portal_ip=ip))
        (cause,) = status["details"]["causes"]
        assert cause["field"] == "portalIP" and why in cause["message"], ip
    status = await api.fails(422, "POST", f"{P}/services", json=service("b", portal_ip="x.y"))
    assert status["details"]["causes"][0]["field"] == "portalIP"
    await api.fails(404, "GET", f"{P}/services/b")


async def test_the_portal_ip_is_immutable(api: Api) -> None:
    created = await api.ok("POST", f"{P}/services", json=service())
    moved = dict(service(portal_ip="127.77.9.9"), resourceVersion=created["resourceVersion"])
    status = await api.fails(422, "PUT", f"{P}/services/web", json=moved)
    assert status["details"]["causes"][0]["field"] == "portalIP"
    kept = dict(service(port=99), resourceVersion=created["resourceVersion"])
    updated = await api.ok("PUT", f"{P}/services/web", json=kept)
    assert updated["portalIP"] == created["portalIP"] and updated["port"] == 99


async def small_net_api(store: Any, start_server: StartServer, net: str,
                        http: httpx.AsyncClient) -> Api:
    registry = Registry(store, portal_net=net)
    url = await start_server(registry)
    http.base_url = httpx.URL(url)
    return Api(url, http, registry, store)


async def test_a_full_network_and_reuse(store: Any, start_server: StartServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        api = await small_net_api(store, start_server, "127.98.0.0/30", http)
        first = await api.ok("POST", f"{P}/services", json=service("a"))
        second = await api.ok("POST", f"{P}/services", json=service("b", port=81))
        assert {first["portalIP"], second["portalIP"]} == {"127.98.0.1", "127.98.0.2"}
        full = await api.fails(422, "POST", f"{P}/services", json=service("c", port=82))
        assert "no portal IP left" in full["details"]["causes"][0]["message"]
        await api.ok("DELETE", f"{P}/services/a")
        again = await api.ok("POST", f"{P}/services", json=service("c", port=82))
        assert again["portalIP"] == first["portalIP"]


async def test_concurrent_creates_get_distinct_addresses(
    store: Any, start_server: StartServer
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        api = await small_net_api(store, start_server, "127.97.0.0/29", http)  # 6 usable
        results: list[httpx.Response] = []

        async def create(i: int) -> None:
            results.append(await api.http.post(f"{P}/services", json=service(f"s{i}")))

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i in range(9):
                    nursery.start_soon(create, i)
        assert sorted(r.status_code for r in results) == [200] * 6 + [422] * 3
        ips = [r.json()["portalIP"] for r in results if r.status_code == 200]
        assert sorted(ips) == [f"127.97.0.{i}" for i in range(1, 7)]


def test_allocator_rules() -> None:
    allocator = PortalAllocator("127.96.0.0/30")
    assert allocator.size == 2
    assert allocator.allocate(["127.96.0.1", "not-an-ip"]) == "127.96.0.2"
    with pytest.raises(PortalError):
        allocator.allocate(["127.96.0.1", "127.96.0.2"])
    assert allocator.check("127.96.0.2", []) == "127.96.0.2"
    for bad in ("127.96.0.0", "127.96.0.3", "127.95.1.1", "nope"):
        with pytest.raises(PortalError):
            allocator.check(bad, [])
    for text in ("127.99.0.0/31", "127.99.0.1/24", "fe80::/64", "nonsense"):
        with pytest.raises(ValueError):
            parse_portal_net(text)
