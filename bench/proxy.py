"""Proxy benchmark: kubecore's proxy_userspace beside a direct connection and HAProxy.

Three variants carry the same traffic to one backend (``bench.backend``, its own
process) on loopback:

- ``direct``: the client connects to the backend itself (the physical limit);
- ``kubecore``: ``python -m kubecore run --role node --plugins proxy_userspace`` fed a
  services file, in its own process;
- ``haproxy``: HAProxy in tcp mode with ``option splice-request`` /
  ``option splice-response``, one thread and 1 MiB pipes like kubecore's proxy.

Measured, alternating the variants round by round (medians over rounds):

- bulk throughput: 1 GiB (128 MiB with ``--quick``) on one connection, sent with
  ``os.sendfile`` from a cached file to a sink reading into a 4 MiB buffer; one
  transfer per variant is checked byte for byte (SHA-256 at the sink) before timing;
- sequential connection rate and latency: connect, 64-byte request, 64-byte reply,
  close; the latency of one connection is connect + request + reply;
- the proxy processes' CPU time (all threads, from ``/proc``) per GiB of the bulk
  rounds and per connection of the connection rounds: what a byte and a connection
  cost the proxy, which other load on the machine disturbs less than rates and
  latencies (on a loaded machine a proxy's kernel time per GiB still swings by 1.5x
  from round to round: softirq work lands on whichever process runs).

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import Measure
from bench.backend import REQUEST_SIZE

LOCAL = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
VARIANTS = ("direct", "kubecore", "haproxy")
MB = 1_000_000


@dataclass(frozen=True)
class Plan:
    bulk_bytes: int
    bulk_rounds: int
    connections: int  # per variant and round, run in batches that alternate variants
    connection_rounds: int
    batch: int = 100


FULL = Plan(bulk_bytes=1 << 30, bulk_rounds=7, connections=3000, connection_rounds=5)
QUICK = Plan(bulk_bytes=128 << 20, bulk_rounds=3, connections=600, connection_rounds=3)


@dataclass
class Samples:
    """Per variant: MB/s of each bulk round; conn/s, p50 and p99 (ms) of each
    connection round."""

    throughput: dict[str, list[float]] = field(default_factory=dict)
    rate: dict[str, list[float]] = field(default_factory=dict)
    p50: dict[str, list[float]] = field(default_factory=dict)
    p99: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # us per connection
    bulk_cpu: dict[str, list[float]] = field(default_factory=dict)  # ms per GiB

    def add(self, table: dict[str, list[float]], variant: str, value: float) -> None:
        table.setdefault(variant, []).append(value)


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCAL, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Until ``port`` accepts a connection (closed at once, without a byte)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex((LOCAL, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within 30 s")


@contextlib.contextmanager
def process(args: list[str], log: Path, what: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def backend() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.backend"], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kubecore_config(workdir: Path, port: int, backend_port: int) -> list[str]:
    services = workdir / "services.json"
    services.write_text(json.dumps({
        "services": [{"id": "bench", "port": port, "protocol": "TCP"}],
        "endpoints": [{"id": "bench", "endpoints": [f"{LOCAL}:{backend_port}"]}],
    }))
    return [sys.executable, "-m", "kubecore", "run", "--role", "node",
            "--plugins", "proxy_userspace", "--data-dir", str(workdir / "data"),
            "--log-format", "json", "--set", f"proxy_userspace.services_file={services}"]


def haproxy_config(workdir: Path, port: int, backend_port: int) -> list[str]:
    config = workdir / "haproxy.cfg"
    config.write_text(f"""\
global
    nbthread 1
    maxconn 4096
    tune.pipesize 1048576

defaults
    mode tcp
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 60s
    timeout server 60s

listen bench
    bind {LOCAL}:{port}
    server backend {LOCAL}:{backend_port}
