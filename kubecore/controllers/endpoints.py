"""The endpoints controller: each service's ``Endpoints`` = the addresses of its pods.

Address rule (kubecore reports pod status by push: a kubelet PUTs the pod with its
``currentState``, see DESIGN.md section 4). For a service and a pod in its namespace
whose labels its selector matches and that is not Terminated:

1. The target port is the service's ``containerPort`` resolved against the pod's
   desired manifest as v0.5's ``findPort``: an int is taken as is, a name is looked up
   among the containers' port names, 0 or "" means the first port of the first
   container. A pod where this fails is skipped (logged).
2. If the pod's ``currentState.manifest`` lists that container port with a non-zero
   ``hostPort`` (the runtime published it: ``PortMapping`` in kubecore.runtime), the
   address is ``<hostIP>:<hostPort>``, where hostIP is the mapping's own ``hostIP``,
   or, when that is empty or a wildcard, the pod's ``currentState.hostIP``. This is the
   address the runtime reports and the one reachable from other hosts (DESIGN.md 4).
3. Otherwise ``<podIP>:<containerPort>``, podIP being ``currentState.podIP`` or, as
   the v0.5 apiserver derived it, ``currentState.info["net"].podIP``.
4. A pod with neither has no address yet and is left out.

Writes: ``Endpoints{id: service id}`` (a PUT, which the apiserver treats as an upsert)
only when the sorted address list differs from what the endpoints hold; the services
``kubernetes`` and ``kubernetes-ro`` and services without a selector (their endpoints
are written by hand) are never written; nothing is deleted (endpoints go with their
service). Changes are debounced: the first change starts a ``debounce`` window, after
which every service touched in it is recomputed once, so a burst gives one write per
service and any change is written within ``debounce`` plus the write's own time. Every
``resync_interval`` the endpoints are listed again and every service is recomputed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import trio

from kubecore.api import POD_TERMINATED, Endpoints, Pod, Selector, Service
from kubecore.client import ApiClient, ClientError, WatchEvent
from kubecore.controllers.watching import Backoff, ObjectKey, key_of, list_and_watch
from kubecore.log import get_logger

log = get_logger("kubecore.controllers.endpoints")

DEFAULT_RESYNC_INTERVAL = 10.0
DEFAULT_DEBOUNCE = 0.1
#: Services whose endpoints the master writes itself (v0.5 skips them too).
RESERVED_SERVICES = frozenset({"kubernetes", "kubernetes-ro"})
NET_CONTAINER = "net"


class PortNotFound(ValueError):
    """The service's ``containerPort`` names no port of the pod."""


def find_port(pod: Pod, container_port: int | str) -> int:
    """The container port ``container_port`` designates in ``pod`` (v0.5 findPort)."""
    containers = pod.desired_state.manifest.containers
    if container_port == 0 or container_port == "":
        if containers and containers[0].ports:
            return containers[0].ports[0].container_port
        raise PortNotFound("the pod's first container has no ports")
    if isinstance(container_port, int):
        return container_port
    for container in containers:
        for port in container.ports:
            if port.name == container_port:
                return port.container_port
    raise PortNotFound(f"no container port named {container_port!r}")


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pod_ip(pod: Pod) -> str:
    """The pod IP its status reports, or ""."""
    state = pod.current_state
    if state.pod_ip:
        return state.pod_ip
    net = state.info.get(NET_CONTAINER)
    return net.pod_ip if net is not None else ""


def pod_address(pod: Pod, port: int) -> str | None:
    """Where ``pod``'s container ``port`` is reachable, by the module's rule, or None."""
    state = pod.current_state
    for container in state.manifest.containers:
        for mapping in container.ports:
            if mapping.container_port != port or mapping.host_port <= 0:
                continue
            host = mapping.host_ip
            if not host or _is_unspecified(host):
                host = state.host_ip
            if host:
                return _join(host, mapping.host_port)
    ip = pod_ip(pod)
    return _join(ip, port) if ip else None


def service_endpoints(service: Service, pods: Iterable[Pod]) -> tuple[str, ...]:
    """The sorted, de-duplicated addresses of ``service``'s pods among ``pods``."""
    selector = Selector.from_set(service.selector)
    found: set[str] = set()
    for pod in pods:
        if (pod.namespace != service.namespace or not selector.matches(pod.labels)
                or pod.current_state.status == POD_TERMINATED):
            continue
        try:
            port = find_port(pod, service.container_port)
        except PortNotFound as exc:
            log.warning("pod left out of endpoints", service=service.id,
                        namespace=pod.namespace, pod=pod.id, reason=str(exc))
            continue
        address = pod_address(pod, port)
        if address is not None:
            found.add(address)
    return tuple(sorted(found))


def managed(service: Service) -> bool:
    """Whether this controller writes ``service``'s endpoints."""
    return service.id not in RESERVED_SERVICES and bool(service.selector)


