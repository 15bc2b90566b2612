"""proxy_userspace parts without sockets: balancer, portal IPs, endpoint parsing, the
config section, the services file format, the pipe pool and the plugin's hooks."""

from __future__ import annotations

import errno
import fcntl
import json
from typing import Any

import kubecore_proxy_userspace as plugin
import pytest
import trio
from kubecore_proxy_userspace import ProxyUserspaceConfig, UserspaceProxier, parse_services
from kubecore_proxy_userspace import pipes as pipes_module
from kubecore_proxy_userspace.balancer import RoundRobin
from kubecore_proxy_userspace.filesource import ServicesFileError
from kubecore_proxy_userspace.pipes import PipePool
from kubecore_proxy_userspace.portals import PortalAllocator
from pydantic import ValidationError
from structlog.testing import capture_logs

from kubecore import kernel
from kubecore.api import Service
from kubecore.proxy import Proxier, parse_endpoint, service_key

KEY = ("default", "web")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- balancer -------------------------------------------------------------------------


def test_round_robin_resets_only_when_endpoints_change() -> None:
    rr = RoundRobin()
    assert rr.next(KEY) is None
    assert rr.update(KEY, ["127.0.9.1:80", "127.0.9.2:80", "bogus", "127.0.9.3:0"])
    assert [rr.next(KEY) for _ in range(3)] == [
        ("127.0.9.1", 80), ("127.0.9.2", 80), ("127.0.9.1", 80)]
    assert not rr.update(KEY, ["127.0.9.1:80", "127.0.9.2:80"])  # same list: index kept
    assert rr.next(KEY) == ("127.0.9.2", 80)
    assert rr.update(KEY, ["127.0.9.2:80", "127.0.9.3:80"])  # changed: index reset
    assert rr.next(KEY) == ("127.0.9.2", 80)
    rr.remove(KEY)
    assert rr.next(KEY) is None


def test_affinity_sticks_expires_and_can_be_skipped() -> None:
    clock = FakeClock()
    rr = RoundRobin(affinity=True, affinity_timeout=10, clock=clock)
    rr.update(KEY, ["127.0.9.1:80", "127.0.9.2:80"])
    assert rr.next(KEY, "1.1.1.1") == ("127.0.9.1", 80)
    assert rr.next(KEY, "2.2.2.2") == ("127.0.9.2", 80)
    assert rr.next(KEY, "1.1.1.1") == ("127.0.9.1", 80)
    clock.now = 9  # each use refreshes the affinity
    assert rr.next(KEY, "1.1.1.1") == ("127.0.9.1", 80)
    assert rr.next(KEY, "1.1.1.1", sticky=False) == ("127.0.9.1", 80)  # next in turn
    assert rr.next(KEY, "1.1.1.1") == ("127.0.9.1", 80)
    clock.now = 30  # expired: round robin again
    assert rr.next(KEY, "2.2.2.2") == ("127.0.9.2", 80)
    assert rr.next(KEY, "2.2.2.2") == ("127.0.9.2", 80)


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_endpoint(" [::1]:80 ") == ("::1", 80)
    assert parse_endpoint("db.local:5432") == ("db.local", 5432)
    for bad in ("", "127.0.0.1", "127.0.0.1:", ":80", "h:0", "h:65536", "h:-1", "h:x"):
        assert parse_endpoint(bad) is None, bad


def test_service_key_defaults_the_namespace() -> None:
    assert service_key(Service(id="web")) == ("default", "web")
    assert service_key(Service(id="web", namespace="prod")) == ("prod", "web")


# -- portal IPs ------------------------------------------------------------------------


def test_portals_explicit_stable_and_unique() -> None:
    portals = PortalAllocator("127.77.0.0/16")
    a, b, c = ("default", "a"), ("default", "b"), ("other", "c")
    first = portals.assign({a: "", b: "127.0.9.5", c: "127.77.9.9"})
    assert first[c] == "127.77.9.9"  # in the range: used as given
    assert len(set(first.values())) == 3
    assert all(portals.contains(ip) for ip in first.values())
    assert portals.assign({b: "127.0.9.5", a: ""}) == {a: first[a], b: first[b]}
    # A fresh allocator (a restart) derives the same addresses.
    assert PortalAllocator("127.77.0.0/16").assign({a: "", b: ""}) == {a: first[a], b: first[b]}
    # An explicit claim wins over an allocation.
    moved = portals.assign({a: "", c: first[a]})
    assert moved[c] == first[a] and moved[a] != first[a]


def test_portals_run_out_gracefully() -> None:
    portals = PortalAllocator("127.77.0.0/30")  # two usable addresses
    keys = [("default", name) for name in "abc"]
    assigned = portals.assign(dict.fromkeys(keys, ""))
    assert sorted(assigned.values()) == ["127.77.0.1", "127.77.0.2"]
    assert len(assigned) == 2
    assert not portals.contains("127.77.0.0") and not portals.contains("127.77.0.3")


