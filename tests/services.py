"""Real services for tests: a private etcd (single member or cluster) and Docker.

Every fixture that needs a service goes through `service_unavailable`: a missing
service skips the test locally and fails it under CI=true, so CI can never turn
green by skipping the integration tests.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest

if TYPE_CHECKING:
    import docker

LOOPBACK = "127.0.0.1"
ETCD_START_TIMEOUT = 30.0
DOCKER_PING_TIMEOUT = 10.0
BUSYBOX_TAG = "kubecore/busybox:test"
# Containers and images made by tests carry TEST_LABEL=1 plus the owning pytest pid,
# so a session removes its own leftovers and those of dead sessions, never those
# of a session still running beside it.
TEST_LABEL = "kubecore.test"
TEST_PID_LABEL = "kubecore.test.pid"
BASE_IMAGE_LABEL = "kubecore.test.recipe"
# Bump to rebuild the busybox image when the recipe below changes.
BUSYBOX_RECIPE = "1"
BUSYBOX_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing service, or fail it when running in CI."""
    if is_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Services must not outlive a pytest that was killed without teardown.
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http() -> httpx.Client:
    # trust_env=False: a proxy from the environment must never see loopback traffic.
    return httpx.Client(trust_env=False, timeout=5.0)


# ---------------------------------------------------------------- etcd


def etcd_binary() -> str:
    """Path of the etcd server binary; KUBECORE_TEST_ETCD overrides the PATH lookup."""
    override = os.environ.get("KUBECORE_TEST_ETCD")
    found = override if override else shutil.which("etcd")
    if not found or not os.access(found, os.X_OK):
        hint = f" (KUBECORE_TEST_ETCD={override} is not executable)" if override else ""
        service_unavailable(f"etcd not installed: apt-get install etcd-server{hint}")
    return found


ETCD_DIR_PREFIX = "kubecore-etcd-"