class EndpointsController:
    """Keeps every managed service's endpoints equal to its pods' addresses (module
    docstring). :meth:`run` follows the apiserver until cancelled."""

    def __init__(
        self,
        client: ApiClient,
        *,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
        debounce: float = DEFAULT_DEBOUNCE,
    ) -> None:
        self.client = client
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.services: dict[ObjectKey, Service] = {}
        self.pods: dict[ObjectKey, Pod] = {}
        #: What each service's endpoints hold, as last listed or written.
        self.written: dict[ObjectKey, tuple[str, ...]] = {}
        self._dirty: set[ObjectKey] = set()
        self._wake = trio.Event()
        self._services_listed = trio.Event()
        self._pods_listed = trio.Event()
        self._endpoints_listed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resync_loop)
            nursery.start_soon(self._follow_services)
            nursery.start_soon(self._follow_pods)
            nursery.start_soon(self._flush_loop)
            task_status.started()

    async def wait_listed(self) -> None:
        """Return once services, pods and endpoints have each been listed once."""
        await self._endpoints_listed.wait()
        await self._services_listed.wait()
        await self._pods_listed.wait()

    # -- following the apiserver ---------------------------------------------------

    async def _follow_services(self) -> None:
        # What the endpoints hold must be known first, or a restart would rewrite all.
        await self._endpoints_listed.wait()
        await list_and_watch(self.client, Service, on_list=self.replace_services,
                             on_event=self.handle_service_event)

    async def _follow_pods(self) -> None:
        await self._endpoints_listed.wait()
        await list_and_watch(self.client, Pod, on_list=self.replace_pods,
                             on_event=self.handle_pod_event)

    def replace_services(self, items: list[Service]) -> None:
        self.services = {key_of(svc): svc for svc in items}
        for key in self.services:
            self.mark(key)
        self._services_listed.set()

    def handle_service_event(self, event: WatchEvent[Service]) -> None:
        key = key_of(event.object)
        if event.type == "DELETED":
            # The apiserver deletes the endpoints with the service.
            self.services.pop(key, None)
            self.written.pop(key, None)
            self._dirty.discard(key)
            return
        self.services[key] = event.object
        self.mark(key)

    def replace_pods(self, items: list[Pod]) -> None:
        self.pods = {key_of(pod): pod for pod in items}
        for key in self.services:
            self.mark(key)
        self._pods_listed.set()

    def handle_pod_event(self, event: WatchEvent[Pod]) -> None:
        """Mark the services the pod matches now or matched before."""
        pod = event.object
        key = key_of(pod)
        before = self.pods.pop(key, None) if event.type == "DELETED" else self.pods.get(key)
        if event.type != "DELETED":
            self.pods[key] = pod
        for svc_key, svc in self.services.items():
            if svc.namespace != pod.namespace or not managed(svc):
                continue
            selector = Selector.from_set(svc.selector)
            if selector.matches(pod.labels) or (
                before is not None and selector.matches(before.labels)
            ):
                self.mark(svc_key)

    async def _list_endpoints(self) -> None:
        listed = await self.client.list(Endpoints)
        self.written = {key_of(ep): tuple(sorted(ep.endpoints)) for ep in listed.items}
        self._endpoints_listed.set()

    async def _resync_loop(self) -> None:
        backoff = Backoff()
        while not self._endpoints_listed.is_set():
            try:
                await self._list_endpoints()
            except ClientError as exc:
                log.warning("cannot list endpoints; retrying", error=str(exc))
                await backoff.sleep()
        while True:
            await trio.sleep(self.resync_interval)
            try:
                await self._list_endpoints()
            except ClientError as exc:
                log.warning("resync: cannot list endpoints", error=str(exc))
            for key in self.services:
                self.mark(key)

    # -- writing -------------------------------------------------------------------

    def mark(self, key: ObjectKey) -> None:
        """Recompute service ``key`` at the end of the current debounce window."""
        self._dirty.add(key)
        self._wake.set()

    async def _flush_loop(self) -> None:
        backoff = Backoff(maximum=self.resync_interval)
        while True:
            await self._wake.wait()
            await trio.sleep(self.debounce)
            self._wake = trio.Event()
            dirty, self._dirty = self._dirty, set()
            failed = False
            for key in sorted(dirty):
                try:
                    await self.sync(key)
                except ClientError as exc:
                    failed = True
                    log.warning("cannot write endpoints; retrying", namespace=key[0],
                                service=key[1], error=str(exc))
                    self.mark(key)
                except Exception:
                    # One broken service never stops the others.
                    log.exception("endpoints of a service failed", namespace=key[0],
                                  service=key[1])
            if failed:
                await backoff.sleep()
            else:
                backoff.reset()

    async def sync(self, key: ObjectKey) -> None:
        """Write service ``key``'s endpoints if its address set changed."""
        service = self.services.get(key)
        if service is None or not managed(service):
            return
        addresses = service_endpoints(service, self.pods.values())
        if self.written.get(key) == addresses:
            return
        await self.client.update(
            Endpoints(id=service.id, namespace=service.namespace, endpoints=list(addresses)),
            namespace=service.namespace,
        )
        self.written[key] = addresses
        log.info("endpoints written", namespace=service.namespace, service=service.id,
                 endpoints=list(addresses))
