"""proxy_userspace with real sockets on 127.0.0.0/8: TCP and UDP forwarding, round
robin, failover, reconfiguration while connections are open, half-close, 1,000
concurrent connections, large transfers, portal IPs, session affinity, UDP idle
timeout, the services file, and ``kubecore run`` as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing, suppress
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from kubecore_proxy_userspace import ProxyUserspaceConfig, UserspaceProxier, follow_services_file
from structlog.testing import capture_logs

from kubecore.api import Endpoints, Service
from tests.processes import KubecoreProcess

LOCAL = "127.0.0.1"
KEY = ("default", "web")

# -- helpers ------------------------------------------------------------------------


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (and so on the portal IPs)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((LOCAL, 0))
            port: int = probe.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as check:
            try:
                check.bind((LOCAL, port))
            except OSError:
                continue
        return port


def service(name: str = "web", port: int = 0, protocol: str = "TCP", **extra: Any) -> Service:
    return Service(id=name, port=port, protocol=protocol, **extra)


def endpoints(name: str, *ports: int) -> Endpoints:
    return Endpoints(id=name, endpoints=[f"{LOCAL}:{port}" for port in ports])


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110  (counters and logs have no event to await)
            await trio.sleep(0.01)


@asynccontextmanager
async def running(**config: Any) -> AsyncIterator[UserspaceProxier]:
    proxier = UserspaceProxier(ProxyUserspaceConfig(**config))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        yield proxier
        nursery.cancel_scope.cancel()


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def start_server(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=LOCAL))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def named_echo(name: str) -> Handler:
    """Sends ``name\\n``, then echoes until end of stream."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(name.encode() + b"\n")
            async for data in stream:
                await stream.send_all(data)

    return handle


async def backends(nursery: trio.Nursery, *names: str) -> list[int]:
    return [await start_server(nursery, named_echo(name)) for name in names]


async def read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


