"""UDP: one socket per service address, one backend socket per client address.

A datagram from a new client address picks an endpoint (round robin, or the client
IP's affinity) and opens a socket connected to it; replies arriving on that socket go
back to the client from the service address. A session ends after ``idle_timeout``
seconds without a datagram either way, when its endpoint reports an error (ICMP port
unreachable), when its endpoint leaves the service, or when the listener closes.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from dataclasses import dataclass

import trio
from trio.lowlevel import checkpoint, wait_readable

from kubecore.log import get_logger
from kubecore_proxy_userspace.balancer import Address
from kubecore_proxy_userspace.route import Route, close_socket, family_of, resolve

log = get_logger("kubecore.proxy_userspace")

DATAGRAMS_PER_ROUND = 32


def open_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port``; raises :class:`OSError`."""
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Session:
    sock: socket.socket
    endpoint: Address
    scope: trio.CancelScope  # its deadline is the idle timeout, pushed on every datagram


class UdpListener:
    """Forwards datagrams between clients and endpoints (see the module docstring)."""

    protocol = "UDP"

    def __init__(
        self, sock: socket.socket, route: Route, *, idle_timeout: float, bufsize: int
    ) -> None:
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.route = route
        self.idle_timeout = idle_timeout
        self.bufsize = bufsize
        self._sessions: dict[tuple[str, int], _Session] = {}
        self._scope = trio.CancelScope()

    def close(self) -> None:
        """Stop serving: the socket and every session are closed."""
        self._scope.cancel()
        close_socket(self.sock, waited_on=True)

    def prune(self, endpoints: Collection[Address]) -> None:
        """End the sessions whose endpoint is not in ``endpoints`` (their clients' next
        datagram picks a current endpoint)."""
        for client, session in list(self._sessions.items()):
            if session.endpoint not in endpoints:
                self._end(client, session)

    def _end(self, client: tuple[str, int], session: _Session) -> None:
        if self._sessions.get(client) is session:
            del self._sessions[client]
        session.scope.cancel()

    async def serve(
        self,
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until closed. Sessions live here (``connections`` is not used: a UDP
        session cannot outlive the socket its replies are sent from)."""
        with self._scope:
            async with trio.open_nursery() as sessions:
                task_status.started()
                await self._receive(sessions)
                sessions.cancel_scope.cancel()

    async def _receive(self, sessions: trio.Nursery) -> None:
        sock = self.sock
        while True:
            for _ in range(DATAGRAMS_PER_ROUND):
                try:
                    data, client = sock.recvfrom(self.bufsize)
                except BlockingIOError:
                    try:
                        await wait_readable(sock)
                    except trio.ClosedResourceError:
                        return  # closed while waiting
                    break
                except OSError:
                    if sock.fileno() < 0:
                        return
                    continue
                await self._forward(sessions, data, client[:2])
            else:
                await checkpoint()

    async def _forward(
        self, sessions: trio.Nursery, data: bytes, client: tuple[str, int]
    ) -> None:
        stats = self.route.stats
        session = self._sessions.get(client)
        if session is None:
            session = await self._open_session(sessions, client)
            if session is None:
                stats.dropped += 1
                return
        session.scope.deadline = trio.current_time() + self.idle_timeout
        try:
            session.sock.send(data)
        except OSError:  # a full buffer, or the endpoint refused an earlier datagram
            stats.dropped += 1
            self._end(client, session)
            return
        stats.datagrams += 1

    async def _open_session(
        self, sessions: trio.Nursery, client: tuple[str, int]
    ) -> _Session | None:
        route = self.route
        endpoint = route.next(client[0])
        if endpoint is None:
            route.stats.no_endpoints += 1
            return None
        try:
            address = await resolve(endpoint, socket.SOCK_DGRAM)
            backend = socket.socket(family_of(address[0]), socket.SOCK_DGRAM)
        except OSError as exc:
            if route.should_warn():
                log.warning("cannot open a UDP session", service="/".join(route.key),
                            endpoint=f"{endpoint[0]}:{endpoint[1]}", error=str(exc))
            return None
        try:
            backend.setblocking(False)
            backend.connect(address)
        except OSError as exc:
            backend.close()
            if route.should_warn():
                log.warning("cannot open a UDP session", service="/".join(route.key),
                            endpoint=f"{endpoint[0]}:{endpoint[1]}", error=str(exc))
            return None
        session = _Session(backend, endpoint, trio.CancelScope())
        self._sessions[client] = session
        route.stats.sessions += 1
        sessions.start_soon(self._replies, client, session)
        return session

    async def _replies(self, client: tuple[str, int], session: _Session) -> None:
        """Send the endpoint's datagrams back to ``client`` until the session ends."""
        try:
            with session.scope:
                backend = session.sock
                while True:
                    try:
                        data = backend.recv(self.bufsize)
                    except BlockingIOError:
                        await wait_readable(backend)
                        continue
                    except OSError:
                        return  # ICMP port unreachable: the endpoint is gone
                    session.scope.deadline = trio.current_time() + self.idle_timeout
                    try:
                        self.sock.sendto(data, client)
                    except OSError:
                        self.route.stats.dropped += 1
                    await checkpoint()
        finally:
            if self._sessions.get(client) is session:
                del self._sessions[client]
            self.route.stats.sessions -= 1
            close_socket(session.sock)