def _scratch_base() -> str:
    # etcd fsyncs every write; tmpfs makes that about twice as fast.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _sweep_dead_etcd_dirs(base: str) -> None:
    """Remove data dirs left by a killed test process (named after its pid); on tmpfs
    they would hold memory until reboot."""
    for d in Path(base).glob(f"{ETCD_DIR_PREFIX}*-*"):
        pid = d.name[len(ETCD_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    """N etcd members on loopback, each with its own data dir under `root`."""

    binary: str
    root: Path
    members: list[EtcdMember] = field(default_factory=list)
    token: str = field(default_factory=lambda: f"kubecore-test-{uuid.uuid4().hex[:12]}")

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def _argv(self, m: EtcdMember) -> list[str]:
        return [
            self.binary,
            f"--name={m.name}",
            f"--data-dir={m.data_dir}",
            f"--listen-client-urls={m.client_url}",
            f"--advertise-client-urls={m.client_url}",
            f"--listen-peer-urls={m.peer_url}",
            f"--initial-advertise-peer-urls={m.peer_url}",
            f"--initial-cluster={self._initial_cluster()}",
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
        ]

    def start(self, index: int) -> None:
        """Start (or restart, keeping its data dir) member `index`; does not wait."""
        m = self.members[index]
        if m.running:
            return
        # ETCD_* variables would silently override or clash with the flags above.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(
                self._argv(m),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )

    def stop(self, index: int, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop member `index`: SIGTERM (clean) or SIGKILL (crash); its data is kept."""
        m = self.members[index]
        if m.proc is None:
            return
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                m.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=timeout)
        m.proc = None

    def restart(self, index: int, *, timeout: float = ETCD_START_TIMEOUT) -> None:
        self.stop(index)
        self.start(index)
        self.wait_healthy([index], timeout=timeout)

    def wait_healthy(
        self, indices: list[int] | None = None, *, timeout: float = ETCD_START_TIMEOUT
    ) -> None:
        """Wait until the chosen members (default: all) report healthy via /health."""
        chosen = list(range(len(self.members))) if indices is None else indices
        deadline = time.monotonic() + timeout
        pending = set(chosen)
        last_error = ""
        with _http() as client:
            while pending:
                for i in sorted(pending):
                    m = self.members[i]
                    if m.proc is None or m.proc.poll() is not None:
                        code = None if m.proc is None else m.proc.returncode
                        raise EtcdStartError(
                            f"etcd member {m.name} exited (status {code}) before it was "
                            f"healthy; log {m.log_path}:\n{_log_tail(m.log_path)}"
                        )
                    try:
                        r = client.get(f"{m.client_url}/health", timeout=1.0)
                        if r.status_code == 200 and r.json().get("health") == "true":
                            pending.discard(i)
                        else:
                            last_error = f"{m.name}: HTTP {r.status_code} {r.text[:200]}"
                    except (httpx.HTTPError, ValueError) as e:
                        last_error = f"{m.name}: {e!r}"
                if not pending:
                    break
                if time.monotonic() > deadline:
                    names = ", ".join(self.members[i].name for i in sorted(pending))
                    tails = "\n".join(
                        f"--- {self.members[i].log_path}\n{_log_tail(self.members[i].log_path)}"
                        for i in sorted(pending)
                    )
                    raise EtcdStartError(
                        f"etcd members {names} not healthy after {timeout:.0f}s "
                        f"(last: {last_error})\n{tails}"
                    )
                time.sleep(0.05)

    def close(self) -> None:
        for i in range(len(self.members)):
            self.stop(i, kill=True)
        shutil.rmtree(self.root, ignore_errors=True)


class EtcdStartError(RuntimeError):
    pass


def start_etcd_cluster(
    n: int = 3, *, binary: str | None = None, attempts: int = 3, timeout: float = ETCD_START_TIMEOUT
) -> EtcdCluster:
    """Start an n-member etcd cluster on loopback and wait until every member is healthy.

    Ports are picked free and then bound by etcd, so another process can win the race:
    such a start is retried on fresh ports.
    """
    exe = binary or etcd_binary()
    base = _scratch_base()
    _sweep_dead_etcd_dirs(base)
    last: EtcdStartError | None = None
    for _ in range(attempts):
        root = Path(tempfile.mkdtemp(prefix=f"{ETCD_DIR_PREFIX}{os.getpid()}-", dir=base))
        cluster = EtcdCluster(binary=exe, root=root)
        ports: set[int] = set()
        while len(ports) < 2 * n:
            ports.add(free_port())
        it = iter(sorted(ports))
        for i in range(n):
            cluster.members.append(
                EtcdMember(
                    name=f"m{i}",
                    client_port=next(it),
                    peer_port=next(it),
                    data_dir=root / f"m{i}.etcd",
                    log_path=root / f"m{i}.log",
                )
            )
        try:
            for i in range(n):
                cluster.start(i)
            cluster.wait_healthy(timeout=timeout)
            return cluster
        except EtcdStartError as e:
            logs = "".join(_log_tail(m.log_path) for m in cluster.members)
            cluster.close()
            last = e
            if "address already in use" not in logs:
                raise
    assert last is not None
    raise last


def etcd_key(key: bytes | str) -> str:
    return base64.b64encode(key.encode() if isinstance(key, str) else key).decode()


def etcd_put(endpoint: str, key: bytes | str, value: bytes | str, *, timeout: float = 5.0) -> int:
    """Put through the v3 JSON gateway; returns the new store revision."""
    with _http() as client:
        r = client.post(
            f"http://{endpoint}/v3/kv/put",
            json={"key": etcd_key(key), "value": etcd_key(value)},
            timeout=timeout,
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        if "error" in body:
            raise RuntimeError(f"etcd put failed: {body}")
        return int(body["header"]["revision"])


def etcd_get(endpoint: str, key: bytes | str, *, timeout: float = 5.0) -> bytes | None:
    """Get one key through the v3 JSON gateway; None if absent."""
    with _http() as client:
        r = client.post(
            f"http://{endpoint}/v3/kv/range", json={"key": etcd_key(key)}, timeout=timeout
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        if "error" in body:
            raise RuntimeError(f"etcd range failed: {body}")
        kvs = body.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    """A private single-member etcd for the whole session, as "127.0.0.1:<port>"."""
    cluster = start_etcd_cluster(1)
    try:
        yield cluster.endpoints[0]
    finally:
        cluster.close()


@pytest.fixture
def etcd_cluster() -> Iterator[Callable[..., EtcdCluster]]:
    """Factory: `etcd_cluster(3)` starts a healthy 3-member cluster on loopback.

    Use `.endpoints`, `.stop(i, kill=...)`, `.start(i)`, `.restart(i)` and
    `.wait_healthy()`; every cluster is torn down at the end of the test.
    """
    exe = etcd_binary()
    made: list[EtcdCluster] = []

    def make(n: int = 3, *, timeout: float = ETCD_START_TIMEOUT) -> EtcdCluster:
        cluster = start_etcd_cluster(n, binary=exe, timeout=timeout)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for c in made:
            c.close()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test ("/kubecore-test/<test>-<random>/")."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"/kubecore-test/{name}-{uuid.uuid4().hex[:8]}/"


# ---------------------------------------------------------------- Docker


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover(labels: dict[str, str] | None) -> bool:
    """Whether a labelled object belongs to this session or to one that is gone."""
    if not labels or labels.get(TEST_LABEL) != "1":
        return False
    try:
        owner = int(labels.get(TEST_PID_LABEL, "0"))
    except ValueError:
        return True
    return owner == os.getpid() or owner <= 0 or not _pid_alive(owner)


def list_containers(client: docker.DockerClient, *, all: bool = False,
                    filters: dict[str, Any] | None = None) -> list[Any]:
    """``client.containers.list``, listed again when a container vanished between the
    listing and its inspection (a 404 that only means the listing was stale)."""
    from docker.errors import NotFound

    for _ in range(20):
        try:
            found: list[Any] = client.containers.list(all=all, filters=filters or {})
        except NotFound:
            continue
        return found
    raise AssertionError("containers kept vanishing while being listed")


def remove_test_objects(client: docker.DockerClient) -> None:
    """Remove containers and images labelled kubecore.test=1 of this or dead sessions."""
    from docker.errors import APIError, NotFound

    for c in list_containers(client, all=True, filters={"label": f"{TEST_LABEL}=1"}):
        if _leftover(c.labels):
            with contextlib.suppress(NotFound):
                c.remove(force=True, v=True)
    for img in client.images.list(filters={"label": f"{TEST_LABEL}=1"}):
        if _leftover(img.labels):
            # APIError: still used by a container of a live session.
            with contextlib.suppress(NotFound, APIError):
                client.images.remove(img.id, force=True)


@pytest.fixture(scope="session")
def docker_labels() -> dict[str, str]:
    """Labels to put on every container or image a test creates (cleanup relies on them)."""
    return {TEST_LABEL: "1", TEST_PID_LABEL: str(os.getpid())}


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A DockerClient for the local daemon; test-labelled leftovers removed at both ends."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        service_unavailable("docker SDK not installed: pip install docker")
    try:
        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT)
        client.ping()
    except DockerException as e:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if shutil.which("dockerd") is None and "DOCKER_HOST" not in os.environ:
            service_unavailable("Docker not installed: apt-get install docker.io")
        service_unavailable(
            f"Docker daemon not reachable at {where}: start dockerd "
            f"(bash .ci/run starts it) [{type(e).__name__}: {str(e)[:200]}]"
        )
    # Ping uses a short timeout; image imports and container stops need longer.
    client.api.timeout = 120
    remove_test_objects(client)
    try:
        yield client
    finally:
        remove_test_objects(client)
        client.close()


def busybox_binary() -> Path:
    """Debian's busybox-static binary (the dynamic `busybox` package would not run
    in an image with no libc)."""
    path = Path(os.environ.get("KUBECORE_TEST_BUSYBOX", "/bin/busybox"))
    if not path.is_file():
        service_unavailable("busybox-static not installed: apt-get install busybox-static")
    if not _is_static_elf(path):
        service_unavailable(
            f"{path} is dynamically linked: apt-get install busybox-static (not busybox)"
        )
    return path


def _is_static_elf(path: Path) -> bool:
    """True for an ELF64 little-endian executable without a PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    PT_INTERP = 3
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") != PT_INTERP
        for i in range(phnum)
    )