""")
    return [HAPROXY, "-f", str(config), "-db"]


def machine_details() -> dict[str, object]:
    """What else the numbers depend on (merged into the result's ``machine``)."""
    try:
        pipe_max = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        pipe_max = None
    return {
        "haproxy": haproxy_version(),
        "haproxy_config": "mode tcp, option splice-request/splice-response, nbthread 1,"
                          " tune.pipesize 1048576",
        "kubecore_proxy": "proxy_userspace defaults (TCP in its own epoll thread, splice after"
                          " 64 KiB, 1 MiB pipes)",
        "pipe_max_size": pipe_max,
    }


def haproxy_version() -> str:
    try:
        out = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


# -- clients --------------------------------------------------------------------------


def make_payload(workdir: Path, size: int) -> tuple[Path, bytes]:
    """A file of ``size`` pseudo-random bytes (so a shifted or repeated block would be
    caught), and its SHA-256."""
    path = workdir / "payload.bin"
    block = hashlib.shake_256(b"kubecore bench").digest(1 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            chunk = block[offset // len(block) % 251 :] + block[: offset // len(block) % 251]
            chunk = chunk[: size - offset]
            digest.update(chunk)
            out.write(chunk)
    return path, digest.digest()


def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((LOCAL, port))
    return sock


def send_file(port: int, payload: Path, size: int, mode: bytes) -> tuple[float, bytes]:
    """Send ``mode`` + the payload; (seconds until the sink's reply, the reply)."""
    with payload.open("rb") as source:
        fd = source.fileno()
        started = time.perf_counter()
        with connect(port) as sock:
            sock.sendall(mode)
            offset = 0
            while offset < size:
                offset += os.sendfile(sock.fileno(), fd, offset, size - offset)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(64):
                reply += chunk
        return time.perf_counter() - started, reply


def bulk(port: int, payload: Path, size: int) -> float:
    """MB/s of one timed transfer."""
    seconds, reply = send_file(port, payload, size, b"B")
    if int.from_bytes(reply, "big") != size:
        raise RuntimeError(f"sink counted {int.from_bytes(reply, 'big')} bytes, sent {size}")
    return size / seconds / MB


def verify(port: int, payload: Path, size: int, digest: bytes) -> None:
    _, reply = send_file(port, payload, size, b"H")
    if reply != digest:
        raise RuntimeError(f"payload corrupted on port {port}: digest mismatch")


def connections(port: int, count: int) -> tuple[float, list[float]]:
    """(connections per second, each connection's latency in ms)."""
    request = b"R" + b"q" * (REQUEST_SIZE - 1)
    latencies: list[float] = []
    perf = time.perf_counter
    started = perf()
    for _ in range(count):
        t0 = perf()
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect((LOCAL, port))
        sock.sendall(request)
        got = 0
        while got < REQUEST_SIZE:
            chunk = sock.recv(REQUEST_SIZE - got)
            if not chunk:
                raise RuntimeError(f"connection closed after {got} reply bytes")
            got += len(chunk)
        latencies.append((perf() - t0) * 1000)
        sock.close()
    return count / (perf() - started), latencies


def cpu_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` has run so far, all its threads: the scheduler's
    nanosecond counts (``/proc/PID/task/*/schedstat``) where the kernel keeps them, else
    user + system time in clock ticks (``/proc/PID/stat``)."""
    total, read = 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended, or no such file
            total += int((task / "schedstat").read_text().split()[0])
            read += 1
    if read:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the run --------------------------------------------------------------------------


def rotations(rounds: int) -> Iterator[tuple[str, ...]]:
    """The variants in a different order each round, so drift hits all alike."""
    for index in range(rounds):
        shift = index % len(VARIANTS)
        yield VARIANTS[shift:] + VARIANTS[:shift]


def measure(plan: Plan, ports: dict[str, int], pids: dict[str, int], payload: Path,
            digest: bytes, say: Callable[[str], None]) -> Samples:
    """``pids``: the proxy processes (not ``direct``), whose CPU time is measured."""
    samples = Samples()
    for port in ports.values():
        verify(port, payload, plan.bulk_bytes, digest)
    say(f"checked: {plan.bulk_bytes >> 20} MiB through each variant, SHA-256 equal")
    for port in ports.values():  # warm-up: caches, pools, first-connection costs
        bulk(port, payload, min(plan.bulk_bytes, 64 << 20))
        connections(port, 100)
    for number, order in enumerate(rotations(plan.bulk_rounds), start=1):
        for variant in order:
            pid = pids.get(variant)
            before = cpu_seconds(pid) if pid is not None else 0.0
            samples.add(samples.throughput, variant, bulk(ports[variant], payload,
                                                          plan.bulk_bytes))
            if pid is not None:
                samples.add(samples.bulk_cpu, variant,
                            (cpu_seconds(pid) - before) * 1000 / (plan.bulk_bytes / (1 << 30)))
        # The ratio of one round's neighbours drifts less than a ratio of medians.
        paired = samples.throughput["kubecore"][-1] / samples.throughput["haproxy"][-1]
        say(f"bulk round {number}: " + ", ".join(
            f"{v} {samples.throughput[v][-1]:,.0f} MB/s" for v in VARIANTS)
            + f" (kubecore/haproxy {paired:.2f}); CPU per GiB: " + ", ".join(
                f"{v} {samples.bulk_cpu[v][-1]:.0f} ms" for v in pids))
    batches = max(1, plan.connections // plan.batch)
    for number in range(1, plan.connection_rounds + 1):
        # Small batches, alternating, so load from elsewhere on the machine hits all
        # variants alike.
        seconds = dict.fromkeys(VARIANTS, 0.0)
        used = dict.fromkeys(pids, 0.0)
        latencies: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for order in rotations(batches):
            for variant in order:
                pid = pids.get(variant)
                before = cpu_seconds(pid) if pid is not None else 0.0
                rate, batch_latencies = connections(ports[variant], plan.batch)
                if pid is not None:
                    used[variant] += cpu_seconds(pid) - before
                seconds[variant] += plan.batch / rate
                latencies[variant] += batch_latencies
        for variant in VARIANTS:
            samples.add(samples.rate, variant, batches * plan.batch / seconds[variant])
            samples.add(samples.p50, variant, percentile(latencies[variant], 0.50))
            samples.add(samples.p99, variant, percentile(latencies[variant], 0.99))
        for variant, cpu in used.items():
            samples.add(samples.cpu, variant, cpu / (batches * plan.batch) * 1e6)
        say(f"connection round {number}: " + ", ".join(
            f"{v} {samples.rate[v][-1]:,.0f}/s p50 {samples.p50[v][-1]:.3f} ms"
            for v in VARIANTS) + "; CPU per connection: " + ", ".join(
            f"{v} {samples.cpu[v][-1]:.0f} us" for v in pids))
    return samples


def summarize(samples: Samples) -> list[Measure]:
    def med(table: dict[str, list[float]], variant: str) -> float:
        return statistics.median(table[variant])

    direct_p50, direct_p99 = med(samples.p50, "direct"), med(samples.p99, "direct")
    return [
        Measure("throughput vs haproxy", "MB/s", med(samples.throughput, "kubecore"),
                med(samples.throughput, "haproxy"), "haproxy", target=1.0),
        Measure("throughput vs direct", "MB/s", med(samples.throughput, "kubecore"),
                med(samples.throughput, "direct"), "direct"),
        Measure("connections per second vs haproxy", "conn/s", med(samples.rate, "kubecore"),
                med(samples.rate, "haproxy"), "haproxy", target=0.8),
        Measure("connections per second vs direct", "conn/s", med(samples.rate, "kubecore"),
                med(samples.rate, "direct"), "direct"),
        Measure("added latency p50", "ms", med(samples.p50, "kubecore") - direct_p50,
                med(samples.p50, "haproxy") - direct_p50, "haproxy", target=0.3,
                goal="at_most"),
        Measure("added latency p99", "ms", med(samples.p99, "kubecore") - direct_p99,
                med(samples.p99, "haproxy") - direct_p99, "haproxy"),
        Measure("proxy CPU per connection", "us", med(samples.cpu, "kubecore"),
                med(samples.cpu, "haproxy"), "haproxy"),
        Measure("proxy CPU per GiB (bulk)", "ms", med(samples.bulk_cpu, "kubecore"),
                med(samples.bulk_cpu, "haproxy"), "haproxy"),
    ]


def run(quick: bool) -> list[Measure]:
    """Measure the three variants (see the module docstring); ``quick`` finishes within
    a minute."""
    plan = QUICK if quick else FULL

    def say(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    if not Path(HAPROXY).exists():
        raise SystemExit(f"HAProxy is needed as the baseline and is not installed ({HAPROXY})")
    say(f"proxy bench ({'quick' if quick else 'full'}): {haproxy_version()}")
    with tempfile.TemporaryDirectory(prefix="kubecore-bench-") as tmp:
        workdir = Path(tmp)
        payload, digest = make_payload(workdir, plan.bulk_bytes)
        with backend() as backend_port, contextlib.ExitStack() as stack:
            ports = {"direct": backend_port, "kubecore": free_port(), "haproxy": free_port()}
            pids: dict[str, int] = {}
            for name, command in (
                ("kubecore", kubecore_config(workdir, ports["kubecore"], backend_port)),
                ("haproxy", haproxy_config(workdir, ports["haproxy"], backend_port)),
            ):
                log = workdir / f"{name}.log"
                proc = stack.enter_context(process(command, log, name))
                wait_listening(ports[name], proc, name, log)
                pids[name] = proc.pid
            samples = measure(plan, ports, pids, payload, digest, say)
    return summarize(samples)