async def name_via(port: int, host: str = LOCAL, source: str | None = None) -> str:
    """Connect through the proxy, return the backend's name line, close."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port, local_address=source)
        async with stream:
            return (await read_line(stream)).decode().strip()


async def read_all(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    async for chunk in stream:
        data += chunk
    return bytes(data)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def refused_port() -> int:
    """A port nothing listens on."""
    return free_port()


# -- TCP ----------------------------------------------------------------------------


async def test_round_robin_over_endpoints() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        ports = await backends(nursery, "a", "b", "c")
        await proxier.apply([service(port=port)], [endpoints("web", *ports)])
        names = [await name_via(port) for _ in range(6)]
        assert names == ["a", "b", "c", "a", "b", "c"]
        assert proxier.stats(KEY).accepted == 6
        nursery.cancel_scope.cancel()


async def test_refusing_endpoint_is_skipped() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        ports = await backends(nursery, "a", "b")
        await proxier.apply([service(port=port)], [endpoints("web", refused_port(), *ports)])
        names = [await name_via(port) for _ in range(4)]
        assert set(names) == {"a", "b"}
        assert proxier.stats(KEY).dial_failures >= 1
        assert proxier.stats(KEY).unreachable == 0
        nursery.cancel_scope.cancel()


async def test_no_endpoints_closes_connection_at_once() -> None:
    port = free_port()
    async with running(dial_timeouts=[0.05, 0.05]) as proxier:
        await proxier.apply([service(port=port)], [])
        with trio.fail_after(1):
            stream = await trio.open_tcp_stream(LOCAL, port)
            assert await read_all(stream) == b""
        assert proxier.stats(KEY).no_endpoints == 1
        # Endpoints that all refuse: every attempt fails, then the client is closed.
        await proxier.apply([service(port=port)], [endpoints("web", refused_port())])
        with trio.fail_after(2):
            stream = await trio.open_tcp_stream(LOCAL, port)
            assert await read_all(stream) == b""
        assert proxier.stats(KEY).unreachable == 1
        assert proxier.stats(KEY).dial_failures == 2


async def test_endpoint_change_keeps_open_connections() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        a, b = await backends(nursery, "a", "b")
        await proxier.apply([service(port=port)], [endpoints("web", a)])
        stream = await trio.open_tcp_stream(LOCAL, port)
        assert await read_line(stream) == b"a\n"
        await proxier.apply([service(port=port)], [endpoints("web", b)])
        assert await name_via(port) == "b"  # new connections go to the new endpoint
        await stream.send_all(b"still here\n")
        assert await read_line(stream) == b"still here\n"  # the old one is untouched
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_removed_service_closes_listener_open_connection_finishes() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        (a,) = await backends(nursery, "a")
        await proxier.apply([service(port=port)], [endpoints("web", a)])
        stream = await trio.open_tcp_stream(LOCAL, port)
        assert await read_line(stream) == b"a\n"
        await proxier.apply([], [])
        assert proxier.addresses(KEY) == []
        with pytest.raises(OSError):
            await trio.open_tcp_stream(LOCAL, port)
        await stream.send_all(b"bye\n")
        assert await read_line(stream) == b"bye\n"
        await stream.send_eof()
        assert await read_all(stream) == b""
        await stream.aclose()
        await wait_until(lambda: proxier.stats(KEY).active == 0)
        nursery.cancel_scope.cancel()


async def test_changed_service_reopens_only_its_listener() -> None:
    port_a, port_a2, port_b = free_port(), free_port(), free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        a, b = await backends(nursery, "a", "b")
        eps = [endpoints("a", a), endpoints("b", b)]
        await proxier.apply([service("a", port_a), service("b", port_b)], eps)
        open_b = await trio.open_tcp_stream(LOCAL, port_b)
        assert await read_line(open_b) == b"b\n"
        with capture_logs() as logs:
            await proxier.apply([service("a", port_a2), service("b", port_b)], eps)
        closed = [entry["service"] for entry in logs if entry["event"] == "listeners closed"]
        assert closed == ["default/a"]
        assert await name_via(port_a2) == "a"
        with pytest.raises(OSError):
            await trio.open_tcp_stream(LOCAL, port_a)
        await open_b.send_all(b"x\n")
        assert await read_line(open_b) == b"x\n"
        assert await name_via(port_b) == "b"
        await open_b.aclose()
        nursery.cancel_scope.cancel()


async def test_half_close_from_client() -> None:
    """The client ends its side first; the reply still comes back, then end of stream."""
    port = free_port()

    async def count_then_reply(stream: trio.SocketStream) -> None:
        async with stream:
            data = await read_all(stream)
            await stream.send_all(f"got {len(data)}\n".encode())

    async with trio.open_nursery() as nursery, running() as proxier:
        backend = await start_server(nursery, count_then_reply)
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(LOCAL, port)
            await stream.send_all(b"x" * 100_000)
            await stream.send_eof()
            assert await read_all(stream) == b"got 100000\n"
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_half_close_from_backend() -> None:
    """The backend ends its side first; the client still sends, and it arrives."""
    port = free_port()
    received: list[bytes] = []
    done = trio.Event()

    async def greet_then_listen(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hello\n")
            await stream.send_eof()
            received.append(await read_all(stream))
            done.set()

    async with trio.open_nursery() as nursery, running() as proxier:
        backend = await start_server(nursery, greet_then_listen)
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(LOCAL, port)
            assert await read_all(stream) == b"hello\n"
            await stream.send_all(b"after your eof")
            await stream.send_eof()
            await done.wait()
            await stream.aclose()
        assert received == [b"after your eof"]
        nursery.cancel_scope.cancel()


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target < wanted:
            pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def test_thousand_concurrent_connections() -> None:
    count = 1000
    raise_fd_limit(count * 4 + 500)  # client, proxy x2 and backend socket per connection
    port = free_port()
    all_open = trio.Event()
    opened = 0
    fds = open_fds()

    async def client(index: int) -> None:
        nonlocal opened
        stream = await trio.open_tcp_stream(LOCAL, port)
        async with stream:
            assert await read_line(stream) in (b"a\n", b"b\n")
            opened += 1
            if opened == count:
                all_open.set()
            await all_open.wait()
            message = f"message {index}\n".encode()
            await stream.send_all(message)
            assert await read_line(stream) == message

    async with trio.open_nursery() as nursery, running() as proxier:
        ports = await backends(nursery, "a", "b")
        await proxier.apply([service(port=port)], [endpoints("web", *ports)])
        with trio.fail_after(20):
            async with trio.open_nursery() as clients:
                for index in range(count):
                    clients.start_soon(client, index)
                await all_open.wait()
                assert proxier.stats(KEY).active == count
        await wait_until(lambda: proxier.stats(KEY).active == 0)
        assert proxier.stats(KEY).accepted == count
        nursery.cancel_scope.cancel()
    # Every socket closed: a leak shows as more descriptors (other parts of the process,
    # such as a log handler or a finished thread, may close one of theirs meanwhile).
    assert open_fds() <= fds


async def echo_transfer(port: int, size: int) -> None:
    """Send ``size`` random-ish bytes through an echo backend and compare digests."""
    block = hashlib.shake_256(b"kubecore").digest(1 << 20)
    sent, got = hashlib.sha256(), hashlib.sha256()
    stream = await trio.open_tcp_stream(LOCAL, port)
    async with stream:
        assert await read_line(stream) == b"echo\n"

        async def sender() -> None:
            for offset in range(0, size, len(block)):
                chunk = block[offset % 7 :] + block[: offset % 7]  # not one repeating block
                sent.update(chunk)
                await stream.send_all(chunk)
            await stream.send_eof()

        received = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            async for data in stream:
                got.update(data)
                received += len(data)
    assert received == size
    assert got.hexdigest() == sent.hexdigest()


@pytest.mark.parametrize(
    ("config", "spliced"),
    [
        ({}, True),
        ({"splice": False}, False),
        ({"pipe_memory": 0, "splice_after": 0}, True),  # default-size (64 KiB) pipes
        ({"pipe_size": 4096}, False),  # pipes too small to beat copying: copy
    ],
    ids=["splice", "copy", "default-size-pipes", "small-pipes-copy"],
)
async def test_large_transfer_is_exact(config: dict[str, Any], spliced: bool) -> None:
    port = free_port()
    fds = open_fds()
    async with trio.open_nursery() as nursery, running(**config) as proxier:
        (backend,) = await backends(nursery, "echo")
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        with trio.fail_after(30):
            await echo_transfer(port, 64 << 20)
        await wait_until(lambda: proxier.stats(KEY).active == 0)
        pump = proxier.tcp_options.pump
        assert pump.copied + pump.spliced == 2 * (64 << 20) + len(b"echo\n")
        assert (pump.spliced > 60 << 20) is spliced
        if proxier.pipes is not None:
            assert proxier.pipes.resized_bytes <= proxier.config.pipe_memory
        nursery.cancel_scope.cancel()
    assert open_fds() <= fds  # every socket and pipe closed (see above)


async def test_busy_connection_does_not_starve_others() -> None:
    """While one connection moves 64 MiB each way, short exchanges stay prompt."""
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        (backend,) = await backends(nursery, "echo")
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        slowest, exchanges = 0.0, 0
        done = trio.Event()

        async def transfer() -> None:
            await echo_transfer(port, 64 << 20)
            done.set()

        async with trio.open_nursery() as work:
            work.start_soon(transfer)
            assert proxier.pipes is not None
            await wait_until(lambda: proxier.pipes is not None and proxier.pipes.resized_bytes > 0)
            while not done.is_set():  # exchanges while the bulk transfer is splicing
                started = trio.current_time()
                assert await name_via(port) == "echo"
                slowest = max(slowest, trio.current_time() - started)
                exchanges += 1
        assert exchanges >= 5
        assert slowest < 0.5
        nursery.cancel_scope.cancel()


async def test_client_reset_ends_the_connection() -> None:
    port = free_port()
    ended = trio.Event()

    async def wait_for_end(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hi\n")
            with suppress(trio.BrokenResourceError):
                await read_all(stream)
            ended.set()

    async with trio.open_nursery() as nursery, running() as proxier:
        backend = await start_server(nursery, wait_for_end)
        await proxier.apply([service(port=port)], [endpoints("web", backend)])
        with trio.fail_after(5):
            client = trio.socket.socket()
            await client.connect((LOCAL, port))
            assert await client.recv(16) == b"hi\n"
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.close()  # linger 0: a reset, not a FIN
            await ended.wait()
            await wait_until(lambda: proxier.stats(KEY).active == 0)
        nursery.cancel_scope.cancel()


async def test_portal_ips_let_services_share_a_port() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running() as proxier:
        a, b = await backends(nursery, "a", "b")
        services = [service("a", port), service("b", port, portal_ip="127.77.3.4")]
        eps = [endpoints("a", a), endpoints("b", b)]
        with capture_logs() as logs:
            await proxier.apply(services, eps)
        portal_a = proxier.portal_ip(("default", "a"))
        assert portal_a is not None and portal_a.startswith("127.77.")
        assert proxier.portal_ip(("default", "b")) == "127.77.3.4"
        assert await name_via(port, portal_a) == "a"
        assert await name_via(port, "127.77.3.4") == "b"
        assert await name_via(port, LOCAL) == "a"  # the first service holds bind_address
        conflicts = [entry for entry in logs if entry["event"] == "cannot listen"]
        assert len(conflicts) == 1
        assert conflicts[0]["service"] == "default/b"
        assert "port conflict" in conflicts[0]["reason"]
        assert "default/a" in conflicts[0]["reason"]
        # The portal allocation is stable, and b takes the bind address once a is gone.
        await proxier.apply(services, eps)
        assert proxier.portal_ip(("default", "a")) == portal_a
        await proxier.apply(services[1:], eps)
        assert await name_via(port, LOCAL) == "b"
        assert sorted(proxier.addresses(("default", "b"))) == [
            (LOCAL, port), ("127.77.3.4", port)]
        nursery.cancel_scope.cancel()


async def test_session_affinity_by_client_ip() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery, running(session_affinity=True) as proxier:
        ports = await backends(nursery, "a", "b", "c")
        await proxier.apply([service(port=port)], [endpoints("web", *ports)])
        first = {await name_via(port, source="127.0.0.2") for _ in range(4)}
        second = {await name_via(port, source="127.0.0.3") for _ in range(4)}
        assert len(first) == 1 and len(second) == 1
        assert first != second
        # A changed endpoint list resets affinities.
        await proxier.apply([service(port=port)], [endpoints("web", *reversed(ports))])
        assert await name_via(port, source="127.0.0.2") == "c"
        nursery.cancel_scope.cancel()


# -- UDP ----------------------------------------------------------------------------


async def udp_backend(nursery: trio.Nursery, name: str) -> int:
    """Replies ``name:<datagram>`` to every datagram."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((LOCAL, 0))

    async def serve() -> None:
        with sock:
            while True:
                data, peer = await sock.recvfrom(65536)
                await sock.sendto(name.encode() + b":" + data, peer)

    nursery.start_soon(serve)
    port: int = sock.getsockname()[1]
    return port


