"""The exec runtime: each container's command runs as a plain host process.

Layout under the runtime's root (one root per kubelet; a lock file enforces it)::

    <root>/.lock                                   held by the live runtime instance
    <root>/pods/<pod uid>/sandbox.json             the sandbox: pod names, port map, ready
    <root>/pods/<pod uid>/<container>/             default working directory and HOME
    <root>/pods/<pod uid>/<container>/<n>.json     state of instance n (0, 1, ...)
    <root>/pods/<pod uid>/<container>/<n>.log      its stdout and stderr

A container id is ``<pod uid>_<container name>_<n>``. The main process leads its own
session (and process group); the container's processes are that session. The state
file records the main process's pid with its start time (``/proc/<pid>/stat``) and the
boot id, so a later instance on the same root recognises the process after a kubelet
restart (pids are reused) and adopts it instead of starting it again.

Every running container has a watcher that waits for the main process to end (through
its pidfd), records the exit, and kills what is left of the session, as a container's
processes end with its init process. Watchers are trio system tasks, since a runtime
owns no nursery; ``aclose`` cancels them. Only the OS process that started a container
learns its exit code (a later instance in the same process takes over its handle); one
adopted from an earlier kubelet process is recorded as exited with
``ExitCodeUnknown``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from kubecore.errors import StartupError
from kubecore.log import get_logger
from kubecore.runtime import (
    ContainerError,
    ContainerInfo,
    ContainerState,
    ContainerStats,
    PortMapping,
    SandboxInfo,
)
from kubecore.runtime import (
    ContainerReason as Reason,
)
from kubecore_runtime_exec import procfs

if TYPE_CHECKING:
    from kubecore.api import BoundPod, Container

log = get_logger("kubecore.runtime_exec")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOOPBACK = "127.0.0.1"
STATE_VERSION = 1
#: How long to wait for a process to go after SIGKILL before giving up on it.
KILL_TIMEOUT = 10.0
#: ``exec_in_container`` keeps at most this much output (the rest is read and dropped).
EXEC_OUTPUT_LIMIT = 1 << 20

_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_STATE_FILE = re.compile(r"(\d+)\.json")

# Processes this Python process started and has not reaped, by (pid, start ticks). An
# instance made after another was closed in the same process (a restarted kubelet
# component, the tests) takes them over and still learns their exit codes.
_SPAWNED: dict[tuple[int, int], trio.Process] = {}


@dataclass
class _Record:
    """One container instance: the state file's content, kept in memory."""

    id: str
    pod_full_name: str
    pod_uid: str
    name: str
    index: int
    image: str
    spec_hash: str
    command: list[str]
    env: dict[str, str]
    working_dir: str
    created_at: float
    state: str = ContainerState.WAITING.value
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    pid: int | None = None
    pid_start_ticks: int | None = None
    boot_id: str = ""

    @property
    def running(self) -> bool:
        return self.state == ContainerState.RUNNING.value

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Record:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state file version {data.get('version')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def exited(self, *, exit_code: int | None, reason: str, message: str) -> None:
        self.state = ContainerState.EXITED.value
        self.finished_at = time.time()
        self.exit_code = exit_code
        self.reason = reason
        self.message = message

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            pod_full_name=self.pod_full_name,
            pod_uid=self.pod_uid,
            name=self.name,
            spec_hash=self.spec_hash,
            image=self.image,
            state=ContainerState(self.state),
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=self.exit_code,
            reason=self.reason,
            message=self.message,
        )


@dataclass
class _Watch:
    """The watcher of one running container: its own child (``proc``), or a process
    adopted from another kubelet process (``pidfd``)."""

    scope: trio.CancelScope
    proc: trio.Process | None
    pidfd: int | None
    done: trio.Event = field(default_factory=trio.Event)
    sent: signal.Signals | None = None  # the last stop signal sent, for the exit message

    def alive(self) -> bool:
        """Whether the main process has not ended yet, so its pid (and process group
        id) still names it. Checked right before each signal: once a process is reaped
        its pid may be given to another one."""
        if self.done.is_set():
            return False
        if self.proc is not None:
            return self.proc.returncode is None  # polls; reaps it if it just ended
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return not poller.poll(0)
        return False


