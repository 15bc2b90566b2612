"""TCP in trio: listening sockets, and the connections the data path hands over.

Connections normally run in the reactor thread (:mod:`kubecore_proxy_userspace.reactor`).
One whose endpoint is given by name comes here: the name is resolved in a thread and
the connection forwarded by trio tasks, on plain non-blocking stdlib sockets waited on
through trio's I/O manager (no ``SocketStream``: its per-connection cost is about a
third of the connection rate).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from trio.lowlevel import wait_writable

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


async def forward_connection(
    client: socket.socket,
    client_ip: str,
    route: Route,
    options: TcpOptions,
    first: tuple[str, int],
    connections: trio.Nursery,
) -> None:
    """Dial (starting with ``first``, then the route's next endpoints), then forward:
    this task carries client -> endpoint, a second one endpoint -> client (no nursery
    per connection: see :class:`_Pair`). The connection is already counted as active;
    it is counted closed here."""
    try:
        backend = await _dial(route, options, client_ip, first)
    except OSError as exc:  # no descriptor or buffer for the endpoint socket
        if route.should_warn():
            log.warning("cannot open a socket to an endpoint",
                        service="/".join(route.key), error=exc.strerror)
        backend = None
    except BaseException:
        close_socket(client)
        route.stats.connection_closed()
        raise
    if backend is None:
        close_socket(client)
        route.stats.connection_closed()
        return
    pair = _Pair(client, backend, route.stats)
    pump = options.pump
    connections.start_soon(pair.direction, backend, client, pump, True)
    await pair.direction(client, backend, pump, False)


async def _dial(route: Route, options: TcpOptions, client_ip: str,
                first: tuple[str, int] | None) -> socket.socket | None:
    """A connected socket to the first endpoint that answers, trying the next
    endpoint (round robin) after each failure; ``None`` when there is none."""
    for attempt, timeout in enumerate(options.dial_timeouts):
        endpoint = first if attempt == 0 and first is not None else \
            route.next(client_ip, sticky=attempt == 0)
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
                    service="/".join(route.key), attempts=len(options.dial_timeouts),
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