async def udp_exchange(client: trio.socket.SocketType, port: int, data: bytes) -> bytes:
    with trio.fail_after(2):
        await client.sendto(data, (LOCAL, port))
        reply: bytes = await client.recv(65536)
        return reply


def udp_client() -> trio.socket.SocketType:
    return trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


async def test_udp_sessions_round_robin_and_idle_timeout() -> None:
    port = free_port(socket.SOCK_DGRAM)
    async with trio.open_nursery() as nursery, running(udp_idle_timeout=0.3) as proxier:
        a = await udp_backend(nursery, "a")
        b = await udp_backend(nursery, "b")
        await proxier.apply([service(port=port, protocol="UDP")], [endpoints("web", a, b)])
        with udp_client() as one, udp_client() as two:
            await one.bind((LOCAL, 0))
            await two.bind((LOCAL, 0))
            assert await udp_exchange(one, port, b"1") == b"a:1"
            assert await udp_exchange(two, port, b"2") == b"b:2"
            assert await udp_exchange(one, port, b"3") == b"a:3"  # one socket per client
            big = os.urandom(60_000)
            assert await udp_exchange(two, port, big) == b"b:" + big
            assert proxier.stats(KEY).sessions == 2
            await wait_until(lambda: proxier.stats(KEY).sessions == 0, seconds=3)
            # After the idle timeout the client's next datagram opens a new session.
            assert await udp_exchange(one, port, b"4") == b"a:4"
            assert proxier.stats(KEY).datagrams == 5
        nursery.cancel_scope.cancel()


