"""proxy_userspace's TCP data path thread, where the behaviour tests do not reach: dial
timeouts (an endpoint whose accept queue is full drops the handshake), endpoints given
by name (handed to the trio path), a client that stops reading, data and end of stream
arriving in one edge, listeners reopened under traffic, and stopping the proxier with
connections open."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack

import pytest
import trio
import trio.lowlevel
from structlog.testing import capture_logs

from kubecore.api import Endpoints
from tests.plugins.test_proxy_userspace import (
    KEY,
    LOCAL,
    backends,
    endpoints,
    free_port,
    name_via,
    open_fds,
    read_all,
    read_line,
    running,
    service,
    start_server,
    wait_until,
)


def silent_endpoint(stack: ExitStack) -> int:
    """A port whose listener never accepts and whose accept queue is full: the kernel
    drops further handshakes, so a connect there neither succeeds nor fails."""
    listener = stack.enter_context(socket.socket())
    listener.bind((LOCAL, 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    for _ in range(2):  # fill the queue (backlog 0 still admits one)
        filler = stack.enter_context(socket.socket())
        filler.setblocking(False)
        filler.connect_ex((LOCAL, port))
    return port


async def test_dial_timeout_moves_to_the_next_endpoint() -> None:
    port = free_port()
    with ExitStack() as stack:
        silent = silent_endpoint(stack)
        async with trio.open_nursery() as nursery, \
                running(dial_timeouts=[0.2, 0.2, 0.2]) as proxier:
            (good,) = await backends(nursery, "good")
            await proxier.apply([service(port=port)], [endpoints("web", silent, good)])
            started = trio.current_time()
            assert await name_via(port) == "good"
            # The first attempt went to the silent endpoint and waited its timeout out.
            assert trio.current_time() - started >= 0.2
            assert proxier.stats(KEY).dial_failures == 1
            assert proxier.stats(KEY).unreachable == 0

            # Only silent endpoints: every attempt times out, then the client is closed.
            await proxier.apply([service(port=port)], [endpoints("web", silent)])
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream(LOCAL, port)
                assert await read_all(stream) == b""
            assert proxier.stats(KEY).unreachable == 1
            assert proxier.stats(KEY).dial_failures == 4
            await wait_until(lambda: proxier.stats(KEY).active == 0)
            nursery.cancel_scope.cancel()


async def test_endpoint_by_name_is_forwarded() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        (backend,) = await backends(nursery, "named")
        await proxier.apply([service(port=port)],
                            [Endpoints(id="web", endpoints=[f"localhost:{backend}"])])
        for _ in range(3):
            assert await name_via(port) == "named"
        await wait_until(lambda: proxier.stats(KEY).active == 0)
        assert proxier.stats(KEY).accepted == 3
        nursery.cancel_scope.cancel()


async def test_client_that_stops_reading_holds_back_only_itself() -> None:
    """A client that does not read fills the buffers on its path; the proxy stops
    reading for it (and only it), then passes every byte on once it reads again."""
    port = free_port()
    size = 32 << 20

    async def flood(stream: trio.SocketStream) -> None:
        async with stream:
            block = b"x" * (1 << 20)
            for _ in range(size // len(block)):
                await stream.send_all(block)

    async with trio.open_nursery() as nursery, running(splice=False) as proxier:
        listeners = await nursery.start(trio.serve_tcp, flood, 0)
        backend = listeners[0].socket.getsockname()[1]
        (echo,) = await backends(nursery, "echo")
        await proxier.apply([service(port=port), service("echo", port=(other := free_port()))],
                            [endpoints("web", backend), endpoints("echo", echo)])
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream(LOCAL, port)
            async with stream:
                assert await stream.receive_some(1) == b"x"
                await trio.sleep(0.3)  # buffers fill up meanwhile
                assert await name_via(other) == "echo"  # others go on
                received = 1 + len(await read_all(stream))
        assert received == size
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("config", [{"splice": False}, {"splice_after": 0}],
                         ids=["copy", "splice"])
async def test_data_and_end_of_stream_in_one_edge(config: dict[str, int]) -> None:
    """Bytes and the client's FIN both arrive while the data path thread is busy, so
    one edge-triggered event reports them together. A read returns the bytes and stops
    short of the FIN; the FIN must still be passed on, though no further edge will
    come for it."""
    port = free_port()

    async def count_then_reply(stream: trio.SocketStream) -> None:
        async with stream:
            data = await read_all(stream)
            await stream.send_all(f"got {len(data)}\n".encode())

    async with trio.open_nursery() as nursery, running(**config) as proxier:
        backend = await start_server(nursery, count_then_reply)
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(LOCAL, port)
            await stream.send_all(b"x" * 1000)
            await wait_until(lambda: proxier.stats(KEY).active == 1)
            await trio.sleep(0.1)  # forwarded; both sockets wait for their next edge
            busy = threading.Event()

            def hold_the_thread() -> None:
                busy.set()
                time.sleep(0.3)

            reactor = proxier._reactor
            assert reactor is not None
            reactor.call(hold_the_thread)
            await trio.to_thread.run_sync(busy.wait)
            await stream.send_all(b"y" * 1000)
            await stream.send_eof()
            assert await read_all(stream) == b"got 2000\n"
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_stopping_the_proxier_closes_open_connections() -> None:
    port = free_port()
    fds = open_fds()
    async with trio.open_nursery() as outer:
        (backend,) = await backends(outer, "held")
        async with trio.open_nursery() as nursery:
            async with running() as proxier:
                await proxier.apply([service(port=port)], [endpoints("web", backend)])
                stream = await trio.open_tcp_stream(LOCAL, port)
                assert await read_line(stream) == b"held\n"
                assert proxier.stats(KEY).active == 1
            # The proxier has stopped: its side of the connection is closed.
            with trio.fail_after(5):
                assert await read_all(stream) == b""
            await stream.aclose()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    assert open_fds() <= fds


async def test_listeners_reopened_under_traffic() -> None:
    """A service whose port changes over and over while clients keep connecting: each
    change closes the listener in the trio thread while the data path thread may be
    accepting on it, and the freed descriptor numbers are reused at once. Connections
    are served, refused or (queued on a closed listener) reset; nothing leaks or
    fails."""
    ports = [free_port(), free_port()]
    fds = open_fds()
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery, running() as proxier:
            (backend,) = await backends(nursery, "a")
            served = 0
            changing = True

            async def client(port: int) -> None:
                nonlocal served
                while changing:
                    try:
                        assert await name_via(port) == "a"
                        served += 1
                    except (OSError, trio.BrokenResourceError):
                        # Refused while that port is not served, or reset by the kernel:
                        # closing a listener resets the connections in its queue.
                        await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as clients:
                for port in ports:
                    clients.start_soon(client, port)
                for round_ in range(60):
                    await proxier.apply([service(port=ports[round_ % 2])],
                                        [endpoints("web", backend)])
                    await trio.sleep(0.005)
                changing = False
            await wait_until(lambda: proxier.stats(KEY).active == 0)
            assert served > 0
            nursery.cancel_scope.cancel()
    failures = [e for e in logs if e["log_level"] in ("error", "critical")
                or e["event"] in ("proxy event failed", "proxy data path failed")]
    assert not failures, failures
    assert open_fds() <= fds
