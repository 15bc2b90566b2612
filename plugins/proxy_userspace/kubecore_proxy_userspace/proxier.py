"""The userspace proxier: listeners per service, kept in step with ``apply``.

Each service gets a listener on ``bind_address:port`` and, with a portal network, one
on ``portalIP:port``. ``apply`` compares each service's wanted addresses with what is
open: an unchanged service keeps its sockets, a changed one has its listeners closed
and reopened, a removed one is closed (its TCP connections belong to the data path,
not to the listener, so they finish). A bind that fails (address in use) is logged
once and retried on the next ``apply``.

TCP listeners and connections are served by a :class:`~.reactor.Reactor` thread that
:meth:`UserspaceProxier.run` starts, and stops (closing every connection) when it
ends; UDP listeners are trio tasks in the proxier's nursery.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from kubecore.log import get_logger
from kubecore.proxy import ServiceKey, service_key
from kubecore_proxy_userspace.balancer import RoundRobin
from kubecore_proxy_userspace.config import ProxyUserspaceConfig
from kubecore_proxy_userspace.pipes import PipePool
from kubecore_proxy_userspace.portals import PortalAllocator
from kubecore_proxy_userspace.reactor import Reactor, TcpListener
from kubecore_proxy_userspace.route import Route, ServiceStats, close_socket
from kubecore_proxy_userspace.splice import HAVE_SPLICE, PumpOptions
from kubecore_proxy_userspace.tcp import TcpOptions, forward_connection, open_tcp_listener
from kubecore_proxy_userspace.udp import UdpListener, open_udp_socket

if TYPE_CHECKING:
    from kubecore.api import Endpoints, Service

log = get_logger("kubecore.proxy_userspace")

Listener = TcpListener | UdpListener
Address = tuple[str, int]
PROTOCOLS = ("TCP", "UDP")
_Wanted = tuple[str, int, str]  # protocol, port, requested portal IP


@dataclass(frozen=True)
class _Spec:
    """What a service's listeners depend on; any change reopens them."""

    protocol: str
    port: int
    portal_ip: str | None


@dataclass
class _Served:
    spec: _Spec
    route: Route
    listeners: dict[Address, Listener] = field(default_factory=dict)
    failed: dict[Address, str] = field(default_factory=dict)  # address -> why (logged once)

    def wanted(self, bind_address: str) -> list[Address]:
        addresses = [(bind_address, self.spec.port)]
        if self.spec.portal_ip is not None:
            addresses.append((self.spec.portal_ip, self.spec.port))
        return addresses


