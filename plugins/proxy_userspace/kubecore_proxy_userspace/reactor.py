"""The TCP data path: one thread with its own epoll loop for every listener and connection.

Per connection the work is small (accept, connect, a request and a reply, two ends of
stream), so what it costs is mostly the event loop around it: in trio each wait and
wake-up goes through the I/O manager and a task switch (about 20 us each on the
development machine), and every connection needed two tasks. Here an event is a
dictionary look-up and a method call, so a connection costs a fraction of that.

- **Listeners** are registered level-triggered; each readiness accepts one
  connection. Closing one (from the trio thread) closes its
  socket at once, so the port can be bound again right away; connections it accepted
  go on.
- **Dial**: a non-blocking ``connect`` to the endpoint the route picks; on loopback the
  handshake is usually complete when ``connect`` returns, so it is checked again at
  once, else the socket waits for writability under a timer of that attempt's dial
  timeout. A failed attempt goes to the next endpoint (round robin), up to one attempt
  per dial timeout; when all fail, or there is no endpoint, the client is closed. An
  endpoint given by name (not an IP) hands the connection to the trio path
  (:mod:`kubecore_proxy_userspace.tcp`), which resolves it in a thread.
- **Relay**: each direction copies (``recv``/``send``) until ``splice_after`` bytes
  went by, then moves data with ``splice`` through a pooled pipe (see
  :mod:`kubecore_proxy_userspace.splice` for why). The client's first bytes are read
  as soon as the endpoint answers, without waiting for an event. Both sockets are then
  registered edge-triggered for reading and writing: a direction runs until its
  source is drained or its destination is full, and waits for the next edge. A
  direction that cannot write reads its source no further, and its source's read
  edges are off, until its destination's writable edge (one ``epoll_ctl`` each way,
  none while a resumed direction fills its destination again; level-triggered, every
  block and resume of a bulk transfer cost two to four and an extra round). End of
  stream is passed on with ``shutdown(SHUT_WR)``; the second direction to finish
  closes both sockets; an error in either closes both.
- **Fairness**: an edge moves at most :data:`ROUNDS_PER_EVENT` buffers (or pipe
  loads); a direction with work left goes to a ready queue and gets its next share
  after the next poll, once every other ready socket had its turn.

The thread owns every socket, pipe and counter of the data path; the trio thread only
posts commands (``call``), which a pipe wakes the loop for. ``stop`` closes every
connection.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from kubecore.log import get_logger
from kubecore_proxy_userspace.pipes import Pipe
from kubecore_proxy_userspace.route import Route, close_socket, family_of, is_ip_literal
from kubecore_proxy_userspace.splice import MIN_SPLICE_PIPE, SPLICE_FLAGS, PumpOptions
from kubecore_proxy_userspace.tcp import TcpOptions

log = get_logger("kubecore.proxy_userspace")

IN = select.EPOLLIN
OUT = select.EPOLLOUT
ERR = select.EPOLLERR | select.EPOLLHUP
HUP = select.EPOLLRDHUP | ERR
# A relayed socket is registered for both ways, edge-triggered; only a direction
# blocked on its destination turns its source's IN off meanwhile. EPOLLRDHUP tells a
# short read that left a queued end of stream behind (its edge is spent).
EDGE = IN | OUT | select.EPOLLRDHUP | select.EPOLLET

ROUNDS_PER_EVENT = 8
_NONBLOCKING_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
ACCEPT_BACKOFF = 0.1  # seconds a listener rests after accept() ran out of resources

# accept() errors that mean "out of resources": pause the listener instead of spinning.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Address = tuple[str, int]
#: Hands a connection the reactor cannot dial (an endpoint given by name) to the trio
#: path: client socket, client IP, route, and the endpoint the route picked.
Handoff = Callable[[socket.socket, str, Route, Address], None]


class Reactor:
    """The data path's thread and epoll loop (see the module docstring)."""

    def __init__(self, options: TcpOptions, handoff: Handoff) -> None:
        self.options = options
        self.handoff = handoff
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._commands: deque[Callable[[], None]] = deque()
        self._handlers: dict[int, Callable[[int], None]] = {}  # fd -> handler(events)
        self._masks: dict[int, int] = {}  # fd -> registered events (absent: none)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        # Directions that used up their rounds with work left (edge-triggered: no
        # event would come for it); each gets another share after the next poll.
        self._ready: deque[tuple[_Connection, _Direction]] = deque()
        self._timer_seq = 0
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._closed = False  # the loop's descriptors are closed (their numbers reusable)
        self._thread = threading.Thread(target=self._main, name="kubecore-proxy-tcp",
                                        daemon=True)

    # -- the trio side ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the reactor thread, soon (the trio thread; after :meth:`stop`,
        nothing happens)."""
        if self._closed:
            return
        self._commands.append(fn)
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending
            os.write(self._wake_w, b"\0")

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop, close every connection and the loop's own descriptors. Blocks
        until the thread has ended (it finishes its current round first). Idempotent."""
        if self._closed:
            return
        self.call(self._request_stop)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("proxy data path did not stop in time")
            return
        self._closed = True
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- the loop -----------------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stopping = True

    def _main(self) -> None:
        self._watch(self._wake_r, IN, self._on_wake)
        try:
            self._loop()
        except BaseException:
            log.exception("proxy data path failed")
            raise
        finally:
            for connection in list(self._connections):
                connection.close()
            self._connections.clear()

    def _loop(self) -> None:
        poll = self._epoll.poll
        handlers = self._handlers
        timers = self._timers
        ready = self._ready
        while not self._stopping:
            timeout = -1.0
            if ready:
                timeout = 0.0
            elif timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            for fd, events in poll(timeout):
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        handler(events)
                    except Exception:
                        # One connection's fault must not end the data path.
                        log.exception("proxy event failed")
            if timers:
                self._run_timers()
            # Only those queued before this round: one share each per round.
            for _ in range(len(ready)):
                connection, direction = ready.popleft()
                try:
                    connection.resume(direction)
                except Exception:
                    log.exception("proxy event failed")

    def _on_wake(self, events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        commands = self._commands
        while commands:
            commands.popleft()()

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, fn = heapq.heappop(timers)
            fn()

    def later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` after ``seconds`` (reactor thread only)."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + seconds, self._timer_seq, fn))

    def _watch(self, fd: int, mask: int, handler: Callable[[int], None]) -> None:
        """Register ``fd`` for ``mask`` with ``handler``; mask 0 unregisters (so a socket
        nobody reads or writes cannot report hang-ups in a loop)."""
        current = self._masks.get(fd, 0)
        if mask == current:
            self._handlers[fd] = handler
            return
        if mask == 0:
            del self._masks[fd]
            self._handlers.pop(fd, None)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            return
        self._handlers[fd] = handler
        self._masks[fd] = mask
        if current:
            try:
                self._epoll.modify(fd, mask)
            except FileNotFoundError:
                # A stale record: a listener the trio thread closed (which took it
                # out of the epoll set) and whose number a new socket already reuses.
                self._epoll.register(fd, mask)
        else:
            try:
                self._epoll.register(fd, mask)
            except FileExistsError:  # a closed descriptor's number, reused
                self._epoll.modify(fd, mask)

    def _forget(self, fd: int) -> None:
        """Drop ``fd`` before it is closed (closing removes it from the epoll set)."""
        self._handlers.pop(fd, None)
        self._masks.pop(fd, None)

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: TcpListener) -> None:
        self.call(lambda: self._add_listener(listener))

    def _add_listener(self, listener: TcpListener) -> None:
        if not listener.closed:
            self._watch(listener.fd, IN, listener.on_ready)

    def remove_listener(self, listener: TcpListener) -> None:
        self.call(lambda: self._remove_listener(listener))

    def _remove_listener(self, listener: TcpListener) -> None:
        # The socket is closed already and its number may name a newer socket by now.
        if self._handlers.get(listener.fd) == listener.on_ready:
            self._forget(listener.fd)
            with contextlib.suppress(OSError):
                self._epoll.unregister(listener.fd)

    def pause_listener(self, listener: TcpListener) -> None:
        """Stop accepting for :data:`ACCEPT_BACKOFF` seconds (out of descriptors)."""
        self._watch(listener.fd, 0, listener.on_ready)
        self.later(ACCEPT_BACKOFF, lambda: self._add_listener(listener))

    def accepted(self, client: socket.socket, client_ip: str, route: Route) -> None:
        connection = _Connection(self, client, client_ip, route)
        self._connections.add(connection)
        connection.dial()


class TcpListener:
    """A listening socket served by the reactor; connections it accepts outlive it."""

    protocol = "TCP"

    def __init__(self, sock: socket.socket, route: Route, reactor: Reactor) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.route = route
        self.reactor = reactor
        self.closed = False

    def start(self) -> None:
        self.reactor.add_listener(self)

    def close(self) -> None:
        """Stop accepting and free the port at once (any thread)."""
        if not self.closed:
            self.closed = True
            self.sock.close()
            self.reactor.remove_listener(self)

    def on_ready(self, events: int) -> None:
        """Accept one connection. One per readiness: a second ``accept`` would mostly
        find nothing (one system call wasted per connection); level-triggered epoll
        reports the listener again while connections are waiting."""
        if self.closed:
            return  # an event from before the close
        try:
            client, peer = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if self.closed:
                return
            if exc.errno in _RESOURCE_ERRORS:
                log.warning("accept failed", address=self.address, error=exc.strerror)
                self.reactor.pause_listener(self)
            return  # else ECONNABORTED and kin: that client is gone
        client.setblocking(False)
        stats = self.route.stats
        stats.accepted += 1
        stats.active += 1
        self.reactor.accepted(client, peer[0], self.route)


class _Direction:
    """Bytes from ``src`` to ``dst``: copied first, spliced past ``splice_after``.

    Edge-triggered, a direction runs until ``src`` is drained (EAGAIN with an empty
    pipe, or a short ``recv`` without a reported end of stream), ``dst`` is full
    (``blocked``: ``src``'s read edges are off until the next writable edge of
    ``dst``, which then also reads ``src`` again), end of stream, or its rounds are
    used up (``queued``: resumed after the next poll; edges meanwhile are dropped)."""

    __slots__ = (
        "blocked",
        "done",
        "dst",
        "dst_fd",
        "eof",
        "hup",
        "in_pipe",
        "moved",
        "pending",
        "pipe",
        "queued",
        "src",
        "src_fd",
    )

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.moved = 0  # bytes copied so far (the switch to splice counts them)
        self.pending: memoryview | None = None  # copied bytes dst did not take yet
        self.pipe: Pipe | None = None
        self.in_pipe = 0
        self.eof = False  # src reached end of stream
        self.hup = False  # src reported its peer's end of stream (or an error)
        self.blocked = False  # waiting for dst to become writable
        self.queued = False  # in the reactor's ready queue
        self.done = False  # everything passed on and dst shut down


class _Connection:
    """One client connection: dialling, then two directions (see the module)."""

    __slots__ = ("attempt", "backend", "client", "client_ip", "closed", "dial_id",
                 "endpoint", "reactor", "registered", "route", "to_backend", "to_client")

    def __init__(self, reactor: Reactor, client: socket.socket, client_ip: str,
                 route: Route) -> None:
        self.reactor = reactor
        self.client = client
        self.client_ip = client_ip
        self.route = route
        self.backend: socket.socket | None = None
        self.endpoint: Address | None = None  # of the attempt under way
        self.attempt = 0
        self.dial_id = 0
        self.closed = False
        self.registered = False  # both sockets are in the epoll set, edge-triggered
        self.to_backend: _Direction | None = None
        self.to_client: _Direction | None = None

    # -- dial ---------------------------------------------------------------------------

    def dial(self) -> None:
        """Connect to an endpoint, trying the next one after each failure."""
        route = self.route
        timeouts = self.reactor.options.dial_timeouts
        while self.attempt < len(timeouts):
            endpoint = route.next(self.client_ip, sticky=self.attempt == 0)
            if endpoint is None:
                route.stats.no_endpoints += 1
                self.close()
                return
            if not is_ip_literal(endpoint[0]):
                self._hand_off(endpoint)
                return
            try:
                # Non-blocking from the start: one system call less than setblocking.
                sock = socket.socket(family_of(endpoint[0]), _NONBLOCKING_STREAM)
            except OSError as exc:  # no descriptor or buffer for the endpoint socket
                if route.should_warn():
                    log.warning("cannot open a socket to an endpoint",
                                service="/".join(route.key), error=exc.strerror)
                self.close()
                return
            self.backend = sock
            self.endpoint = endpoint
            error = sock.connect_ex(endpoint)
            if error == errno.EINPROGRESS:
                # On loopback the handshake is usually complete by now; asking again
                # saves a round through the loop.
                error = sock.connect_ex(endpoint)
                if error in (errno.EALREADY, errno.EINPROGRESS):
                    self.dial_id += 1
                    self.reactor._watch(sock.fileno(), OUT, self._on_connect)
                    self.reactor.later(timeouts[self.attempt],
                                       partial(self._on_dial_timeout, self.dial_id))
                    return
            if error in (0, errno.EISCONN):
                self._relay()
                return
            self._attempt_failed(error)
        self._unreachable()

    def _on_connect(self, events: int) -> None:
        sock = self.backend
        if sock is None or self.closed:
            return
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error == 0:
            try:
                sock.getpeername()
            except OSError:  # a stale event (a reused descriptor number): still connecting
                return
            self.dial_id += 1  # the attempt's timer no longer applies
            self._relay()
            return
        self.dial_id += 1
        self._attempt_failed(error)
        self.dial()

    def _on_dial_timeout(self, dial_id: int) -> None:
        if self.closed or dial_id != self.dial_id:
            return
        self.dial_id += 1
        self._attempt_failed(errno.ETIMEDOUT)
        self.dial()

    def _attempt_failed(self, error: int) -> None:
        sock, endpoint = self.backend, self.endpoint
        if sock is not None:
            self.reactor._forget(sock.fileno())
            close_socket(sock)
            self.backend = None
        self.route.stats.dial_failures += 1
        self.attempt += 1
        log.debug("endpoint did not answer", service="/".join(self.route.key),
                  endpoint=f"{endpoint[0]}:{endpoint[1]}" if endpoint else None,
                  error=errno.errorcode.get(error))

    def _unreachable(self) -> None:
        route = self.route
        route.stats.unreachable += 1
        if route.should_warn():
            log.warning("no endpoint answered; closing the connection",
                        service="/".join(route.key),
                        attempts=len(self.reactor.options.dial_timeouts),
                        unreachable_total=route.stats.unreachable)
        self.close()

    def _hand_off(self, endpoint: Address) -> None:
        """Give the client to the trio path (it resolves names); counters go with it."""
        reactor = self.reactor
        reactor._connections.discard(self)
        self.closed = True
        reactor._forget(self.client.fileno())
        reactor.handoff(self.client, self.client_ip, self.route, endpoint)

    # -- relay --------------------------------------------------------------------------

    def _relay(self) -> None:
        client, backend = self.client, self.backend
        assert backend is not None
        backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.to_backend = _Direction(client, backend)
        self.to_client = _Direction(backend, client)
        try:
            # The request is usually there already: forward it without waiting.
            self._step(self.to_backend)
        except OSError:
            self.close()
            return
        if self._finished():
            return
        # Registered after the first step: a socket that is ready when it is added
        # reports one edge at once, so nothing that arrived meanwhile is missed.
        reactor = self.reactor
        self.registered = True
        reactor._watch(client.fileno(), EDGE & ~IN if self.to_backend.blocked else EDGE,
                       self._on_client)
        reactor._watch(backend.fileno(), EDGE, self._on_backend)

    def _on_client(self, events: int) -> None:
        self._on_event(events, self.to_backend, self.to_client)

    def _on_backend(self, events: int) -> None:
        self._on_event(events, self.to_client, self.to_backend)

    def _on_event(self, events: int, reading: _Direction | None,
                  writing: _Direction | None) -> None:
        """``reading`` has this socket as source, ``writing`` as destination. An edge
        for a direction that is not waiting for it (blocked on its destination, or
        queued) is dropped: that direction reads its source again when it resumes."""
        if self.closed or reading is None or writing is None:
            return
        if events & HUP:
            reading.hup = True
        try:
            if writing.blocked and events & (OUT | ERR):
                writing.blocked = False
                self._step(writing)
                if not writing.blocked and not self.closed:
                    # Read edges back on only now: a step that fills the destination
                    # again leaves them off without a system call. A source that is
                    # readable by then reports one edge at once.
                    self._watch_source(writing, EDGE)
            if events & (IN | ERR) and not (reading.done or reading.blocked or reading.queued):
                self._step(reading)
        except OSError:
            self.close()  # a reset or broken pipe ends both directions
            return
        self._finished()

    def resume(self, d: _Direction) -> None:
        """Give ``d`` its next share after it used up its rounds (the ready queue)."""
        d.queued = False
        if self.closed or d.done or d.blocked:
            return
        try:
            self._step(d)
        except OSError:
            self.close()
            return
        self._finished()

    def _finished(self) -> bool:
        """Close the connection when both directions are done; whether it is closed."""
        if self.closed:
            return True
        up, down = self.to_backend, self.to_client
        if up is not None and up.done and down is not None and down.done:
            self.close()
            return True
        return False

    def _block(self, d: _Direction) -> None:
        """``d``'s destination is full: stop its source's read edges until it drains
        (see :meth:`_on_event`), or every segment the client sends meanwhile would wake
        the thread for nothing (voluntary context switches per GiB nearly doubled)."""
        d.blocked = True
        if self.registered:
            self._watch_source(d, EDGE & ~IN)

    def _watch_source(self, d: _Direction, mask: int) -> None:
        handler = self._on_client if d is self.to_backend else self._on_backend
        self.reactor._watch(d.src_fd, mask, handler)

    def _again(self, d: _Direction) -> None:
        """``d`` used up its rounds with work left: queue it for the next round."""
        d.queued = True
        self.reactor._ready.append((self, d))

    def _step(self, d: _Direction) -> None:
        """Move what ``d`` can move now; raises :class:`OSError` on a broken socket."""
        if d.pending is not None:
            try:
                sent = d.dst.send(d.pending)
            except BlockingIOError:
                sent = 0
            if sent < len(d.pending):
                d.pending = d.pending[sent:]
                self._block(d)
                return
            d.pending = None
        if d.pipe is not None:
            self._splice(d)
            return
        if d.eof:
            self._finish(d)
            return
        options = self.reactor.options.pump
        bufsize = options.copy_buffer
        src, dst = d.src, d.dst
        for _ in range(ROUNDS_PER_EVENT):
            try:
                data = src.recv(bufsize)
            except BlockingIOError:
                return
            if not data:
                d.eof = True
                self._finish(d)
                return
            size = len(data)
            options.copied += size
            d.moved += size
            try:
                sent = dst.send(data)
            except BlockingIOError:
                sent = 0
            if sent < size:
                d.pending = memoryview(data)[sent:]
                self._block(d)
                return
            if (options.pipes is not None and d.moved >= options.splice_after
                    and self._take_pipe(d, options)):
                self._splice(d)
                return
            if size < bufsize and not d.hup:
                # Drained: more data is a new edge. (A short read also stops before a
                # queued end of stream, whose edge is spent: hup says so.)
                return
        self._again(d)

    def _take_pipe(self, d: _Direction, options: PumpOptions) -> bool:
        pipes = options.pipes
        assert pipes is not None
        pipe = pipes.get()
        if pipe is None:
            return False
        if pipe.size < MIN_SPLICE_PIPE:  # slower than copying: keep copying
            pipes.put(pipe, clean=True)
            d.moved = -(1 << 62)  # do not ask again for this direction
            return False
        d.pipe = pipe
        return True

    def _splice(self, d: _Direction) -> None:
        # Drain the pipe first, then fill it: a direction resumed by its destination's
        # writable edge finds the pipe full (a read would only fail), and a share ends
        # with a top-up read after a partial write, so the source's window reopens
        # while the destination catches up. Descriptor numbers are kept in ``d``: only
        # this thread closes the sockets, and only after the last step.
        pipe = d.pipe
        assert pipe is not None
        options = self.reactor.options.pump
        size = pipe.size
        splice = os.splice
        for _ in range(ROUNDS_PER_EVENT):
            if d.in_pipe:
                try:
                    n = splice(pipe.r, d.dst_fd, d.in_pipe, None, None, SPLICE_FLAGS)
                except BlockingIOError:
                    self._block(d)
                    return
                d.in_pipe -= n
                options.spliced += n
            if d.eof:
                if not d.in_pipe:
                    self._finish(d)
                    return
                continue
            if d.in_pipe < size:
                try:
                    n = splice(d.src_fd, pipe.w, size - d.in_pipe, None, None, SPLICE_FLAGS)
                except BlockingIOError:
                    if not d.in_pipe:
                        return  # drained: its edge is spent, the next one is new data
                    # Else maybe only the pipe's page slots are full: write, read again.
                except OSError as exc:
                    if d.in_pipe == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS):
                        self._splice_refused(d, options)
                        return
                    raise
                else:
                    if n == 0:
                        d.eof = True
                    d.in_pipe += n
        self._again(d)

    def _splice_refused(self, d: _Direction, options: PumpOptions) -> None:
        """splice(2) does not take these sockets: copy from now on (every direction)."""
        pipes = options.pipes
        pipe = d.pipe
        d.pipe = None
        if pipes is not None and pipe is not None:
            pipes.usable = False
            pipes.put(pipe, clean=True)
            options.pipes = None
        d.moved = -(1 << 62)
        self._step(d)

    def _finish(self, d: _Direction) -> None:
        """``d`` read end of stream and passed everything on: pass the half-close on
        (unless the other direction is done too: closing sends the FIN)."""
        d.done = True
        self._release_pipe(d, clean=True)
        other = self.to_client if d is self.to_backend else self.to_backend
        if other is not None and not other.done:
            with contextlib.suppress(OSError):  # gone: the other direction finds out
                d.dst.shutdown(socket.SHUT_WR)

    def _release_pipe(self, d: _Direction, *, clean: bool) -> None:
        pipe = d.pipe
        if pipe is not None:
            d.pipe = None
            pipes = self.reactor.options.pump.pipes
            if pipes is not None:
                pipes.put(pipe, clean=clean and d.in_pipe == 0)
            else:
                pipe.close()

    def close(self) -> None:
        """Close both sockets and give the pipes back (once)."""
        if self.closed:
            return
        self.closed = True
        reactor = self.reactor
        reactor._connections.discard(self)
        for d in (self.to_backend, self.to_client):
            if d is not None:
                self._release_pipe(d, clean=False)
        for sock in (self.client, self.backend):
            if sock is not None and sock.fileno() >= 0:
                reactor._forget(sock.fileno())
                sock.close()
        self.route.stats.connection_closed()
