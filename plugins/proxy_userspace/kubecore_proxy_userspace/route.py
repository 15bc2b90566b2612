"""What a listener needs at connection time: its service, the balancer, counters."""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from dataclasses import dataclass

import trio

from kubecore.proxy import ServiceKey
from kubecore_proxy_userspace.balancer import Address, RoundRobin

WARN_INTERVAL = 10.0


@dataclass
class ServiceStats:
    """Counters of one service, kept across listener reopenings."""

    accepted: int = 0  # TCP connections accepted
    active: int = 0  # TCP connections being forwarded now
    no_endpoints: int = 0  # TCP connections closed / UDP datagrams dropped: no endpoint
    dial_failures: int = 0  # TCP connect attempts that failed or timed out
    unreachable: int = 0  # TCP connections closed after every attempt failed
    datagrams: int = 0  # UDP datagrams forwarded to an endpoint
    dropped: int = 0  # UDP datagrams dropped (no endpoint, no socket, send failed)
    sessions: int = 0  # UDP client sessions open now

    def connection_closed(self) -> None:
        self.active -= 1


@dataclass
class Route:
    """The service a listener serves: endpoints come from ``balancer`` at every new
    connection, so endpoint changes apply at once."""

    key: ServiceKey
    balancer: RoundRobin
    stats: ServiceStats
    _warned: float = -WARN_INTERVAL

    def should_warn(self) -> bool:
        """Whether a per-connection warning may be logged now (at most one per
        :data:`WARN_INTERVAL` seconds per service, so a dead service cannot flood the log)."""
        now = time.monotonic()
        if now - self._warned < WARN_INTERVAL:
            return False
        self._warned = now
        return True

    def next(self, client_ip: str | None, *, sticky: bool = True) -> Address | None:
        return self.balancer.next(self.key, client_ip, sticky=sticky)


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 literal, AF_INET otherwise."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@functools.lru_cache(maxsize=4096)
def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(address: Address, kind: socket.SocketKind) -> Address:
    """``address`` with its host as an IP literal; a name is resolved in a thread
    (v1beta1 endpoints are IPs, so this is rare)."""
    host, port = address
    if is_ip_literal(host):
        return address
    infos = await trio.socket.getaddrinfo(host, port, type=kind)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    ip = infos[0][4][0]
    return (str(ip), port)


def close_socket(sock: socket.socket, *, waited_on: bool = False) -> None:
    """Close ``sock``. ``waited_on``: a trio task may be waiting on it, so wake it first
    (it sees :class:`trio.ClosedResourceError`); otherwise that bookkeeping is skipped,
    as for connection sockets closed by the one task that used them."""
    if waited_on and sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
    sock.close()