class UserspaceProxier:
    """The :class:`kubecore.proxy.Proxier` of this plugin (see the module docstring)."""

    name = "userspace"

    def __init__(self, config: ProxyUserspaceConfig | None = None) -> None:
        self.config = config or ProxyUserspaceConfig()
        cfg = self.config
        self.balancer = RoundRobin(
            affinity=cfg.session_affinity, affinity_timeout=cfg.session_affinity_timeout
        )
        self.portals = PortalAllocator(cfg.portal_net) if cfg.portal_net else None
        self.pipes = PipePool(cfg.pipe_size, cfg.pipe_memory) if cfg.splice else None
        pump = PumpOptions(
            copy_buffer=cfg.copy_buffer,
            splice_after=cfg.splice_after,
            pipes=self.pipes if HAVE_SPLICE else None,
        )
        self.tcp_options = TcpOptions(dial_timeouts=tuple(cfg.dial_timeouts), pump=pump)
        # Connections handed to trio (endpoints given by name) copy: the pipe pool
        # belongs to the reactor thread.
        self.trio_tcp_options = TcpOptions(
            dial_timeouts=self.tcp_options.dial_timeouts,
            pump=PumpOptions(copy_buffer=cfg.copy_buffer, splice_after=cfg.splice_after),
        )
        self._reactor: Reactor | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._served: dict[ServiceKey, _Served] = {}
        self._stats: dict[ServiceKey, ServiceStats] = {}
        self._wanted: tuple[list[Service], list[Endpoints]] = ([], [])
        self._skipped: dict[ServiceKey, str] = {}
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    # -- the Proxier contract ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; UDP listeners and connections handed over to trio live
        in this task, TCP listeners and connections in the reactor thread it starts."""
        self._token = trio.lowlevel.current_trio_token()
        reactor = self._reactor = Reactor(self.tcp_options, self._hand_off)
        reactor.start()
        try:
            async with trio.open_nursery() as nursery:
                async with self._lock:
                    self._nursery = nursery
                    self._sync(*self._wanted)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            reactor.stop()  # every connection closed, the thread ended
            self._reactor = None
            for served in self._served.values():
                self._close_all(served)
            self._served.clear()
            if self.pipes is not None:
                self.pipes.close()

    async def apply(self, services: Sequence[Service], endpoints: Sequence[Endpoints]) -> None:
        """Make the listeners match ``services`` and route to ``endpoints`` (full sets);
        see :class:`kubecore.proxy.Proxier`."""
        async with self._lock:
            self._wanted = (list(services), list(endpoints))
            if self._nursery is not None:
                self._sync(*self._wanted)

    # -- introspection ----------------------------------------------------------------

    def addresses(self, key: ServiceKey) -> list[Address]:
        """The addresses ``key`` is listening on now."""
        served = self._served.get(key)
        return list(served.listeners) if served else []

    def portal_ip(self, key: ServiceKey) -> str | None:
        served = self._served.get(key)
        return served.spec.portal_ip if served else None

    def stats(self, key: ServiceKey) -> ServiceStats:
        """Counters of ``key`` (kept after the service is removed)."""
        return self._stats.setdefault(key, ServiceStats())

    def services(self) -> list[ServiceKey]:
        return sorted(self._served)

    # -- reconciliation ---------------------------------------------------------------

    def _sync(self, services: Sequence[Service], endpoints: Sequence[Endpoints]) -> None:
        wanted = self._wanted_services(services)
        portals = self._assign_portals(wanted)
        specs = {
            key: _Spec(protocol, port, portals.get(key))
            for key, (protocol, port, _) in wanted.items()
        }
        by_key = {service_key(item): item.endpoints for item in endpoints}

        # Counters of removed services are kept while they have open connections.
        for key in [key for key, stats in self._stats.items()
                    if key not in specs and stats.active <= 0 and key not in self._served]:
            del self._stats[key]

        # Close first, so ports freed by removed or changed services can be reused below.
        for key in [key for key in self._served if key not in specs]:
            gone = self._served.pop(key)
            self._close_all(gone)
            self.balancer.remove(key)
            log.info("service removed", service=_name(key), active=gone.route.stats.active)
        for key, spec in specs.items():
            current = self._served.get(key)
            if current is not None and current.spec != spec:
                self._close_all(current)
                current.spec = spec
                current.failed.clear()
                log.info("service changed; listeners reopened", service=_name(key))

        for key in sorted(specs):
            served = self._served.get(key)
            if served is None:
                route = Route(key, self.balancer, self.stats(key))
                served = self._served[key] = _Served(specs[key], route)
            changed = self.balancer.update(key, by_key.get(key, []))
            if changed:
                self._endpoints_changed(key, served)
            self._open_missing(served)

    def _wanted_services(self, services: Sequence[Service]) -> dict[ServiceKey, _Wanted]:
        """key -> (protocol, port, requested portal IP); unusable services are logged
        (once while they stay the same) and left out."""
        wanted: dict[ServiceKey, _Wanted] = {}
        skipped: dict[ServiceKey, str] = {}
        for service in services:
            key = service_key(service)
            protocol = (service.protocol or "TCP").upper()
            problem = ""
            if not service.id:
                problem = "service without id"
            elif not 0 < service.port < 65536:
                problem = f"port {service.port} is not in 1..65535"
            elif protocol not in PROTOCOLS:
                problem = f"protocol {service.protocol!r} is not TCP or UDP"
            elif key in wanted:
                problem = "listed twice; the first one is served"
            if problem:
                skipped[key] = problem
                if self._skipped.get(key) != problem:
                    log.warning("service skipped", service=_name(key), reason=problem)
                continue
            wanted[key] = (protocol, service.port, service.portal_ip)
        self._skipped = skipped
        return wanted

    def _assign_portals(self, wanted: dict[ServiceKey, _Wanted]) -> dict[ServiceKey, str]:
        if self.portals is None:
            return {}
        return self.portals.assign({key: requested for key, (_, _, requested) in wanted.items()})

    def _endpoints_changed(self, key: ServiceKey, served: _Served) -> None:
        current = self.balancer.endpoints(key)
        if not current:
            log.warning("service has no endpoints", service=_name(key))
        else:
            log.info("endpoints updated", service=_name(key),
                     endpoints=[f"{host}:{port}" for host, port in current])
        for listener in served.listeners.values():
            if isinstance(listener, UdpListener):
                listener.prune(current)

    def _open_missing(self, served: _Served) -> None:
        assert self._nursery is not None
        cfg = self.config
        for address in served.wanted(cfg.bind_address):
            if address in served.listeners:
                continue
            try:
                listener = self._open(served, address)
            except OSError as exc:
                reason = self._bind_problem(exc, address, served.spec.protocol)
                if served.failed.get(address) != reason:
                    served.failed[address] = reason
                    log.error("cannot listen", service=_name(served.route.key),
                              protocol=served.spec.protocol,
                              address=f"{address[0]}:{address[1]}", reason=reason)
                continue
            if served.failed.pop(address, None) is not None:
                log.info("listening after earlier failure", service=_name(served.route.key))
            served.listeners[address] = listener
            if isinstance(listener, TcpListener):
                listener.start()
            else:
                self._nursery.start_soon(listener.serve, self._nursery)
            log.info("service listening", service=_name(served.route.key),
                     protocol=served.spec.protocol, address=f"{address[0]}:{address[1]}",
                     portal=address[0] == served.spec.portal_ip)

    def _open(self, served: _Served, address: Address) -> Listener:
        host, port = address
        cfg = self.config
        if served.spec.protocol == "UDP":
            return UdpListener(open_udp_socket(host, port), served.route,
                               idle_timeout=cfg.udp_idle_timeout, bufsize=cfg.copy_buffer)
        assert self._reactor is not None
        return TcpListener(open_tcp_listener(host, port, cfg.backlog), served.route,
                           self._reactor)

    def _hand_off(self, client: socket.socket, client_ip: str, route: Route,
                  endpoint: Address) -> None:
        """From the reactor thread: forward ``client`` in trio (see :mod:`.tcp`)."""
        token = self._token
        try:
            if token is None:
                raise trio.RunFinishedError
            token.run_sync_soon(self._forward, client, client_ip, route, endpoint)
        except trio.RunFinishedError:
            close_socket(client)
            route.stats.connection_closed()

    def _forward(self, client: socket.socket, client_ip: str, route: Route,
                 endpoint: Address) -> None:
        nursery = self._nursery
        if nursery is None:  # stopping
            close_socket(client)
            route.stats.connection_closed()
            return
        nursery.start_soon(forward_connection, client, client_ip, route,
                           self.trio_tcp_options, endpoint, nursery)

    def _bind_problem(self, exc: OSError, address: Address, protocol: str) -> str:
        if exc.errno != errno.EADDRINUSE:
            return exc.strerror or str(exc)
        for key, other in self._served.items():
            for listener in other.listeners.values():
                if listener.address == address and listener.protocol == protocol:
                    return f"port conflict: {address[0]}:{address[1]} is served for {_name(key)}"
        return f"address in use: {address[0]}:{address[1]} is held by another program"

    def _close_all(self, served: _Served) -> None:
        for listener in served.listeners.values():
            listener.close()
        if served.listeners:
            log.info("listeners closed", service=_name(served.route.key),
                     addresses=[f"{host}:{port}" for host, port in served.listeners])
        served.listeners.clear()


def _name(key: ServiceKey) -> str:
    return f"{key[0]}/{key[1]}"