# -- configuration ---------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    cfg = ProxyUserspaceConfig()
    assert (cfg.bind_address, cfg.portal_net, cfg.udp_idle_timeout) == (
        "127.0.0.1", "127.77.0.0/16", 60.0)
    assert cfg.session_affinity is False and cfg.services_file is None
    assert ProxyUserspaceConfig(portal_net="").portal_net == ""
    assert ProxyUserspaceConfig(portal_net="127.5.0.1/24").portal_net == "127.5.0.0/24"
    bad: dict[str, Any]
    for bad in ({"portal_net": "100.64.0.0/10"}, {"portal_net": "nonsense"},
                {"bind_address": "localhost"}, {"dial_timeouts": []},
                {"dial_timeouts": [1, 0]}, {"udp_idle_timeout": 0}, {"nosuch": 1}):
        with pytest.raises(ValidationError):
            ProxyUserspaceConfig(**bad)


def test_plugin_adds_the_proxy_component_on_nodes_only() -> None:
    def components(role: str) -> list[str]:
        ctx = kernel.prepare({"kubecore": {"plugins": ["proxy_userspace"], "role": role}})
        return [component.name for component in plugin.kubecore_components(ctx)]

    assert components("node") == ["proxy"]
    assert components("all") == ["proxy"]
    assert components("master") == []
    ctx = kernel.prepare({"kubecore": {"plugins": ["proxy_userspace"], "role": "node"}})
    assert [c.name for c in kernel.collect_components(ctx)] == ["proxy"]
    ctx = kernel.prepare({"kubecore": {"plugins": ["proxy_userspace"], "role": "node"},
                          "proxy_userspace": {"session_affinity": True}})
    proxier = ctx.hook.kubecore_proxier(ctx=ctx)
    assert isinstance(proxier, UserspaceProxier) and isinstance(proxier, Proxier)
    assert proxier.balancer.affinity is True


# -- services file -----------------------------------------------------------------------


def test_services_file_json_and_yaml() -> None:
    document = {"services": [{"kind": "Service", "id": "web", "port": 80}],
                "endpoints": [{"id": "web", "endpoints": ["127.0.0.1:8080"]}]}
    services, endpoints = parse_services(json.dumps(document).encode(), "f.json")
    assert [(s.id, s.namespace, s.port, s.protocol) for s in services] == [
        ("web", "default", 80, "TCP")]
    assert endpoints[0].endpoints == ["127.0.0.1:8080"]
    yaml_text = b"services:\n- id: dns\n  port: 53\n  protocol: UDP\n"
    services, endpoints = parse_services(yaml_text, "f.yaml")
    assert (services[0].protocol, endpoints) == ("UDP", [])
    assert parse_services(b"{}", "empty.json") == ([], [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "f: JSON"),
        ("[1, 2]", "expected one object"),
        ('{"service": []}', "unknown key(s) service"),
        ('{"services": {}}', "services must be an array"),
        ('{"services": [{"id": "a", "port": "x"}]}', "services[0]: port: expected an integer"),
        ('{"endpoints": [1]}', "endpoints[0]: expected an object"),
        ('{"services": [{"kind": "Pod", "id": "a"}]}', "services[0]: kind: expected kind"),
    ],
)
def test_services_file_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(ServicesFileError) as caught:
        parse_services(text.encode(), "f")
    assert message in str(caught.value)


# -- proxier bookkeeping ------------------------------------------------------------------


async def test_unusable_services_are_logged_once_and_skipped() -> None:
    proxier = UserspaceProxier(ProxyUserspaceConfig(portal_net=""))
    bad = [Service(id="zero", port=0), Service(id="sctp", port=1234, protocol="SCTP")]
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        with capture_logs() as logs:
            await proxier.apply(bad, [])
            await proxier.apply(bad, [])
        skipped = [(e["service"], e["reason"]) for e in logs if e["event"] == "service skipped"]
        assert skipped == [("default/zero", "port 0 is not in 1..65535"),
                           ("default/sctp", "protocol 'SCTP' is not TCP or UDP")]
        assert proxier.services() == []
        nursery.cancel_scope.cancel()


# -- pipe pool ----------------------------------------------------------------------------


def test_pipe_pool_budget_and_reuse() -> None:
    pool = PipePool(pipe_size=1 << 20, memory=2 << 20, keep=1)
    first, second, third = pool.get(), pool.get(), pool.get()
    assert first is not None and second is not None and third is not None
    assert (first.size, second.size) == (1 << 20, 1 << 20)
    assert third.size < 1 << 20 and not third.resized  # over budget: default size
    assert pool.resized_bytes == 2 << 20
    pool.put(first, clean=True)
    assert pool.get() is first  # reused
    pool.put(first, clean=False)  # holds data: closed, its budget freed
    pool.put(second, clean=True)
    pool.put(third, clean=True)  # pool full (keep=1): closed
    assert pool.resized_bytes == 1 << 20
    pool.close()
    assert pool.resized_bytes == 0


def test_pipe_pool_eperm_falls_back_to_default_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: Any = 0) -> Any:
        if cmd == pipes_module.F_SETPIPE_SZ:
            raise OSError(errno.EPERM, "Operation not permitted")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    pool = PipePool(pipe_size=1 << 20, memory=64 << 20)
    with capture_logs() as logs:
        pipes = [pool.get() for _ in range(3)]
    assert all(p is not None and p.size == 65536 and not p.resized for p in pipes)
    assert [e["event"] for e in logs].count("pipe buffer limit reached; using smaller pipes") == 1
    for pipe in pipes:
        assert pipe is not None
        pool.put(pipe, clean=False)
    assert pool.resized_bytes == 0
