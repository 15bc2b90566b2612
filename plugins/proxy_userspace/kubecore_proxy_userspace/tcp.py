"""TCP: a listening socket, its accept loop, and each connection's dial and relay.

Sockets are plain non-blocking stdlib sockets waited on through trio's I/O manager
(no ``SocketStream``): the per-connection cost of the high-level stream API is about a
third of the connection rate.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from trio.lowlevel import checkpoint, wait_readable, wait_writable

from kubecore.log import get_logger
from kubecore_proxy_userspace.route import (
    Route,
    ServiceStats,
    close_socket,
    family_of,
    is_ip_literal,
    resolve,
)
from kubecore_proxy_userspace.splice import PumpOptions, pump

log = get_logger("kubecore.proxy_userspace")

# accept() errors that mean "out of resources": back off instead of spinning.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_BACKOFF = 0.1
ACCEPTS_PER_ROUND = 16


@dataclass
class TcpOptions:
    """Per-proxier TCP behaviour: one connect attempt per dial timeout, and how the
    data moves."""

    dial_timeouts: Sequence[float] = (0.25, 0.5, 1.0, 2.0)
    pump: PumpOptions = field(default_factory=PumpOptions)


def open_tcp_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking socket listening on ``host:port``; raises :class:`OSError`."""
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpListener:
    """Accepts on one socket and forwards every connection to an endpoint of its route.

    Connections run in the nursery given to :meth:`serve`, not in the listener, so
    :meth:`close` stops accepting at once while open connections finish.
    """

    protocol = "TCP"

    def __init__(self, sock: socket.socket, route: Route, options: TcpOptions) -> None:
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.route = route
        self.options = options
        self._scope = trio.CancelScope()

    def close(self) -> None:
        """Stop accepting and free the port (connections already accepted go on)."""
        self._scope.cancel()
        close_socket(self.sock, waited_on=True)

    async def serve(
        self,
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until closed; each connection becomes a task in ``connections``."""
        with self._scope:
            task_status.started()
            with contextlib.suppress(trio.ClosedResourceError):  # closed while waiting
                await self._accept_loop(connections)

    async def _accept_loop(self, connections: trio.Nursery) -> None:
        sock = self.sock
        stats = self.route.stats
        while True:
            for _ in range(ACCEPTS_PER_ROUND):
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    await wait_readable(sock)
                    break
                except OSError as exc:
                    if sock.fileno() < 0:
                        return
                    if exc.errno in _RESOURCE_ERRORS:
                        log.warning("accept failed", address=self.address, error=exc.strerror)
                        await trio.sleep(ACCEPT_BACKOFF)
                        break
                    continue  # ECONNABORTED and kin: that client is gone
                conn.setblocking(False)
                stats.accepted += 1
                stats.active += 1
                connections.start_soon(self._connection, connections, conn, peer[0])
            else:
                await checkpoint()  # a flood of connections must not starve the rest

    async def _connection(
        self, connections: trio.Nursery, client: socket.socket, client_ip: str
    ) -> None:
        """Dial an endpoint, then forward: this task carries client -> endpoint, a
        second one endpoint -> client (no nursery per connection: see :class:`_Pair`)."""
        try:
            backend = await self._dial(client_ip)
        except OSError as exc:  # no descriptor or buffer for the endpoint socket
            if self.route.should_warn():
                log.warning("cannot open a socket to an endpoint",
                            service="/".join(self.route.key), error=exc.strerror)
            backend = None
        except BaseException:
            close_socket(client)
            self.route.stats.connection_closed()
            raise
        if backend is None:
            close_socket(client)
            self.route.stats.connection_closed()
            return
        pair = _Pair(client, backend, self.route.stats)
        pump = self.options.pump
        connections.start_soon(pair.direction, backend, client, pump, True)
        await pair.direction(client, backend, pump, False)

    async def _dial(self, client_ip: str) -> socket.socket | None:
        """A connected socket to the first endpoint that answers, trying the next
        endpoint (round robin) after each failure; ``None`` when there is none."""
        route = self.route
        for attempt, timeout in enumerate(self.options.dial_timeouts):
            endpoint = route.next(client_ip, sticky=attempt == 0)
            if endpoint is None:
                route.stats.no_endpoints += 1
                return None
            sock = socket.socket(family_of(endpoint[0]), socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                error = await _connect(sock, endpoint, seconds=timeout)
            except BaseException:
                close_socket(sock)
                raise
            if error == 0:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            close_socket(sock)
            route.stats.dial_failures += 1
            log.debug("endpoint did not answer", service="/".join(route.key),
                      endpoint=f"{endpoint[0]}:{endpoint[1]}", error=errno.errorcode.get(error))
        route.stats.unreachable += 1
        if route.should_warn():
            log.warning("no endpoint answered; closing the connection",
                        service="/".join(route.key), attempts=len(self.options.dial_timeouts),
                        unreachable_total=route.stats.unreachable)
        return None


async def _connect(sock: socket.socket, endpoint: tuple[str, int], *, seconds: float) -> int:
    """Connect ``sock`` within ``seconds``; 0 or the errno that ended it."""
    if not is_ip_literal(endpoint[0]):
        deadline = trio.current_time() + seconds
        with trio.move_on_at(deadline):
            try:
                endpoint = await resolve(endpoint, socket.SOCK_STREAM)
            except OSError:
                return errno.EHOSTUNREACH
        if not is_ip_literal(endpoint[0]):
            return errno.ETIMEDOUT
    error = sock.connect_ex(endpoint)
    if error == errno.EINPROGRESS:
        # On loopback the handshake is usually complete by now; asking again saves a
        # round through the I/O manager.
        error = sock.connect_ex(endpoint)
        if error == errno.EALREADY:
            with trio.move_on_after(seconds):
                await wait_writable(sock)
                return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return errno.ETIMEDOUT
    return 0 if error == errno.EISCONN else error


class _Pair:
    """A client socket and its endpoint socket, forwarded by one task per direction.

    Each direction ends at end of stream and passes the half-close on
    (``shutdown(SHUT_WR)``); the last direction to finish closes both sockets. An
    error in either direction (reset, broken pipe) closes both at once, waking the
    other direction if it waits. The tasks live in the proxier's nursery: a nursery per
    connection would cost a measurable part of the connection rate.
    """

    __slots__ = ("alive", "backend", "client", "closed", "ended", "stats")

    def __init__(self, client: socket.socket, backend: socket.socket, stats: ServiceStats
                 ) -> None:
        self.client = client
        self.backend = backend
        self.stats = stats
        self.alive = 2
        self.ended = False
        self.closed = False
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def direction(
        self, src: socket.socket, dst: socket.socket, options: PumpOptions, wait_first: bool
    ) -> None:
        try:
            await pump(src, dst, options, wait_first=wait_first)
        except (OSError, trio.ClosedResourceError):
            self.close(waited_on=True)  # a reset or broken pipe ends both directions
        except Exception:
            # A fault in one connection must not end the proxier: report it, drop it.
            log.exception("connection failed")
            self.close(waited_on=True)
        else:
            if not self.ended:
                self.ended = True
                with contextlib.suppress(OSError):  # gone: the other direction finds out
                    dst.shutdown(socket.SHUT_WR)
            # else: both directions are done; the close below sends the FIN (dst has no
            # unread data: its own direction read it to the end).
        finally:
            self.alive -= 1
            if self.alive == 0:
                self.close(waited_on=False)
                self.stats.connection_closed()

    def close(self, *, waited_on: bool) -> None:
        if not self.closed:
            self.closed = True
            close_socket(self.client, waited_on=waited_on)
            close_socket(self.backend, waited_on=waited_on)
