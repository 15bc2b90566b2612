"""The Docker runtime: pods as Docker containers, through the Docker Engine API.

A pod's sandbox is its *infra* container (image ``infra_image``, Kubernetes v0.5's
``net`` container): it owns the pod's network namespace and publishes every container
port of the pod on the host (``127.0.0.1`` by default), at its ``hostPort`` or at a free
port the daemon picks. The pod's own containers join that namespace
(``network_mode=container:<infra id>``), so they reach each other on ``127.0.0.1`` and
share the published ports. Sandbox ids and container ids are Docker's full ids.

Everything the runtime makes carries labels (see :mod:`kubecore_runtime_docker.convert`):
the ``kubecore.managed`` marker, the node, the role, the pod's full name and uid, and for
containers their name, spec hash, image and sandbox. Lists are label queries, so a new
instance (a restarted kubelet) finds, with the same ids, everything an earlier one made,
and neither restarts nor duplicates it. The ``kubecore.node`` label keeps kubelets that
share one daemon apart.

The docker SDK blocks: every call runs in a worker thread (``trio.to_thread``) under a
capacity limiter, so nothing blocks the trio loop. Image pulls and exec streams have
limiters of their own, and a pull or an exec that overruns its deadline is abandoned
from trio's side (and its thread ends on its own socket timeout, or when the exec's
process is killed).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeVar

import docker
import trio
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from kubecore.api.types import PULL_ALWAYS, PULL_IF_NOT_PRESENT, PULL_NEVER
from kubecore.log import get_logger
from kubecore.runtime import (
    ContainerError,
    ContainerInfo,
    ContainerState,
    ContainerStats,
    SandboxInfo,
)
from kubecore.runtime import ContainerReason as Reason
from kubecore_runtime_docker import convert
from kubecore_runtime_docker.convert import (
    DOCKER_ERROR,
    IMAGE_NOT_FOUND,
    IMAGE_PULL_FAILED,
    LOGS_UNAVAILABLE,
    ROLE_CONTAINER,
    ROLE_SANDBOX,
    UNAVAILABLE,
)

if TYPE_CHECKING:
    from kubecore.api import BoundPod, Container

log = get_logger("kubecore.runtime_docker")

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_INFRA_IMAGE: Final = "kubecore/pause:latest"
DEFAULT_HOST_IP: Final = "127.0.0.1"
#: ``exec_in_container`` keeps at most this much output (the rest is read and dropped).
EXEC_OUTPUT_LIMIT: Final = 1 << 20
#: How long an exec's exit code may take to show after its output stream ended.
EXEC_EXIT_WAIT: Final = 5.0
#: Attempts at starting a sandbox whose daemon-picked port was taken meanwhile.
SANDBOX_START_ATTEMPTS: Final = 3
#: Docker's wording when a host port cannot be bound.
_PORT_TAKEN = ("port is already allocated", "address already in use")
#: Docker's wording when an exec could not start its command.
_EXEC_START_FAILED = b"OCI runtime exec failed"
_PULL_NOT_FOUND = ("not found", "manifest unknown", "does not exist", "pull access denied")


def client_arguments(endpoint: str | None) -> dict[str, Any]:
    """``docker.APIClient`` arguments for ``endpoint``; ``None`` means the environment's
    ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``) or, without it,
    the local socket."""
    if endpoint:
        return {"base_url": endpoint}
    arguments: dict[str, Any] = docker.utils.kwargs_from_env()
    arguments.setdefault("base_url", "unix:///var/run/docker.sock")
    return arguments


def ping(endpoint: str | None, timeout: float, image: str = "") -> tuple[str, bool] | None:
    """``(API version, whether image is present)`` from the daemon at ``endpoint``, or
    ``None`` if it does not answer within ``timeout`` seconds (per request). Blocks (the
    caller decides where)."""
    try:
        client = docker.APIClient(**client_arguments(endpoint), version="auto", timeout=timeout)
    except (DockerException, OSError):
        return None
    try:
        client.ping()
        version: str = client.api_version
        return version, bool(image) and image_present(client, image)
    except (DockerException, OSError):
        return None
    finally:
        client.close()


def _contained(
    method: Callable[Concatenate[DockerRuntime, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[DockerRuntime, P], Coroutine[Any, Any, T]]:
    """Let no Docker API error the method did not translate itself escape: it becomes
    :class:`ContainerError` (``DockerError``) with the daemon's explanation."""

    @functools.wraps(method)
    async def wrapper(runtime: DockerRuntime, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(runtime, *args, **kwargs)
        except APIError as exc:
            raise ContainerError(
                DOCKER_ERROR, f"the Docker daemon refused: {exc.explanation or exc}"
            ) from exc

    return wrapper


class DockerRuntime:
    """The :class:`~kubecore.runtime.Runtime` on a Docker daemon (see the module
    docstring for sandboxes, labels and adoption).

    ``node`` scopes the runtime: it lists and touches only containers labelled with it.
    ``root`` holds emptyDir volumes (``<root>/pods/<uid>/volumes/<name>``); the daemon
    must see the same paths (a local daemon). ``labels`` go on every container on top of
    the runtime's own. ``infra_command`` empty means the infra image's own command.
    ``host_ip`` is where ports are published unless a port names its own ``hostIP``.
    Privileged containers run only with ``allow_privileged``. ``timeout`` bounds each API
    request, ``pull_timeout`` a whole image pull. Construction does no I/O: the client
    connects on first use (``api_version`` ``"auto"`` asks the daemon).
    """

    name = "docker"

    def __init__(
        self,
        *,
        node: str,
        root: Path,
        endpoint: str | None = None,
        infra_image: str = DEFAULT_INFRA_IMAGE,
        infra_command: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        allow_privileged: bool = False,
        host_ip: str = DEFAULT_HOST_IP,
        network: str = "bridge",
        infra_stop_grace: float = 0.0,
        timeout: float = 60.0,
        pull_timeout: float = 60.0,
        max_threads: int = 16,
        api_version: str = "auto",
    ) -> None:
        if not node:
            raise ValueError("node must not be empty")
        self.node = node
        self.root = Path(root)
        self.endpoint = endpoint
        self.infra_image = infra_image
        self.infra_command = list(infra_command)
        self.labels = dict(labels or {})
        self.allow_privileged = allow_privileged
        self.host_ip = host_ip
        self.network = network
        self.infra_stop_grace = infra_stop_grace
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self._arguments = client_arguments(endpoint)
        self._api_version = api_version
        self._max_threads = max_threads
        self._limiter = trio.CapacityLimiter(max_threads)
        # Calls that may last (a stop's grace, exec output) must not starve the others.
        self._slow_limiter = trio.CapacityLimiter(max_threads)
        self._pull_limiter = trio.CapacityLimiter(4)
        self._api: Any = None
        self._exec_api: Any = None
        self._client_lock = trio.Lock()
        self._closed = False
        self._pod_locks: dict[str, trio.Lock] = {}
        self._image_locks: dict[str, trio.Lock] = {}
        # Containers between create and start in this instance: listed as WAITING.
        self._starting: set[str] = set()
        # id -> (Docker state, info) for containers whose info cannot change while
        # their state stays the same; pruned on every full list.
        self._cache: dict[str, tuple[str, ContainerInfo]] = {}
        # id -> inspect document of a running infra container (its ports and labels
        # cannot change while it runs); pruned on every full list of sandboxes.
        self._sandbox_docs: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()

    @property
    def where(self) -> str:
        """The daemon's address, for messages."""
        base: str = self._arguments.get("base_url", "")
        return base

    @property
    def pod_ip(self) -> str:
        """The address pods are reached at: where their ports are published."""
        return DEFAULT_HOST_IP if self.host_ip in ("", "0.0.0.0") else self.host_ip

    # -- plumbing ----------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> ContainerError:
        return ContainerError(
            UNAVAILABLE, f"the Docker daemon at {self.where} does not answer: {exc}"
        )

    async def _client(self) -> Any:
        """The shared API client, made on first use (in a thread: ``auto`` asks the
        daemon for its API version)."""
        if self._closed:
            raise RuntimeError("the docker runtime was closed")
        if self._api is not None:
            return self._api
        async with self._client_lock:
            if self._api is None:
                make = functools.partial(
                    docker.APIClient,
                    **self._arguments,
                    version=self._api_version,
                    timeout=self.timeout,
                    max_pool_size=2 * self._max_threads,
                )
                try:
                    self._api = await trio.to_thread.run_sync(make, limiter=self._limiter)
                except (DockerException, OSError) as exc:
                    raise self._unavailable(exc) from exc
        return self._api

    async def _exec_client(self) -> Any:
        """A client without a read timeout, for exec output streams: an exec may stay
        silent for longer than any API timeout, and its deadline is enforced here."""
        api = await self._client()
        if self._exec_api is None:
            make = functools.partial(
                docker.APIClient,
                **self._arguments,
                version=api.api_version,
                timeout=None,
                max_pool_size=self._max_threads,
            )
            try:
                client = await trio.to_thread.run_sync(make, limiter=self._limiter)
            except (DockerException, OSError) as exc:
                raise self._unavailable(exc) from exc
            if self._exec_api is None:
                self._exec_api = client
            else:
                client.close()  # another task made one meanwhile
        return self._exec_api

    async def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        slow: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run a blocking docker call in a worker thread (``slow``: one that may last,
        under a limiter of its own); a daemon that does not answer becomes
        :class:`ContainerError` (``RuntimeUnavailable``). Docker's API errors are the
        caller's to translate."""
        call = functools.partial(fn, *args, **kwargs)
        limiter = self._slow_limiter if slow else self._limiter
        try:
            return await trio.to_thread.run_sync(call, limiter=limiter)
        except APIError:
            raise
        except (DockerException, OSError) as exc:
            # requests' connection errors and timeouts are OSErrors.
            raise self._unavailable(exc) from exc

    def _pod_lock(self, uid: str) -> trio.Lock:
        return self._pod_locks.setdefault(uid, trio.Lock())

    def _base_labels(self, role: str, full_name: str, uid: str) -> dict[str, str]:
        return {
            **self.labels,
            convert.MANAGED: "1",
            convert.NODE: self.node,
            convert.ROLE: role,
            convert.POD_FULL_NAME: full_name,
            convert.POD_UID: uid,
        }

    def _inspect_sync(self, api: Any, cid: str, role: str) -> dict[str, Any] | None:
        """The inspect document of one of this node's containers of ``role``, else
        ``None`` (unknown id, someone else's container, or the other role)."""
        if not convert.is_container_id(cid):
            return None
        try:
            data: dict[str, Any] = api.inspect_container(cid)
        except NotFound:
            return None
        labels = convert.labels_of(data)
        if (
            data.get("Id") != cid
            or labels.get(convert.MANAGED) != "1"
            or labels.get(convert.NODE) != self.node
            or labels.get(convert.ROLE) != role
        ):
            return None
        return data

    async def _inspect(self, cid: str, role: str = ROLE_CONTAINER) -> dict[str, Any] | None:
        api = await self._client()
        return await self._call(self._inspect_sync, api, cid, role)

    async def _container(self, cid: str) -> dict[str, Any]:
        data = await self._inspect(cid)
        if data is None:
            raise ContainerError(Reason.NOT_FOUND, f"no container {cid!r} on this node")
        return data

    def _list_sync(
        self, api: Any, role: str, *, all: bool = True, **more: str
    ) -> list[dict[str, Any]]:
        """Summaries (``docker ps``) of this node's containers of ``role``."""
        filters = {"label": convert.selector(self.node, role, **more)}
        found: list[dict[str, Any]] = api.containers(all=all, filters=filters)
        return found

    def _inspect_all_sync(self, api: Any, summaries: Iterable[Mapping[str, Any]]) -> list[Any]:
        found = []
        for summary in summaries:
            with contextlib.suppress(NotFound):
                found.append(api.inspect_container(summary["Id"]))
        return found

    def _sandbox_docs_sync(
        self, api: Any, summaries: Iterable[Mapping[str, Any]], *, prune: bool = False
    ) -> list[dict[str, Any]]:
        """Inspect documents of listed infra containers. A sandbox the listing shows
        running is inspected once per run (``prune``: the listing was complete, forget
        the sandboxes it does not show)."""
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for summary in summaries:
            cid: str = summary["Id"]
            seen.add(cid)
            running = summary.get("State") == "running"
            with self._cache_lock:
                cached = self._sandbox_docs.get(cid) if running else None
            if cached is not None:
                found.append(cached)
                continue
            try:
                data: dict[str, Any] = api.inspect_container(cid)
            except NotFound:
                continue
            found.append(data)
            with self._cache_lock:
                if convert.is_running(data):
                    self._sandbox_docs[cid] = data
                else:
                    self._sandbox_docs.pop(cid, None)
        if prune:
            with self._cache_lock:
                for cid in set(self._sandbox_docs) - seen:
                    del self._sandbox_docs[cid]
        return found

    # -- sandboxes ---------------------------------------------------------------------

    @_contained
    async def list_sandboxes(self) -> list[SandboxInfo]:
        api = await self._client()

        def sandboxes() -> list[Any]:
            return self._sandbox_docs_sync(api, self._list_sync(api, ROLE_SANDBOX), prune=True)

        found = await self._call(sandboxes)
        infos = [convert.sandbox_info(data, self.pod_ip) for data in found]
        return sorted(infos, key=lambda s: (s.created_at, s.id))

    @_contained
    async def run_sandbox(self, pod: BoundPod, full_name: str) -> SandboxInfo:
        """Return the pod's running infra container as is, or replace stopped ones with a
        new one (new id) publishing the pod's current ports. The infra image is never
        pulled when present; when Docker says it is absent, one pull is tried."""
        uid = convert.check_pod_uid(pod.uid)
        specs = convert.pod_port_specs(pod, self.host_ip)
        api = await self._client()
        async with self._pod_lock(uid):

            def existing() -> list[Any]:
                summaries = self._list_sync(api, ROLE_SANDBOX, pod_uid=uid)
                return self._sandbox_docs_sync(api, summaries)

            current = await self._call(existing)
            for data in current:
                if convert.is_running(data):
                    return convert.sandbox_info(data, self.pod_ip)
            for data in current:
                await self._remove(data["Id"])
            # The image is looked up only when the daemon says it is missing (as
            # ``docker run`` does): one round trip less per pod.
            for attempt in (1, 2):
                try:
                    with trio.CancelScope(shield=True):
                        # Shielded: a created infra container is either started or removed.
                        data = await self._call(
                            self._create_sandbox_sync, api, pod, full_name, specs
                        )
                    break
                except _NoImage:
                    if attempt == 2:
                        raise ContainerError(
                            IMAGE_NOT_FOUND,
                            f"infra image {self.infra_image!r} vanished while starting pod"
                            f" {full_name}",
                        ) from None
                    await self._ensure_image(self.infra_image, PULL_IF_NOT_PRESENT, infra=True)
        info = convert.sandbox_info(data, self.pod_ip)
        log.info("sandbox started", pod=full_name, sandbox=info.id, ports=len(info.ports))
        return info

    def _create_sandbox_sync(
        self, api: Any, pod: BoundPod, full_name: str, specs: list[convert.PortSpec]
    ) -> dict[str, Any]:
        labels = self._base_labels(ROLE_SANDBOX, full_name, pod.uid)
        labels[convert.PORTS] = json.dumps(specs, separators=(",", ":"))
        # On the host's network a pod's ports are the host's own: nothing to publish
        # (Docker refuses port bindings there).
        host_config = api.create_host_config(
            port_bindings=None if self.network == "host" else convert.port_bindings(specs),
            network_mode=self.network,
        )
        exposed = sorted({(s["containerPort"], s["protocol"].lower()) for s in specs})
        dynamic = any(not s["hostPort"] for s in specs)
        for attempt in range(1, SANDBOX_START_ATTEMPTS + 1):
            try:
                created = api.create_container(
                    self.infra_image,
                    command=self.infra_command or None,
                    hostname=convert.hostname(pod.id or pod.uid),
                    labels=labels,
                    ports=exposed or None,
                    host_config=host_config,
                    name=convert.docker_name("net", "infra", full_name, pod.uid),
                )
            except ImageNotFound:
                raise _NoImage(self.infra_image) from None
            except APIError as exc:
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"cannot create the infra container of pod {full_name}"
                    f" (image {self.infra_image!r}): {exc.explanation or exc}",
                ) from None
            cid: str = created["Id"]
            try:
                api.start(cid)
                data: dict[str, Any] = api.inspect_container(cid)
            except APIError as exc:
                self._remove_quietly(api, cid)
                text = str(exc.explanation or exc)
                if dynamic and attempt < SANDBOX_START_ATTEMPTS and any(
                    words in text for words in _PORT_TAKEN
                ):
                    continue  # the daemon picked a port someone else took meanwhile
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"cannot start the infra container of pod {full_name}"
                    f" (image {self.infra_image!r}): {text}",
                ) from None
            if convert.is_running(data):
                with self._cache_lock:
                    self._sandbox_docs[cid] = data
                return data
            # The infra container must keep running; an image whose default command
            # ends at once (a shell) needs infra_command.
            code = (data.get("State") or {}).get("ExitCode")
            self._remove_quietly(api, cid)
            raise ContainerError(
                Reason.CANNOT_RUN,
                f"the infra container of pod {full_name} (image {self.infra_image!r},"
                f" command {shlex.join(convert.command_of(data))!r}) exited at once with"
                f" code {code}; it must keep running: set [runtime_docker] infra_command",
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _remove_quietly(api: Any, cid: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            api.remove_container(cid, force=True, v=True)

    async def _remove(self, cid: str) -> None:
        api = await self._client()
        await self._call(self._remove_quietly, api, cid)

    @_contained
    async def stop_sandbox(self, sandbox_id: str, grace_period: float) -> None:
        """Stop the pod's containers (each with ``grace_period``, concurrently), then
        the infra container (with ``infra_stop_grace``)."""
        data = await self._inspect(sandbox_id, ROLE_SANDBOX)
        if data is None:
            return
        uid = convert.labels_of(data).get(convert.POD_UID, "")
        api = await self._client()
        running = await self._call(self._list_sync, api, ROLE_CONTAINER, all=False, pod_uid=uid)
        async with trio.open_nursery() as nursery:
            for summary in running:
                nursery.start_soon(self._stop, summary["Id"], grace_period)
        await self._stop(sandbox_id, self.infra_stop_grace)
        log.info("sandbox stopped", sandbox=sandbox_id, containers=len(running))

    @_contained
    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove (killing what runs) the infra container, every container of its pod
        (and any container started in it), and the pod's volume directory."""
        if not convert.is_container_id(sandbox_id):
            return
        data = await self._inspect(sandbox_id, ROLE_SANDBOX)
        api = await self._client()
        uid = convert.labels_of(data).get(convert.POD_UID, "") if data is not None else ""

        def remove_all() -> int:
            ids = {s["Id"] for s in self._list_sync(api, ROLE_CONTAINER, sandbox=sandbox_id)}
            if uid:
                for role in (ROLE_CONTAINER, ROLE_SANDBOX):
                    ids |= {s["Id"] for s in self._list_sync(api, role, pod_uid=uid)}
            ids.discard(sandbox_id)
            for cid in sorted(ids):
                self._remove_quietly(api, cid)
            if data is not None:
                self._remove_quietly(api, sandbox_id)
            return len(ids)

        if uid:
            async with self._pod_lock(uid):
                removed = await self._call(remove_all)
                await trio.to_thread.run_sync(self._remove_pod_dir, uid)
            self._pod_locks.pop(uid, None)
        else:
            removed = await self._call(remove_all)
        if data is not None:
            log.info("sandbox removed", sandbox=sandbox_id, containers=removed)

    def _pod_dir(self, uid: str) -> Path:
        # The uid becomes one path component, whatever it holds.
        return self.root / "pods" / uid.replace("/", "_").replace("\0", "_").lstrip(".")

    def _remove_pod_dir(self, uid: str) -> None:
        shutil.rmtree(self._pod_dir(uid), ignore_errors=True)

    # -- containers --------------------------------------------------------------------

    @_contained
    async def list_containers(self, *, all: bool = True) -> list[ContainerInfo]:
        api = await self._client()
        infos = await self._call(self._list_containers_sync, api, all)
        return sorted(infos, key=lambda c: (c.pod_uid, c.name, c.created_at, c.id))

    def _list_containers_sync(self, api: Any, all: bool) -> list[ContainerInfo]:
        infos: list[ContainerInfo] = []
        seen: set[str] = set()
        for summary in self._list_sync(api, ROLE_CONTAINER, all=all):
            cid: str = summary["Id"]
            state: str = summary.get("State", "")
            seen.add(cid)
            with self._cache_lock:
                cached = self._cache.get(cid)
            if cached is not None and cached[0] == state:
                infos.append(cached[1])
                continue
            try:
                data = api.inspect_container(cid)
            except NotFound:
                continue
            info = convert.container_info(data, starting=cid in self._starting)
            infos.append(info)
            docker_state = (data.get("State") or {}).get("Status", "")
            if docker_state in ("running", "exited", "dead"):
                with self._cache_lock:
                    self._cache[cid] = (docker_state, info)
        if all:
            with self._cache_lock:
                for cid in set(self._cache) - seen:
                    del self._cache[cid]
        return infos

    @_contained
    async def start_container(
        self,
        pod: BoundPod,
        full_name: str,
        sandbox: SandboxInfo,
        container: Container,
        spec_hash: str,
    ) -> ContainerInfo:
        """Create and start ``container`` in the sandbox's namespaces.

        The image per its pull policy (``PullNever``: never pulled; ``PullIfNotPresent``,
        the default: pulled only when absent; ``PullAlways``: always pulled, and a failed
        pull fails the start), volumes and the privileged check. Under the first two the
        image is looked up only when Docker refuses the create for want of it (as
        ``docker run`` does), so a present image costs no extra round trip. A failure
        there leaves a never-started placeholder container (made from the infra
        container's image) that lists as ``EXITED`` with the error's reason and message,
        as a Docker start failure does.
        """
        name = convert.check_container_name(container.name)
        uid = convert.check_pod_uid(pod.uid)
        infra = await self._inspect(sandbox.id, ROLE_SANDBOX)
        if (
            infra is None
            or not convert.is_running(infra)
            or convert.labels_of(infra).get(convert.POD_UID) != uid
        ):
            raise ContainerError(
                Reason.SANDBOX_NOT_READY,
                f"sandbox {sandbox.id!r} of pod {full_name} is not running; run it first",
            )
        labels = self._base_labels(ROLE_CONTAINER, full_name, uid)
        labels.update(
            {
                convert.CONTAINER_NAME: name,
                convert.SPEC_HASH: spec_hash,
                convert.IMAGE: container.image,
                convert.SANDBOX: sandbox.id,
            }
        )
        docker_name = convert.docker_name(name, spec_hash, full_name, uid)
        try:
            if container.privileged and not self.allow_privileged:
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"container {name!r} asks to run privileged, which this node does not"
                    " allow ([runtime_docker] allow_privileged)",
                )
            policy = _pull_policy(container.image, container.image_pull_policy)
            binds = await trio.to_thread.run_sync(self._binds, pod, container)
            if policy == PULL_ALWAYS:
                await self._ensure_image(container.image, policy)
        except ContainerError as err:
            if err.reason != UNAVAILABLE:  # the node's trouble, not the container's
                with trio.CancelScope(shield=True):
                    await self._placeholder(infra, labels, docker_name, err)
            raise
        api = await self._client()
        for attempt in (1, 2):
            with trio.CancelScope(shield=True):
                # Shielded: whatever is created is started (or recorded as failed) before
                # a cancellation can land.
                data, error = await self._call(
                    self._create_and_start_sync, api, pod, container, labels, docker_name,
                    binds,
                )
            if data is not None or error != _IMAGE_MISSING or attempt == 2:
                break
            # Only now is the image looked up (as ``docker run`` does): present images
            # cost no extra round trip.
            try:
                await self._ensure_image(container.image, policy)
            except ContainerError as err:
                if err.reason != UNAVAILABLE:
                    with trio.CancelScope(shield=True):
                        await self._placeholder(infra, labels, docker_name, err)
                raise
        if error == _IMAGE_MISSING:
            error = f"image {container.image!r} vanished while the container was created"
        if data is None:
            failure = ContainerError(Reason.CANNOT_RUN, error)
            with trio.CancelScope(shield=True):
                await self._placeholder(infra, labels, docker_name, failure)
            log.warning("container cannot be created", pod=full_name, container=name, error=error)
            raise failure
        info = convert.container_info(data)
        if error and info.state is not ContainerState.RUNNING:
            log.warning("container cannot run", pod=full_name, container=name, error=info.message)
            raise ContainerError(info.reason or Reason.CANNOT_RUN, info.message)
        log.info("container started", pod=full_name, container=name, id=info.id)
        return info

    def _create_and_start_sync(
        self,
        api: Any,
        pod: BoundPod,
        container: Container,
        labels: dict[str, str],
        docker_name: str,
        binds: list[str],
    ) -> tuple[dict[str, Any] | None, str]:
        """``(inspect document, "")`` once started; ``(document, error)`` when Docker
        created the container but could not start it; ``(None, message)`` when it could
        not even create it (bad memory limit, bad bind...)."""
        sandbox_id = labels[convert.SANDBOX]
        host_config = api.create_host_config(
            network_mode=f"container:{sandbox_id}",
            binds=binds or None,
            mem_limit=container.memory if container.memory > 0 else None,
            cpu_shares=cpu_shares(container.cpu),
            privileged=bool(container.privileged and self.allow_privileged),
        )
        env = [f"{var.name}={var.value}" for var in container.env if var.name]
        try:
            created = api.create_container(
                container.image,
                command=list(container.command) or None,
                environment=env or None,
                working_dir=container.working_dir or None,
                labels=labels,
                host_config=host_config,
                name=docker_name,
            )
        except ImageNotFound:
            return None, _IMAGE_MISSING
        except APIError as exc:
            return None, (
                f"cannot create container {container.name!r} from image"
                f" {container.image!r}: {exc.explanation or exc}"
            )
        cid: str = created["Id"]
        self._starting.add(cid)
        try:
            error = ""
            try:
                api.start(cid)
            except APIError as exc:
                error = str(exc.explanation or exc) or "start failed"
            data: dict[str, Any] = api.inspect_container(cid)
        finally:
            self._starting.discard(cid)
        if convert.is_running(data):
            # The next list needs no inspect of it (see _list_containers_sync).
            with self._cache_lock:
                self._cache[cid] = ("running", convert.container_info(data))
        return data, error

    async def _placeholder(
        self, infra: Mapping[str, Any], labels: dict[str, str], name: str, err: ContainerError
    ) -> None:
        """Record a container that could not be created as a never-started container
        labelled with the failure, so it lists as ``EXITED`` with reason and message."""
        api = await self._client()
        marked = {
            **labels,
            convert.FAILED_REASON: err.reason,
            convert.FAILED_MESSAGE: err.message[:4000],
        }

        def create() -> None:
            api.create_container(
                infra["Image"],  # present: the sandbox runs it
                command=["kubecore-not-started"],
                entrypoint=[],
                labels=marked,
                host_config=api.create_host_config(network_mode="none"),
                name=name,
            )

        try:
            await self._call(create)
        except (APIError, ContainerError) as exc:
            log.warning("cannot record a failed container", name=name, error=str(exc))

    def _binds(self, pod: BoundPod, container: Container) -> list[str]:
        """Docker binds (``host:container:ro|rw``) of the container's volume mounts; makes
        the emptyDir directories. Blocks (file system)."""
        volumes = {volume.name: volume for volume in pod.spec.volumes}
        binds: list[str] = []
        for mount in container.volume_mounts:
            target = mount.mount_path or mount.path
            volume = volumes.get(mount.name)
            if volume is None:
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"container {container.name!r} mounts volume {mount.name!r}, which the"
                    " pod does not have",
                )
            source = volume.source
            if source is not None and source.host_dir is not None:
                host = source.host_dir.path
            elif source is None or source.empty_dir is not None:
                path = self._pod_dir(pod.uid) / "volumes" / volume.name
                try:
                    path.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ContainerError(
                        Reason.CANNOT_RUN, f"cannot make emptyDir volume {volume.name!r}: {exc}"
                    ) from None
                host = str(path)
            else:
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"volume {volume.name!r}: only emptyDir and hostDir volumes are supported"
                    " by the docker runtime",
                )
            if not host.startswith("/") or not target.startswith("/"):
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"volume {volume.name!r}: host path {host!r} and mount path {target!r}"
                    " must be absolute",
                )
            if ":" in host or ":" in target:
                raise ContainerError(
                    Reason.CANNOT_RUN,
                    f"volume {volume.name!r}: paths with ':' cannot be mounted ({host!r},"
                    f" {target!r})",
                )
            binds.append(f"{host}:{target}:{'ro' if mount.read_only else 'rw'}")
        return binds

    # -- images ------------------------------------------------------------------------

    async def _ensure_image(self, image: str, policy: str, *, infra: bool = False) -> None:
        """Make ``image`` present per ``policy`` or raise :class:`ContainerError`
        (``ImageNotFound`` / ``ImagePullFailed``, the message naming the image)."""
        what = "infra image" if infra else "image"
        hint = (
            "; build or import it on this node (see the runtime_docker README), or set"
            " [runtime_docker] infra_image"
            if infra
            else "; with no registry, build, load or import it on this node"
        )
        policy = _pull_policy(image, policy, what)
        api = await self._client()
        lock = self._image_locks.setdefault(image, trio.Lock())
        async with lock:
            present = await self._call(image_present, api, image)
            if policy == PULL_NEVER or (present and policy == PULL_IF_NOT_PRESENT):
                if present:
                    return
                raise ContainerError(
                    IMAGE_NOT_FOUND,
                    f"{what} {image!r} is not present on this node and its pull policy is"
                    f" {PULL_NEVER}{hint}",
                )
            await self._pull(image, what, hint)
            if not await self._call(image_present, api, image):
                raise ContainerError(
                    IMAGE_NOT_FOUND, f"{what} {image!r} is still missing after a pull{hint}"
                )

    async def _pull(self, image: str, what: str, hint: str) -> None:
        """Pull ``image`` within ``pull_timeout`` seconds. The pull runs on a client of its
        own whose read timeout is the same, so an abandoned pull's thread ends too."""
        log.info("pulling image", image=image)
        version = (await self._client()).api_version

        def pull() -> None:
            api = docker.APIClient(
                **self._arguments, version=version, timeout=self.pull_timeout
            )
            try:
                for event in api.pull(image, stream=True, decode=True):
                    if isinstance(event, dict) and event.get("error"):
                        raise _PullError(str(event["error"]))
            finally:
                api.close()

        started = time.monotonic()
        try:
            with trio.fail_after(self.pull_timeout):
                await trio.to_thread.run_sync(
                    pull, limiter=self._pull_limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError:
            raise ContainerError(
                IMAGE_PULL_FAILED,
                f"{what} {image!r} is not present on this node and pulling it did not"
                f" finish within {self.pull_timeout:g}s{hint}",
            ) from None
        except (DockerException, OSError, _PullError) as exc:
            detail = str(exc.explanation or exc) if isinstance(exc, APIError) else str(exc)
            not_found = isinstance(exc, NotFound) or any(
                words in detail.lower() for words in _PULL_NOT_FOUND
            )
            raise ContainerError(
                IMAGE_NOT_FOUND if not_found else IMAGE_PULL_FAILED,
                f"{what} {image!r} is not present on this node and pulling it failed:"
                f" {detail}{hint}",
            ) from None
        log.info("pulled image", image=image, seconds=round(time.monotonic() - started, 3))

    # -- stop, remove ------------------------------------------------------------------

    @_contained
    async def stop_container(self, container_id: str, grace_period: float) -> None:
        """``docker stop``: the image's stop signal (SIGTERM), then SIGKILL after the grace
        period, which Docker counts in whole seconds (rounded up)."""
        data = await self._inspect(container_id)
        if data is not None and convert.is_running(data):
            await self._stop(container_id, grace_period)

    async def _stop(self, cid: str, grace_period: float) -> None:
        api = await self._client()
        seconds = max(0, math.ceil(grace_period))
        try:
            await self._call(api.stop, cid, timeout=seconds, slow=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code != 304:  # 304: it was not running
                raise ContainerError(
                    Reason.ERROR, f"cannot stop container {cid}: {exc.explanation or exc}"
                ) from None

    @_contained
    async def remove_container(self, container_id: str) -> None:
        data = await self._inspect(container_id)
        if data is None:
            return
        if convert.is_running(data):
            raise ContainerError(
                Reason.RUNNING, f"container {container_id!r} is running; stop it first"
            )
        api = await self._client()
        try:
            await self._call(api.remove_container, container_id, v=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code == 409:
                raise ContainerError(
                    Reason.RUNNING, f"container {container_id!r} is running; stop it first"
                ) from None
            raise ContainerError(
                Reason.ERROR, f"cannot remove container {container_id}: {exc.explanation}"
            ) from None
        with self._cache_lock:
            self._cache.pop(container_id, None)

    # -- logs, stats -------------------------------------------------------------------

    @_contained
    async def container_logs(self, container_id: str, tail: int | None = None) -> bytes:
        """stdout and stderr as Docker's log driver stored them. Docker reads the two
        streams through separate pipes: lines written to both within a moment of each
        other may come out in either order."""
        await self._container(container_id)
        if tail is not None and tail <= 0:
            return b""
        api = await self._client()
        try:
            logs: bytes = await self._call(
                api.logs,
                container_id,
                stdout=True,
                stderr=True,
                tail="all" if tail is None else tail,
            )
        except NotFound:
            raise ContainerError(
                Reason.NOT_FOUND, f"no container {container_id!r} on this node"
            ) from None
        except APIError as exc:
            raise ContainerError(
                LOGS_UNAVAILABLE,
                f"cannot read the logs of container {container_id}: {exc.explanation or exc}",
            ) from None
        return logs

    @_contained
    async def container_stats(self, container_id: str) -> ContainerStats:
        """One-shot ``docker stats``: CPU time, resident memory (``rss``, else usage less
        page cache) and its limit; network counters of the pod's namespace (from the
        infra container); the writable layer's size. ``extra`` holds the cgroup's whole
        memory usage, page cache and process count."""
        data = await self._container(container_id)
        if not convert.is_running(data):
            raise ContainerError(
                Reason.NOT_RUNNING, f"container {container_id!r} is not running"
            )
        sandbox_id = convert.labels_of(data).get(convert.SANDBOX, "")
        api = await self._client()
        results: dict[str, Any] = {}
        # One-shot stats (API 1.41) skip the wait for a second sample.
        one_shot = True if docker.utils.version_gte(api.api_version, "1.41") else None

        async def fetch(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            try:
                results[key] = await self._call(fn, *args, **kwargs)
            except APIError:
                results[key] = None

        # Docker answers one-shot stats at its next sampling tick (up to a second): ask
        # for all three at once.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    fetch, "own", api.stats, container_id, stream=False, one_shot=one_shot
                )
            )
            if convert.is_container_id(sandbox_id):
                nursery.start_soon(
                    functools.partial(
                        fetch, "net", api.stats, sandbox_id, stream=False, one_shot=one_shot
                    )
                )
            nursery.start_soon(
                functools.partial(
                    fetch, "size", api.containers, all=True, size=True,
                    filters={"id": container_id},
                )
            )
        own = results.get("own")
        if not own or not own.get("read") or own["read"].startswith("0001-01-01"):
            raise ContainerError(
                Reason.NOT_RUNNING, f"container {container_id!r} is not running"
            )
        return stats_from(own, results.get("net"), results.get("size"))

    # -- exec --------------------------------------------------------------------------

    @_contained
    async def exec_in_container(
        self,
        container_id: str,
        command: Sequence[str],
        timeout: float,  # noqa: ASYNC109 (the Runtime contract)
    ) -> tuple[int, bytes]:
        """``docker exec`` with the container's environment and working directory; output
        is stdout and stderr as Docker delivers them (see :meth:`container_logs` on their
        order), the first MiB kept. On timeout or cancellation the command's processes
        are killed: from the host when its ``/proc`` shows them in the container's cgroup,
        else by ``kill -KILL`` run inside the container."""
        data = await self._container(container_id)
        if not convert.is_running(data):
            raise ContainerError(
                Reason.NOT_RUNNING, f"container {container_id!r} is not running"
            )
        argv = list(command)
        if not argv:
            raise ContainerError(Reason.EXEC_FAILED, "exec needs a command")
        api = await self._client()
        try:
            created = await self._call(api.exec_create, container_id, argv)
        except NotFound:
            raise ContainerError(
                Reason.NOT_FOUND, f"no container {container_id!r} on this node"
            ) from None
        except APIError as exc:
            reason = Reason.NOT_RUNNING if exc.status_code == 409 else Reason.EXEC_FAILED
            raise ContainerError(
                reason, f"cannot exec {shlex.join(argv)!r}: {exc.explanation or exc}"
            ) from None
        exec_id: str = created["Id"]
        streamer = await self._exec_client()
        try:
            stream = await self._call(streamer.exec_start, exec_id, stream=True)
        except APIError as exc:
            raise ContainerError(
                Reason.EXEC_FAILED, f"cannot exec {shlex.join(argv)!r}: {exc.explanation or exc}"
            ) from None
        output = bytearray()

        def read() -> None:
            for chunk in stream:
                output.extend(chunk[: max(0, EXEC_OUTPUT_LIMIT - len(output))])

        finished = False
        try:
            with trio.move_on_after(max(timeout, 0.0)):
                await trio.to_thread.run_sync(
                    read, limiter=self._slow_limiter, abandon_on_cancel=True
                )
                finished = True
        finally:
            if not finished:
                with trio.CancelScope(shield=True):
                    await self._call(self._kill_exec_sync, api, exec_id, container_id)
            # Ends the reading thread; streams over SSH cannot be closed this way.
            with contextlib.suppress(DockerException, OSError):
                stream.close()
        if not finished:
            raise ContainerError(
                Reason.EXEC_TIMEOUT,
                f"{shlex.join(argv)!r} still ran after {timeout:g}s and was killed",
            )
        code = await self._exec_exit_code(api, exec_id)
        if code in (126, 127) and output.startswith(_EXEC_START_FAILED):
            raise ContainerError(
                Reason.EXEC_FAILED,
                f"cannot exec {shlex.join(argv)!r}: {output.decode(errors='replace').strip()}",
            )
        return code, bytes(output)

    async def _exec_exit_code(self, api: Any, exec_id: str) -> int:
        """The exit code of a finished exec (it shows a moment after its stream ends)."""
        with trio.move_on_after(EXEC_EXIT_WAIT):
            while True:
                info = await self._call(api.exec_inspect, exec_id)
                if not info.get("Running") and info.get("ExitCode") is not None:
                    code: int = info["ExitCode"]
                    return code
                await trio.sleep(0.01)
        raise ContainerError(
            Reason.EXEC_FAILED, f"exec {exec_id} gave no exit code within {EXEC_EXIT_WAIT:g}s"
        )

    def _kill_exec_sync(self, api: Any, exec_id: str, container_id: str) -> None:
        """SIGKILL an exec's process tree. Docker's exec API cannot stop a command."""
        try:
            info = api.exec_inspect(exec_id)
        except APIError:
            return
        pid = info.get("Pid") or 0
        if not info.get("Running") or pid <= 0:
            return
        if not in_container(pid, container_id):
            # This host's /proc does not show it (a remote daemon): nothing safe to kill.
            log.warning("cannot kill a timed-out exec", container=container_id, exec=exec_id)
            return
        try:
            for member in process_tree(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
            return
        except PermissionError:
            pass  # the daemon's processes are not ours to signal: kill it from inside
        inner = namespace_pid(pid)
        if inner is None:
            log.warning("cannot kill a timed-out exec", container=container_id, exec=exec_id)
            return
        with contextlib.suppress(APIError):
            killer = api.exec_create(container_id, ["kill", "-KILL", str(inner)])
            api.exec_start(killer["Id"])

    # -- closing -----------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        clients = [c for c in (self._api, self._exec_api) if c is not None]
        self._api = self._exec_api = None
        with trio.CancelScope(shield=True):
            for client in clients:
                await trio.to_thread.run_sync(client.close)


class _PullError(Exception):
    """An error event in a pull's progress stream."""


class _NoImage(Exception):
    """The daemon could not create a container: its image is not present."""


#: What ``_create_and_start_sync`` says when the daemon lacks the image.
_IMAGE_MISSING: Final = "\0image missing"


def _pull_policy(image: str, policy: str, what: str = "image") -> str:
    """``policy`` defaulted (``PullIfNotPresent``); :class:`ContainerError` for an
    empty image or an unknown policy."""
    if not image:
        raise ContainerError(Reason.CANNOT_RUN, f"no {what} given")
    policy = policy or PULL_IF_NOT_PRESENT
    if policy not in (PULL_ALWAYS, PULL_NEVER, PULL_IF_NOT_PRESENT):
        raise ContainerError(
            Reason.CANNOT_RUN, f"unknown imagePullPolicy {policy!r} for {what} {image!r}"
        )
    return policy


def image_present(api: Any, image: str) -> bool:
    try:
        api.inspect_image(image)
    except NotFound:
        return False
    return True


def cpu_shares(milli_cpu: int) -> int | None:
    """Docker CPU shares for ``cpu`` milli-cores, as Kubernetes v0.5 computes them:
    ``cpu * 1024 / 1000``, at least 2; 0 means unset."""
    if milli_cpu <= 0:
        return None
    return max(2, milli_cpu * 1024 // 1000)


def stats_from(
    own: Mapping[str, Any], net: Mapping[str, Any] | None, size: Sequence[Any] | None
) -> ContainerStats:
    """:class:`ContainerStats` of Docker stats documents (cgroup v1 or v2)."""
    cpu = int(((own.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
    memory: Mapping[str, Any] = own.get("memory_stats") or {}
    detail: Mapping[str, Any] = memory.get("stats") or {}
    usage = int(memory.get("usage") or 0)
    cache = int(detail.get("total_cache", detail.get("cache", detail.get("file", 0))) or 0)
    rss = detail.get("total_rss", detail.get("rss", detail.get("anon")))
    resident = int(rss) if rss is not None else max(0, usage - cache)
    rx = tx = 0
    for counters in ((net or {}).get("networks") or {}).values():
        rx += int(counters.get("rx_bytes") or 0)
        tx += int(counters.get("tx_bytes") or 0)
    writable = 0
    if size:
        writable = int(size[0].get("SizeRw") or 0)
    extra = {
        "memory_cgroup_usage_bytes": usage,
        "memory_cache_bytes": cache,
        "processes": int((own.get("pids_stats") or {}).get("current") or 0),
    }
    return ContainerStats(
        timestamp=convert.parse_time(own.get("read")) or time.time(),
        cpu_usage_ns=cpu,
        memory_usage_bytes=resident,
        memory_limit_bytes=int(memory.get("limit") or 0),
        network_rx_bytes=rx,
        network_tx_bytes=tx,
        filesystem_usage_bytes=writable,
        extra=extra,
    )


# -- host /proc, for killing a timed-out exec --------------------------------------------


def in_container(pid: int, container_id: str) -> bool:
    """Whether host process ``pid`` lives in the container's cgroup. False when this
    host's ``/proc`` does not show it (a remote daemon), so no stranger is ever hit."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return container_id in f.read()
    except OSError:
        return False


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first (``/proc/<pid>/task/*/children``)."""
    tree = [pid]
    index = 0
    while index < len(tree):
        current = tree[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    tree.extend(int(child) for child in f.read().split())
    return tree


def namespace_pid(pid: int) -> int | None:
    """The pid of host process ``pid`` inside its own pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


__all__ = [
    "DEFAULT_HOST_IP",
    "DEFAULT_INFRA_IMAGE",
    "DockerRuntime",
    "client_arguments",
    "cpu_shares",
    "ping",
    "stats_from",
]