def container_id(pod_uid: str, name: str, index: int) -> str:
    return f"{pod_uid}_{name}_{index}"


def parse_container_id(cid: str) -> tuple[str, str, int] | None:
    """``(pod uid, container name, index)`` of a well-formed id, else ``None``."""
    parts = cid.rsplit("_", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    uid, name, index = parts
    if not _UID.fullmatch(uid) or not _NAME.fullmatch(name):
        return None
    return uid, name, int(index)


def exit_description(returncode: int) -> tuple[int, str, str]:
    """``(exit code, reason, message)`` for a ``Popen.returncode``; a signal ``n``
    gives exit code ``128 + n``, as shells and Docker report it."""
    if returncode < 0:
        signum = -returncode
        try:
            signame = signal.Signals(signum).name
        except ValueError:
            signame = f"signal {signum}"
        return 128 + signum, Reason.ERROR, f"killed by {signame}"
    if returncode == 0:
        return 0, Reason.COMPLETED, ""
    return returncode, Reason.ERROR, f"exited with code {returncode}"


def read_tail(path: Path, tail: int | None) -> bytes:
    """The file's content, or its last ``tail`` lines (a last line without a newline
    counts); a missing file reads as empty."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below, on every path)
    except FileNotFoundError:
        return b""
    with f:
        if tail is None:
            return f.read()
        if tail <= 0:
            return b""
        pos = f.seek(0, os.SEEK_END)
        data = b""
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            body = data[:-1] if data.endswith(b"\n") else data
            if body.count(b"\n") >= tail:
                break
    ending = b"\n" if data.endswith(b"\n") else b""
    body = data[:-1] if ending else data
    return b"\n".join(body.split(b"\n")[-tail:]) + ending


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a reader sees the old or the new content)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable state file", path=str(path), error=str(exc))
        return None
    return data if isinstance(data, dict) else None


def _lock_root(root: Path) -> int:
    """Hold ``<root>/.lock`` for the life of the instance: two live runtimes on one root
    would each take the other's containers for their own."""
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartupError(
            f"runtime_exec root {root} is in use by another runtime (pid {holder});"
            " give each kubelet its own [runtime_exec] root"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class ExecRuntime:
    """The :class:`~kubecore.runtime.Runtime` of plain host processes (see the module
    docstring for the layout and adoption).

    ``root`` is created if missing and locked for the life of the instance (a second
    live instance on the same root is a :class:`~kubecore.errors.StartupError`).
    Containers get ``PATH=path``, ``HOSTNAME=<pod id>``, ``HOME=<container dir>``, the
    kubelet's own variables named in ``inherit_env``, then their own ``env``.
    """

    name = "exec"

    def __init__(
        self,
        root: Path,
        *,
        path: str = DEFAULT_PATH,
        inherit_env: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        self._path = path
        self._inherit_env = tuple(inherit_env)
        _check_platform()
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock_root(self.root)
        self._records: dict[str, _Record] = {}
        self._watches: dict[str, _Watch] = {}
        self._loaded = False
        self._load_lock = trio.Lock()
        self._create_lock = trio.Lock()
        # Record fields change only while this is held, and the state file is written
        # before it is released: the file never goes back to an older state.
        self._io_lock = trio.Lock()

    # -- paths -----------------------------------------------------------------------

    def _pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def _container_dir(self, uid: str, name: str) -> Path:
        return self._pod_dir(uid) / name

    def _state_path(self, rec: _Record) -> Path:
        return self._container_dir(rec.pod_uid, rec.name) / f"{rec.index}.json"

    def _log_path(self, rec: _Record) -> Path:
        return self._container_dir(rec.pod_uid, rec.name) / f"{rec.index}.log"

    # -- records ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("the exec runtime was closed")

    async def _persist(self, rec: _Record, change: Callable[[], None] | None = None) -> None:
        """Apply ``change`` to ``rec`` and write its state file, in that order, under
        the io lock; the write runs to completion even if the caller is cancelled."""
        with trio.CancelScope(shield=True):
            async with self._io_lock:
                if change is not None:
                    change()
                await trio.to_thread.run_sync(_write_json, self._state_path(rec), rec.to_json())

    async def _ensure_loaded(self) -> None:
        """Read every state file once (this instance holds the root's lock, so memory
        stays the truth afterwards) and adopt the containers that still run."""
        self._check_open()
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            found = await trio.to_thread.run_sync(self._scan_states)
            for rec in found:
                self._records.setdefault(rec.id, rec)
            self._loaded = True
            for rec in found:
                await self._adopt(rec)

    def _scan_states(self) -> list[_Record]:
        found: list[_Record] = []
        for path in sorted((self.root / "pods").glob("*/*/*.json")):
            if not _STATE_FILE.fullmatch(path.name):
                continue
            data = _read_json(path)
            if data is None:
                continue
            try:
                found.append(_Record.from_json(data))
            except (TypeError, ValueError) as exc:
                log.warning("unusable state file", path=str(path), error=str(exc))
        return found

    async def _adopt(self, rec: _Record) -> None:
        """Watch a container an earlier instance left running, or record that it ended."""
        if rec.state == ContainerState.WAITING.value:
            # Its creator stopped between writing the record and starting the process.
            await self._persist(
                rec,
                lambda: rec.exited(
                    exit_code=None,
                    reason=Reason.CANNOT_RUN,
                    message="the runtime stopped before the process was started",
                ),
            )
            return
        if not rec.running or rec.pid is None or rec.pid_start_ticks is None:
            return
        proc = _SPAWNED.get((rec.pid, rec.pid_start_ticks))
        if proc is not None:
            self._watch(rec, proc=proc, pidfd=None)
            return
        pidfd = await trio.to_thread.run_sync(
            _open_if_same, rec.pid, rec.pid_start_ticks, rec.boot_id
        )
        if pidfd is not None:
            self._watch(rec, proc=None, pidfd=pidfd)
            return
        if rec.boot_id == procfs.boot_id():
            await trio.to_thread.run_sync(procfs.kill_leftovers, rec.pid, rec.pid_start_ticks)
        await self._persist(
            rec,
            lambda: rec.exited(
                exit_code=None,
                reason=Reason.EXIT_CODE_UNKNOWN,
                message="the process ended while no runtime watched it; its exit code is"
                " unknown",
            ),
        )

    async def _get(self, cid: str) -> _Record:
        await self._ensure_loaded()
        rec = self._records.get(cid)
        if rec is None:
            raise ContainerError(Reason.NOT_FOUND, f"no container {cid!r}")
        return rec

    # -- watchers --------------------------------------------------------------------

    def _watch(self, rec: _Record, *, proc: trio.Process | None, pidfd: int | None) -> None:
        watch = _Watch(scope=trio.CancelScope(), proc=proc, pidfd=pidfd)
        self._watches[rec.id] = watch
        trio.lowlevel.spawn_system_task(
            self._watcher, rec, watch, name=f"runtime_exec watcher {rec.id}"
        )

    async def _watcher(self, rec: _Record, watch: _Watch) -> None:
        # A system task: it must never raise, or trio ends the whole run.
        try:
            returncode: int | None = None
            with watch.scope:
                if watch.proc is not None:
                    returncode = await watch.proc.wait()
                elif watch.pidfd is not None:
                    await trio.lowlevel.wait_readable(watch.pidfd)
            if watch.scope.cancelled_caught:
                return  # the instance was closed: the process runs on, unwatched
            if returncode is not None:
                _SPAWNED.pop((rec.pid or 0, rec.pid_start_ticks or 0), None)
                exit_code, reason, message = exit_description(returncode)
            else:
                exit_code, reason = None, Reason.EXIT_CODE_UNKNOWN
                message = (
                    f"stopped by {watch.sent.name}; " if watch.sent is not None else ""
                ) + "started by an earlier kubelet process, so its exit code is unknown"
            # A container's processes end with its main process.
            if rec.pid is not None and rec.pid_start_ticks is not None:
                await trio.to_thread.run_sync(
                    procfs.kill_leftovers, rec.pid, rec.pid_start_ticks
                )
            await self._persist(
                rec, lambda: rec.exited(exit_code=exit_code, reason=reason, message=message)
            )
            log.info("container exited", container=rec.id, exit_code=exit_code, reason=reason)
        except Exception:
            log.exception("container watcher failed", container=rec.id)
        finally:
            if watch.pidfd is not None:
                trio.lowlevel.notify_closing(watch.pidfd)
                os.close(watch.pidfd)
                watch.pidfd = None
            if self._watches.get(rec.id) is watch:
                del self._watches[rec.id]
            watch.done.set()

    # -- sandboxes -------------------------------------------------------------------

    def _sandbox_path(self, uid: str) -> Path:
        return self._pod_dir(uid) / "sandbox.json"

    def _read_sandbox(self, uid: str) -> SandboxInfo | None:
        data = _read_json(self._sandbox_path(uid))
        if data is None:
            return None
        try:
            return SandboxInfo(
                id=str(data["id"]),
                pod_full_name=str(data["pod_full_name"]),
                pod_uid=str(data["pod_uid"]),
                ready=bool(data["ready"]),
                ip=LOOPBACK,
                ports=tuple(PortMapping(**port) for port in data["ports"]),
                created_at=float(data["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("unusable sandbox file", pod_uid=uid, error=str(exc))
            return None

    def _write_sandbox(self, sandbox: SandboxInfo) -> None:
        self._pod_dir(sandbox.pod_uid).mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(sandbox)
        data["version"] = STATE_VERSION
        _write_json(self._sandbox_path(sandbox.pod_uid), data)

    def _list_sandboxes(self) -> list[SandboxInfo]:
        found = []
        for path in sorted((self.root / "pods").glob("*/sandbox.json")):
            sandbox = self._read_sandbox(path.parent.name)
            if sandbox is not None:
                found.append(sandbox)
        return found

    async def list_sandboxes(self) -> list[SandboxInfo]:
        await self._ensure_loaded()
        return await trio.to_thread.run_sync(self._list_sandboxes)

    async def run_sandbox(self, pod: BoundPod, full_name: str) -> SandboxInfo:
        """The sandbox is the pod's directory and its port map: each container port is
        reported at ``127.0.0.1:<containerPort>``, where the process itself listens.
        Nothing forwards between ports, so a ``hostPort`` is not reported: an address
        nobody listens on would send endpoints and proxies to a dead port."""
        await self._ensure_loaded()
        uid = _check_uid(pod.uid)
        ports = tuple(
            PortMapping(
                container_port=port.container_port,
                host_port=port.container_port,
                host_ip=LOOPBACK,
                protocol=(port.protocol or "TCP").upper(),
                name=port.name,
            )
            for container in pod.spec.containers
            for port in container.ports
        )
        async with self._create_lock:
            old = await trio.to_thread.run_sync(self._read_sandbox, uid)
            sandbox = SandboxInfo(
                id=uid,
                pod_full_name=full_name,
                pod_uid=uid,
                ready=True,
                ip=LOOPBACK,
                ports=ports,
                created_at=old.created_at if old is not None else time.time(),
            )
            await trio.to_thread.run_sync(self._write_sandbox, sandbox)
        return sandbox

    def _pod_records(self, uid: str) -> list[_Record]:
        return [rec for rec in self._records.values() if rec.pod_uid == uid]

    async def stop_sandbox(self, sandbox_id: str, grace_period: float) -> None:
        await self._ensure_loaded()
        if not _UID.fullmatch(sandbox_id):
            return
        async with trio.open_nursery() as nursery:
            for rec in self._pod_records(sandbox_id):
                nursery.start_soon(self._stop, rec, grace_period)
        async with self._create_lock:
            old = await trio.to_thread.run_sync(self._read_sandbox, sandbox_id)
            if old is not None and old.ready:
                stopped = dataclasses.replace(old, ready=False)
                await trio.to_thread.run_sync(self._write_sandbox, stopped)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        await self._ensure_loaded()
        if not _UID.fullmatch(sandbox_id):
            return
        async with trio.open_nursery() as nursery:
            for rec in self._pod_records(sandbox_id):
                nursery.start_soon(self._stop, rec, 0.0)
        async with self._create_lock, self._io_lock:
            for rec in self._pod_records(sandbox_id):
                del self._records[rec.id]
            pod_dir = self._pod_dir(sandbox_id)
            await trio.to_thread.run_sync(
                lambda: shutil.rmtree(pod_dir, ignore_errors=True)
            )

    # -- containers ------------------------------------------------------------------

    async def list_containers(self, *, all: bool = True) -> list[ContainerInfo]:
        await self._ensure_loaded()
        records = sorted(self._records.values(), key=lambda r: (r.pod_uid, r.name, r.index))
        return [rec.info() for rec in records if all or rec.running]

    def _environment(self, pod: BoundPod, container: Container, home: Path) -> dict[str, str]:
        env = {"PATH": self._path, "HOSTNAME": pod.id or pod.uid, "HOME": str(home)}
        for name in self._inherit_env:
            if name in os.environ:
                env[name] = os.environ[name]
        for var in container.env:
            if var.name:
                env[var.name] = var.value
        return env

    def _new_instance(self, rec_args: dict[str, Any]) -> _Record:
        """Pick the next instance number of the container, make its directory and write
        its first state file (``waiting``)."""
        cdir = self._container_dir(rec_args["pod_uid"], rec_args["name"])
        cdir.mkdir(parents=True, exist_ok=True)
        used = [int(m.group(1)) for p in cdir.iterdir() if (m := _STATE_FILE.fullmatch(p.name))]
        index = max(used, default=-1) + 1
        rec = _Record(
            id=container_id(rec_args["pod_uid"], rec_args["name"], index),
            index=index,
            **rec_args,
        )
        _write_json(self._state_path(rec), rec.to_json())
        return rec

    async def start_container(
        self,
        pod: BoundPod,
        full_name: str,
        sandbox: SandboxInfo,
        container: Container,
        spec_hash: str,
    ) -> ContainerInfo:
        """Run ``container.command`` (the image is recorded, not used) in the container's
        working directory: ``workingDir`` if given (relative to the container's
        directory), else that directory itself."""
        await self._ensure_loaded()
        uid = _check_uid(pod.uid)
        name = container.name
        if not _NAME.fullmatch(name):
            raise ContainerError(
                Reason.INVALID, f"container name {name!r} is not a DNS label (RFC 1035)"
            )
        current = await trio.to_thread.run_sync(self._read_sandbox, uid)
        if sandbox.pod_uid != uid or current is None or not current.ready:
            raise ContainerError(
                Reason.SANDBOX_NOT_READY,
                f"sandbox {sandbox.id!r} of pod {full_name} is not ready; run it first",
            )
        home = self._container_dir(uid, name)
        workdir = home / container.working_dir if container.working_dir else home
        args: dict[str, Any] = {
            "pod_full_name": full_name,
            "pod_uid": uid,
            "name": name,
            "image": container.image,
            "spec_hash": spec_hash,
            "command": list(container.command),
            "env": self._environment(pod, container, home),
            "working_dir": str(workdir),
            "created_at": time.time(),
        }
        with trio.CancelScope(shield=True):
            async with self._create_lock, self._io_lock:
                rec = await trio.to_thread.run_sync(self._new_instance, args)
                self._records[rec.id] = rec
        try:
            return await self._spawn(rec)
        except trio.Cancelled:
            if rec.state == ContainerState.WAITING.value:
                await self._cannot_run(rec, "the start was cancelled")
            raise

    async def _cannot_run(self, rec: _Record, message: str) -> ContainerError:
        await self._persist(
            rec, lambda: rec.exited(exit_code=None, reason=Reason.CANNOT_RUN, message=message)
        )
        log.warning("container cannot run", container=rec.id, message=message)
        return ContainerError(Reason.CANNOT_RUN, message)

    async def _spawn(self, rec: _Record) -> ContainerInfo:
        argv = rec.command
        if not argv:
            raise await self._cannot_run(
                rec,
                f"container {rec.name!r} has no command; the exec runtime runs commands"
                f" and does not use images ({rec.image!r})",
            )
        if not await trio.to_thread.run_sync(os.path.isdir, rec.working_dir):
            raise await self._cannot_run(
                rec,
                f"cannot run {shlex.join(argv)!r}: working directory {rec.working_dir!r}"
                " does not exist",
            )
        log_fd = await trio.to_thread.run_sync(
            os.open,
            self._log_path(rec),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o640,
        )
        started_at = time.time()
        try:
            # Not cancellable once begun (Popen runs in a thread): whatever starts is
            # recorded below before the next checkpoint.
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                cwd=rec.working_dir,
                env=rec.env,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            raise await self._cannot_run(rec, _spawn_failure(argv, rec.env, exc)) from None
        finally:
            os.close(log_fd)
        stat = procfs.read_stat(proc.pid)  # the child cannot be reaped before we wait
        ticks = stat.start_ticks if stat is not None else 0
        _SPAWNED[(proc.pid, ticks)] = proc
        rec.pid, rec.pid_start_ticks, rec.boot_id = proc.pid, ticks, procfs.boot_id()
        rec.state, rec.started_at = ContainerState.RUNNING.value, started_at
        self._watch(rec, proc=proc, pidfd=None)
        await self._persist(rec)
        log.info("container started", container=rec.id, pid=proc.pid, command=argv)
        return rec.info()

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        await self._ensure_loaded()
        rec = self._records.get(container_id)
        if rec is not None:
            await self._stop(rec, grace_period)

    async def _stop(self, rec: _Record, grace_period: float) -> None:
        if rec.running and rec.id not in self._watches:
            await self._adopt(rec)  # its watcher failed: watch it again, or record its end
        watch = self._watches.get(rec.id)
        if watch is None or not rec.running or rec.pid is None:
            return
        for sig, wait in ((signal.SIGTERM, grace_period), (signal.SIGKILL, KILL_TIMEOUT)):
            if not watch.alive():
                break  # its pid may already name another process: send nothing
            watch.sent = sig
            procfs.signal_group(rec.pid, sig)
            with trio.move_on_after(max(wait, 0.0)):
                await watch.done.wait()
            if watch.done.is_set():
                return
        with trio.move_on_after(KILL_TIMEOUT):
            await watch.done.wait()
        if not watch.done.is_set():
            log.warning("container did not exit after SIGKILL", container=rec.id)

    async def remove_container(self, container_id: str) -> None:
        await self._ensure_loaded()
        rec = self._records.get(container_id)
        if rec is None:
            return
        async with self._io_lock:
            if rec.running or rec.id in self._watches:
                raise ContainerError(
                    Reason.RUNNING, f"container {container_id!r} is running; stop it first"
                )
            del self._records[rec.id]
            paths = (self._state_path(rec), self._log_path(rec))
            await trio.to_thread.run_sync(_unlink_all, paths)

    async def container_logs(self, container_id: str, tail: int | None = None) -> bytes:
        rec = await self._get(container_id)
        return await trio.to_thread.run_sync(read_tail, self._log_path(rec), tail)

    async def container_stats(self, container_id: str) -> ContainerStats:
        """CPU time and resident memory summed over the container's session (shared
        pages count once per process); no network or filesystem counters."""
        rec = await self._get(container_id)
        if not rec.running or rec.pid is None or rec.pid_start_ticks is None:
            raise ContainerError(Reason.NOT_RUNNING, f"container {container_id!r} is not running")
        members = await trio.to_thread.run_sync(
            procfs.session_members, rec.pid, rec.pid_start_ticks
        )
        if not members:
            raise ContainerError(Reason.NOT_RUNNING, f"container {container_id!r} is not running")
        return ContainerStats(
            timestamp=time.time(),
            cpu_usage_ns=sum(m.cpu_ns for m in members),
            memory_usage_bytes=sum(m.rss_pages for m in members) * procfs.PAGE_SIZE,
            extra={"processes": len(members)},
        )

    async def exec_in_container(
        self,
        container_id: str,
        command: Sequence[str],
        timeout: float,  # noqa: ASYNC109 (the Runtime contract)
    ) -> tuple[int, bytes]:
        """Run ``command`` with the container's environment and working directory, in a
        session of its own (killed with its session on timeout or cancellation)."""
        rec = await self._get(container_id)
        if not rec.running:
            raise ContainerError(Reason.NOT_RUNNING, f"container {container_id!r} is not running")
        argv = list(command)
        if not argv:
            raise ContainerError(Reason.EXEC_FAILED, "exec needs a command")
        try:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=rec.working_dir,
                env=rec.env,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            raise ContainerError(Reason.EXEC_FAILED, _spawn_failure(argv, rec.env, exc)) from None
        output = bytearray()
        returncode: int | None = None
        assert proc.stdout is not None
        try:
            with trio.move_on_after(max(timeout, 0.0)):
                while chunk := await proc.stdout.receive_some(1 << 16):
                    output += chunk[: max(0, EXEC_OUTPUT_LIMIT - len(output))]
                returncode = await proc.wait()
        finally:
            if proc.returncode is None:
                procfs.signal_group(proc.pid, signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await proc.wait()
            with trio.CancelScope(shield=True):
                await proc.stdout.aclose()
        if returncode is None:
            raise ContainerError(
                Reason.EXEC_TIMEOUT,
                f"{shlex.join(argv)!r} still ran after {timeout:g}s and was killed",
            )
        return exit_description(returncode)[0], bytes(output)

    async def aclose(self) -> None:
        if self._lock_fd is None:
            return
        watches = list(self._watches.values())
        for watch in watches:
            watch.scope.cancel()
        with trio.CancelScope(shield=True):
            for watch in watches:
                await watch.done.wait()
        os.close(self._lock_fd)
        self._lock_fd = None


def _check_platform() -> None:
    """Adopted processes are watched through pidfds and known by ``/proc``."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        raise StartupError(
            f"runtime_exec needs Linux 5.3 or later (pidfd_open: {exc})"
        ) from None
    if procfs.read_stat(os.getpid()) is None:
        raise StartupError("runtime_exec needs /proc (Linux)")


def _check_uid(uid: str) -> str:
    if not _UID.fullmatch(uid):
        raise ContainerError(
            Reason.INVALID,
            f"pod uid {uid!r} cannot name a directory (letters, digits, '.', '_', '-')",
        )
    return uid


def _open_if_same(pid: int, start_ticks: int, boot: str) -> int | None:
    """A pidfd of ``pid`` if it is still the recorded process, else ``None``.

    The pidfd is opened before the identity check: if the check passes, the pidfd
    refers to that very process, whatever happens to the pid later.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if procfs.is_same_process(pid, start_ticks, boot) is None:
        os.close(pidfd)
        return None
    return pidfd


def _spawn_failure(argv: Sequence[str], env: dict[str, str], exc: Exception) -> str:
    program = argv[0]
    if (
        isinstance(exc, FileNotFoundError)
        and "/" not in program
        and shutil.which(program, path=env.get("PATH", "")) is None
    ):
        return (
                f"cannot run {shlex.join(argv)!r}: executable {program!r} not found in"
                f" PATH ({env.get('PATH', '')})"
            )
    if isinstance(exc, OSError):
        return f"cannot run {shlex.join(argv)!r}: {program!r}: {exc.strerror or exc}"
    return f"cannot run {shlex.join(argv)!r}: {exc}"


def _unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


__all__ = ["DEFAULT_PATH", "ExecRuntime", "container_id", "parse_container_id", "read_tail"]