def busybox_rootfs_tar(busybox: Path) -> bytes:
    """A minimal rootfs: busybox with a symlink per applet, passwd/group, /tmp, /www."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, check=True, text=True, timeout=30
    ).stdout.split()
    buf = io.BytesIO()
    now = int(time.time())

    def add(name: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, now
        info.linkname = target
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "var", "www"):
            add(d, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for a in sorted(set(applets) - {"busybox"}):
            add(f"bin/{a}", tarfile.SYMTYPE, 0o777, target="busybox")
        # Scripts with "#!/usr/bin/env sh" must work too.
        add("usr/bin/env", tarfile.SYMTYPE, 0o777, target="/bin/busybox")
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        add("etc/passwd", tarfile.REGTYPE, 0o644, passwd)
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnobody:x:65534:\n")
        add("www/index.html", tarfile.REGTYPE, 0o644, b"kubecore busybox test image\n")
    return buf.getvalue()


def ensure_busybox_image(client: docker.DockerClient, tag: str = BUSYBOX_TAG) -> str:
    """Build `tag` by `docker import` unless an image of the same recipe exists.

    The recipe hash covers the busybox binary, so a busybox upgrade rebuilds it.
    Never pulls: there is no registry.
    """
    from docker.errors import DockerException, ImageNotFound

    busybox = busybox_binary()
    recipe = hashlib.sha256(BUSYBOX_RECIPE.encode() + busybox.read_bytes()).hexdigest()[:16]

    def current() -> bool:
        try:
            img = client.images.get(tag)
        except ImageNotFound:
            return False
        return (img.labels or {}).get(BASE_IMAGE_LABEL) == recipe

    if current():
        return tag
    # Serialise builds between pytest processes on one machine.
    lock_path = Path(tempfile.gettempdir()) / "kubecore-busybox-image.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            try:
                stale: str | None = client.images.get(tag).id
            except ImageNotFound:
                stale = None
            repo, _, version = tag.rpartition(":")
            client.api.import_image(
                src=busybox_rootfs_tar(busybox),
                repository=repo,
                tag=version,
                changes=[
                    'CMD ["sh"]',
                    f"ENV PATH={BUSYBOX_PATH}",
                    "WORKDIR /",
                    f"LABEL {BASE_IMAGE_LABEL}={recipe}",
                ],
            )
            if not current():
                raise RuntimeError(f"docker import did not produce {tag}")
            if stale is not None:
                with contextlib.suppress(DockerException):
                    client.images.remove(stale)  # fails while a container uses it
    return tag


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    """The local image tag "kubecore/busybox:test" (busybox-static, CMD sh), built once."""
    return ensure_busybox_image(docker_client)
