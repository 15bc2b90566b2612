"""Reading manifests from a file or a directory into full snapshots.

Each file holds one ContainerManifest (YAML or JSON). Its pod's id (overriding the
manifest's) is the lowercase basename stripped to ``[a-z0-9]`` and cut to 15
characters, followed by the lowercase base32 of sha1(path), cut so the whole id is a
valid DNS label (v0.5: 30 hash characters); its uid is the manifest's ``uuid`` or that
id; its namespace ``default``. A file that does not decode or validate becomes a
:class:`~kubecore.kubelet.sources.Rejected` entry naming the file and the field. A
missing path (or one that cannot be listed) is an origin gone away, as in v0.5: no
snapshot is sent, so the last good one stays in force (and pods are not stopped); it is
logged once and read again on every tick until it is back.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from kubecore.api import (
    DEFAULT_NAMESPACE,
    BoundPod,
    ContainerManifest,
    InvalidObject,
    PodSpec,
    apply_defaults,
    decode,
    validate_bound_pod,
)
from kubecore.kubelet.sources import Rejected, Snapshot
from kubecore.log import get_logger

log = get_logger("kubecore.source_file")

SOURCE_NAME = "file"
MAX_LABEL = 63
NAME_PART = 15
HASH_PART = 30
MAX_FILE_BYTES = 16 * 1024 * 1024
WATCH_TICK_MS = 500


def pod_id_for(path: Path) -> str:
    """The pod id of the manifest at ``path`` (see the module docstring)."""
    stem = re.sub(r"[^a-z0-9]", "", path.name.lower())[:NAME_PART]
    digest = base64.b32encode(hashlib.sha1(str(path).encode()).digest()).decode().lower()
    digest = digest.rstrip("=")
    return stem + digest[: min(HASH_PART, MAX_LABEL - len(stem))]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            entry for entry in path.iterdir()
            if not entry.name.startswith(".") and entry.is_file()
        )
    return [path]


def read_pod(path: Path) -> BoundPod | Rejected:
    """The pod of one manifest file, or why not."""
    origin = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return Rejected(origin, f"cannot read: {exc.strerror or exc}")
    try:
        manifest = decode(data, kind=ContainerManifest, source=origin)
    except InvalidObject as exc:
        return Rejected(origin, exc)
    pod_id = pod_id_for(path)
    pod = apply_defaults(BoundPod(
        id=pod_id,
        uid=manifest.uuid or pod_id,
        namespace=DEFAULT_NAMESPACE,
        spec=PodSpec(volumes=manifest.volumes, containers=manifest.containers,
                     restart_policy=manifest.restart_policy),
    ))
    causes = validate_bound_pod(pod)
    if causes:
        # Report the manifest's own field names, as the file spells them.
        fixed = [type(c)(c.reason, c.message, c.field.removeprefix("spec."))
                 for c in causes]
        return Rejected(origin, InvalidObject("ContainerManifest", pod_id, fixed,
                                              source=origin))
    return pod


def read_snapshot(path: Path) -> Snapshot | None:
    """Every manifest under ``path``; ``None`` when ``path`` does not exist or its
    directory cannot be listed."""
    try:
        if not path.exists():
            return None
        files = _files(path)
    except OSError:
        return None
    pods: list[BoundPod] = []
    rejected: list[Rejected] = []
    for file in files:
        result = read_pod(file)
        if isinstance(result, Rejected):
            rejected.append(result)
        else:
            pods.append(result)
    return Snapshot(pods=pods, rejected=rejected)


class FileSource:
    """The ``file`` manifest source over ``path``."""

    name = SOURCE_NAME

    def __init__(self, path: Path, check_interval: float = 20.0, *, watch: bool = True) -> None:
        self.path = path
        self.check_interval = check_interval
        self.watch = watch
        self.reads = 0

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """A snapshot at once, then on every interval and every file-system change;
        nothing while the path is missing (the last snapshot stays in force)."""
        missing_logged = False
        ticks = self._ticks()
        while True:
            snapshot = await trio.to_thread.run_sync(read_snapshot, self.path)
            self.reads += 1
            if snapshot is None:
                if not missing_logged:
                    log.warning("manifest path missing or unreadable; keeping its last pods"
                                " and retrying", path=str(self.path))
                    missing_logged = True
            else:
                if missing_logged:
                    log.info("manifest path is back", path=str(self.path))
                missing_logged = False
                yield snapshot
            await ticks.__anext__()

    def _target(self) -> Path | None:
        # The directory itself, or a file's parent (so a file made later is seen).
        target = self.path if self.path.is_dir() else self.path.parent
        return target if target.is_dir() else None

    async def _ticks(self) -> AsyncIterator[None]:
        """Yields when a re-read is due: a change under the path, or the interval."""
        import watchfiles

        while True:
            target = self._target() if self.watch else None
            if target is None:
                await trio.sleep(self.check_interval)
                yield None
                continue
            due = trio.current_time() + self.check_interval
            # Changes made before the watcher existed are caught by one re-read as soon
            # as it yields the first time (at most one tick after it starts).
            fresh = True
            try:
                # Short Rust timeouts keep cancellation prompt (the watching thread
                # cannot be interrupted); events in between are buffered, not lost.
                async for changes in watchfiles.awatch(
                    os.fspath(target), recursive=False, debounce=50, step=10,
                    rust_timeout=WATCH_TICK_MS, yield_on_timeout=True,
                ):
                    if changes or fresh or trio.current_time() >= due:
                        fresh = False
                        due = trio.current_time() + self.check_interval
                        yield None
                    if self._target() != target:
                        break  # the path appeared, vanished or changed kind
            except Exception as exc:
                log.warning("cannot watch for changes; polling only", path=str(target),
                            error=str(exc) or type(exc).__name__)
                self.watch = False
