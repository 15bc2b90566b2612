"""The endpoints controller against a real apiserver, with pod status reported the way
kubelets report it (a PUT of the pod carrying ``currentState``), and its address rule."""

from __future__ import annotations

import trio

from kubecore.api import (
    POD_RUNNING,
    POD_TERMINATED,
    Container,
    ContainerManifest,
    ContainerStatus,
    Endpoints,
    Pod,
    PodState,
    Port,
    Service,
)
from kubecore.client import ApiClient, ApiError
from kubecore.controllers.endpoints import (
    EndpointsController,
    PortNotFound,
    find_port,
    pod_address,
    service_endpoints,
)
from tests.controllers.helpers import pod, service, wait_for

WITHIN = 1.0
"""Endpoints must follow a pod change within this many seconds."""


async def _report(client: ApiClient, id: str, state: PodState,
                  labels: dict[str, str] | None = None) -> None:
    """What a kubelet does: PUT the pod with its ``currentState`` (and maybe labels)."""
    current = await client.get(Pod, id)
    current.current_state = state
    if labels is not None:
        current.labels = labels
    await client.update(current)


async def _endpoints(client: ApiClient, id: str) -> list[str] | None:
    try:
        return (await client.get(Endpoints, id)).endpoints
    except ApiError as exc:
        if exc.code == 404:
            return None
        raise


async def _becomes(client: ApiClient, id: str, want: list[str],
                   within: float = WITHIN) -> None:
    # The controller writes the addresses sorted.
    async def check() -> bool:
        return await _endpoints(client, id) == sorted(want)

    await wait_for(check, within=within, what=f"endpoints of {id} = {want}")


def _published(container_port: int, host_port: int, host_ip: str = "127.0.0.1"
               ) -> ContainerManifest:
    return ContainerManifest(containers=[Container(name="www", ports=[
        Port(container_port=container_port, host_port=host_port, host_ip=host_ip)])])


async def test_endpoints_follow_reported_addresses_within_a_second(
    client: ApiClient, nursery: trio.Nursery
) -> None:
    await client.create(service("web", {"app": "web"}))
    await client.create(service("other", {"app": "other"}))
    for id in ("web-1", "web-2", "web-3"):
        await client.create(pod(id, {"app": "web"}))
    controller = EndpointsController(client, resync_interval=30.0)
    await nursery.start(controller.run)
    await controller.wait_listed()
    # No pod has an address yet: the endpoints exist and are empty.
    await _becomes(client, "web", [], within=5.0)

    await _report(client, "web-1", PodState(status=POD_RUNNING, pod_ip="127.1.0.1"))
    await _becomes(client, "web", ["127.1.0.1:80"])

    # A published port mapping wins over the pod IP.
    await _report(client, "web-2", PodState(status=POD_RUNNING, pod_ip="127.1.0.2",
                                            manifest=_published(80, 31002)))
    await _becomes(client, "web", ["127.1.0.1:80", "127.0.0.1:31002"])

    # The v0.5 place of the pod IP: the net container's status.
    await _report(client, "web-3", PodState(status=POD_RUNNING, info={
        "net": ContainerStatus(pod_ip="127.1.0.3")}))
    await _becomes(client, "web", ["127.1.0.1:80", "127.1.0.3:80", "127.0.0.1:31002"])

    # Labels that stop matching move the pod to the other service.
    await _report(client, "web-1", PodState(status=POD_RUNNING, pod_ip="127.1.0.1"),
                  labels={"app": "other"})
    await _becomes(client, "web", ["127.1.0.3:80", "127.0.0.1:31002"])
    await _becomes(client, "other", ["127.1.0.1:80"])

    # A deleted pod and a terminated one leave.
    await client.delete(Pod, "web-3")
    await _report(client, "web-2", PodState(status=POD_TERMINATED, pod_ip="127.1.0.2",
                                            manifest=_published(80, 31002)))
    await _becomes(client, "web", [])


async def test_a_burst_gives_one_write(client: ApiClient, nursery: trio.Nursery) -> None:
    await client.create(service("burst", {"app": "burst"}))
    ids = [f"b-{i}" for i in range(6)]
    for id in ids:
        await client.create(pod(id, {"app": "burst"}))
    controller = EndpointsController(client, resync_interval=30.0, debounce=0.5)
    await nursery.start(controller.run)
    await _becomes(client, "burst", [], within=5.0)

    writes: list[list[str]] = []
    listed = await client.list(Endpoints)
    async with trio.open_nursery() as inner:
        async def follow() -> None:
            async with client.watch(Endpoints, listed.resource_version) as watch:
                async for event in watch:
                    writes.append(event.object.endpoints)

        inner.start_soon(follow)
        async with trio.open_nursery() as burst:
            for i, id in enumerate(ids):
                burst.start_soon(_report, client, id,
                                 PodState(status=POD_RUNNING, pod_ip=f"10.2.0.{i}"))
        want = sorted(f"10.2.0.{i}:80" for i in range(len(ids)))
        await _becomes(client, "burst", want, within=2.0)
        await trio.sleep(0.6)
        inner.cancel_scope.cancel()
    assert writes == [want]