async def test_udp_without_endpoints_drops_and_counts() -> None:
    port = free_port(socket.SOCK_DGRAM)
    async with trio.open_nursery() as nursery, running() as proxier:
        await proxier.apply([service(port=port, protocol="UDP")], [])
        with udp_client() as client:
            await client.sendto(b"lost", (LOCAL, port))
            await wait_until(lambda: proxier.stats(KEY).dropped == 1)
            assert proxier.stats(KEY).no_endpoints == 1
            # Endpoints appear: the next datagram is forwarded.
            a = await udp_backend(nursery, "a")
            await proxier.apply([service(port=port, protocol="UDP")], [endpoints("web", a)])
            assert await udp_exchange(client, port, b"found") == b"a:found"
        nursery.cancel_scope.cancel()


async def test_udp_session_ends_when_its_endpoint_leaves() -> None:
    port = free_port(socket.SOCK_DGRAM)
    async with trio.open_nursery() as nursery, running() as proxier:
        a = await udp_backend(nursery, "a")
        b = await udp_backend(nursery, "b")
        await proxier.apply([service(port=port, protocol="UDP")], [endpoints("web", a)])
        with udp_client() as client:
            await client.bind((LOCAL, 0))
            assert await udp_exchange(client, port, b"1") == b"a:1"
            await proxier.apply([service(port=port, protocol="UDP")], [endpoints("web", b)])
            await wait_until(lambda: proxier.stats(KEY).sessions == 0)
            assert await udp_exchange(client, port, b"2") == b"b:2"
        nursery.cancel_scope.cancel()