async def test_restart_rewrites_nothing_unchanged(
    client: ApiClient, nursery: trio.Nursery
) -> None:
    await client.create(service("steady", {"app": "steady"}))
    await client.create(pod("s-1", {"app": "steady"}))
    await _report(client, "s-1", PodState(status=POD_RUNNING, pod_ip="127.3.0.1"))
    with trio.CancelScope() as first:
        nursery.start_soon(EndpointsController(client).run)
        await _becomes(client, "steady", ["127.3.0.1:80"], within=5.0)
    first.cancel()
    before = (await client.get(Endpoints, "steady")).resource_version
    again = EndpointsController(client, debounce=0.05)
    await nursery.start(again.run)
    await again.wait_listed()
    await trio.sleep(0.3)
    assert (await client.get(Endpoints, "steady")).resource_version == before


async def test_reserved_services_are_not_written(
    client: ApiClient, nursery: trio.Nursery
) -> None:
    await client.create(service("kubernetes", {"app": "master"}))
    await client.create(pod("m-1", {"app": "master"}))
    await _report(client, "m-1", PodState(status=POD_RUNNING, pod_ip="127.4.0.1"))
    await client.create(service("marker", {"app": "marker"}))
    controller = EndpointsController(client, debounce=0.02)
    await nursery.start(controller.run)
    await _becomes(client, "marker", [], within=5.0)
    assert await _endpoints(client, "kubernetes") is None


# -- the address rule ------------------------------------------------------------------


def _pod(ports: list[Port], state: PodState, labels: dict[str, str] | None = None) -> Pod:
    return Pod(id="p", namespace="default", labels=labels or {"app": "x"},
               desired_state=PodState(manifest=ContainerManifest(
                   containers=[Container(name="a", ports=ports),
                               Container(name="b", ports=[Port(name="admin",
                                                               container_port=9000)])])),
               current_state=state)


def test_find_port_follows_v05() -> None:
    p = _pod([Port(name="http", container_port=8080)], PodState())
    assert find_port(p, 0) == 8080
    assert find_port(p, "") == 8080
    assert find_port(p, 1234) == 1234
    assert find_port(p, "admin") == 9000
    try:
        find_port(p, "nope")
    except PortNotFound:
        pass
    else:
        raise AssertionError("a missing port name must raise")


def test_pod_address_prefers_the_published_mapping() -> None:
    ports = [Port(container_port=80)]
    assert pod_address(_pod(ports, PodState()), 80) is None
    assert pod_address(_pod(ports, PodState(pod_ip="127.0.0.5")), 80) == "127.0.0.5:80"
    mapped = PodState(pod_ip="127.0.0.5", host_ip="192.0.2.7",
                      manifest=_published(80, 30080, host_ip=""))
    assert pod_address(_pod(ports, mapped), 80) == "192.0.2.7:30080"
    wildcard = mapped.model_copy(update={"manifest": _published(80, 30080, "0.0.0.0")})
    assert pod_address(_pod(ports, wildcard), 80) == "192.0.2.7:30080"
    # A mapping of another port, or one without a host address, falls back to the pod IP.
    assert pod_address(_pod(ports, mapped), 81) == "127.0.0.5:81"
    nowhere = PodState(pod_ip="127.0.0.5", manifest=_published(80, 30080, host_ip=""))
    assert pod_address(_pod(ports, nowhere), 80) == "127.0.0.5:80"
    assert pod_address(_pod(ports, PodState(pod_ip="fd00::5")), 80) == "[fd00::5]:80"


def test_service_endpoints_select_by_namespace_labels_and_state() -> None:
    svc = Service(id="s", namespace="default", selector={"app": "x"}, container_port="admin")
    running = _pod([Port(container_port=80)], PodState(status=POD_RUNNING, pod_ip="127.0.0.1"))
    elsewhere = running.model_copy(update={"namespace": "other"})
    unlabelled = running.model_copy(update={"labels": {"app": "y"}})
    done = running.model_copy(update={"current_state": PodState(status=POD_TERMINATED,
                                                                pod_ip="127.0.0.1")})
    assert service_endpoints(svc, [running, elsewhere, unlabelled, done]) == ("127.0.0.1:9000",)