# -- the services file ---------------------------------------------------------------


def services_document(port: int, *backend_ports: int, protocol: str = "TCP") -> str:
    return json.dumps({
        "services": [{"kind": "Service", "id": "web", "port": port, "protocol": protocol,
                      "selector": {"app": "web"}}],
        "endpoints": [{"kind": "Endpoints", "id": "web",
                       "endpoints": [f"{LOCAL}:{p}" for p in backend_ports]}],
    })


async def test_services_file_is_followed(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "services.json"
    async with trio.open_nursery() as nursery, running() as proxier:
        a, b = await backends(nursery, "a", "b")
        path.write_text(services_document(port, a))
        await nursery.start(lambda task_status: follow_services_file(
            path, proxier, poll=0.05, task_status=task_status))
        assert await name_via(port) == "a"
        with capture_logs() as logs:
            path.write_text('{"services": [{"id": "web", "port": "eighty"}]}')
            await wait_until(lambda: any(e["event"] == "services file invalid" for e in logs))
        error = next(e for e in logs if e["event"] == "services file invalid")["error"]
        assert "services[0]: port: expected an integer, got string" in error
        assert await name_via(port) == "a"  # the last good configuration stays
        path.write_text(f"services:\n- {{id: web, port: {port}}}\n"  # YAML works too
                        f"endpoints:\n- {{id: web, endpoints: ['{LOCAL}:{b}']}}\n")
        await wait_until(lambda: proxier.balancer.endpoints(KEY) == [(LOCAL, b)])
        assert await name_via(port) == "b"
        nursery.cancel_scope.cancel()


def test_kubecore_run_serves_a_services_file(tmp_path: Path) -> None:
    """``kubecore run --role node --plugins proxy_userspace`` proxies a TCP connection."""
    with closing(socket.create_server((LOCAL, 0))) as backend:
        backend_port = backend.getsockname()[1]

        def serve_one() -> None:
            conn, _ = backend.accept()
            with conn:
                conn.sendall(b"hello from the backend\n")
                while data := conn.recv(65536):
                    conn.sendall(data)

        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        port = free_port()
        path = tmp_path / "services.json"
        path.write_text(services_document(port, backend_port))
        args = ["run", "--role", "node", "--plugins", "proxy_userspace",
                "--data-dir", str(tmp_path / "data"), "--log-format", "json",
                "--set", f"proxy_userspace.services_file={path}"]
        with KubecoreProcess(args) as proc:
            proc.wait_event("service listening", address=f"{LOCAL}:{port}")
            proc.wait_event("kubecore is up")
            with socket.create_connection((LOCAL, port), timeout=5) as client:
                reader = client.makefile("rb")
                assert reader.readline() == b"hello from the backend\n"
                client.sendall(b"ping\n")
                assert reader.readline() == b"ping\n"
            assert proc.stop() == 0
        thread.join(timeout=5)
        assert "Traceback" not in proc.output
