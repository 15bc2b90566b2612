"""Pure translations between kubecore's objects and Docker's: container names, labels,
port specs, timestamps, and ``docker inspect`` documents to runtime infos.

Nothing here talks to the daemon, so all of it is testable without one.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import signal
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypedDict

from kubecore.runtime import (
    ContainerError,
    ContainerInfo,
    ContainerState,
    PortMapping,
    SandboxInfo,
)
from kubecore.runtime import ContainerReason as Reason

if TYPE_CHECKING:
    from kubecore.api import BoundPod

# -- labels ------------------------------------------------------------------------------
# Every container the runtime makes carries these; they, not the names, are the truth a
# later runtime instance reads back.

#: "1" on everything this runtime manages.
MANAGED: Final = "kubecore.managed"
#: The node (kubelet) the container belongs to: several kubelets may share one daemon.
NODE: Final = "kubecore.node"
#: ``sandbox`` (the pod's infra container) or ``container`` (one of the pod's own).
ROLE: Final = "kubecore.role"
POD_FULL_NAME: Final = "kubecore.pod.full-name"
POD_UID: Final = "kubecore.pod.uid"
CONTAINER_NAME: Final = "kubecore.container.name"
SPEC_HASH: Final = "kubecore.container.hash"
#: The image as the pod names it (Docker's own Config.Image may be a resolved id).
IMAGE: Final = "kubecore.container.image"
#: On a pod's container: the id of the sandbox it was started in.
SANDBOX: Final = "kubecore.sandbox"
#: On a sandbox: JSON list of the pod's port specs (see :func:`pod_port_specs`).
PORTS: Final = "kubecore.sandbox.ports"
#: On a placeholder for a container that could not even be created (missing image...).
FAILED_REASON: Final = "kubecore.failed.reason"
FAILED_MESSAGE: Final = "kubecore.failed.message"

ROLE_SANDBOX: Final = "sandbox"
ROLE_CONTAINER: Final = "container"

# -- reasons beyond the contract's own ---------------------------------------------------

#: The image is not on the node and could not be found (PullNever, or the registry
#: says it does not exist).
IMAGE_NOT_FOUND: Final = "ImageNotFound"
#: The image is not on the node and pulling it failed (no registry answers, timeout).
IMAGE_PULL_FAILED: Final = "ImagePullFailed"
#: The container was killed for exceeding its memory limit.
OOM_KILLED: Final = "OOMKilled"
#: The Docker daemon does not answer.
UNAVAILABLE: Final = "RuntimeUnavailable"
#: The Docker daemon refused a request for a reason of its own.
DOCKER_ERROR: Final = "DockerError"
#: Docker cannot give the container's logs (a log driver without read support).
LOGS_UNAVAILABLE: Final = "LogsUnavailable"

_ID = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_HOSTNAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
_PROTOCOLS = ("TCP", "UDP")
#: Docker's own wording around the interesting part of a start error.
_START_ERROR_PREFIX = re.compile(
    r"^.*?(?:unable to start container process|starting container process caused): "
)


def is_container_id(value: str) -> bool:
    """Whether ``value`` is a full Docker id, the only form of id this runtime hands out
    (prefixes and names are never accepted, so no other container can be named)."""
    return bool(_ID.fullmatch(value))


def check_container_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ContainerError(
            Reason.INVALID, f"container name {name!r} is not a DNS label (RFC 1035)"
        )
    return name


def check_pod_uid(uid: str) -> str:
    if not uid or not uid.isprintable():
        raise ContainerError(Reason.INVALID, f"pod uid {uid!r} is empty or not printable")
    return uid


def _name_part(value: str, limit: int) -> str:
    return _NAME_UNSAFE.sub("-", value).strip(".-")[:limit] or "x"


def docker_name(container: str, spec_hash: str, pod_full_name: str, pod_uid: str) -> str:
    """``k8s_<container>.<hash>_<podFullName>_<podUid>_<8 random hex>`` as Kubernetes v0.5
    names them, each part cut to Docker's name rules (``[A-Za-z0-9][A-Za-z0-9_.-]+``:
    anything else becomes ``-``, so ``_`` only ever separates parts). Informative only:
    the labels carry the same facts exactly."""
    return "_".join(
        (
            "k8s",
            f"{_name_part(container, 63)}.{_name_part(spec_hash, 40)}",
            _name_part(pod_full_name, 120),
            _name_part(pod_uid, 64),
            secrets.token_hex(4),
        )
    )


def hostname(pod_id: str) -> str:
    """The pod's hostname: its id, lower-cased and cut to Linux's 63 characters."""
    return _HOSTNAME_UNSAFE.sub("-", pod_id.lower()).strip(".-")[:63].strip(".-") or "pod"


def selector(node: str, role: str, **more: str) -> list[str]:
    """A ``label`` filter for ``docker ps`` matching one node's containers of a role."""
    pairs = {MANAGED: "1", NODE: node, ROLE: role}
    keys = {"pod_uid": POD_UID, "sandbox": SANDBOX}
    for key, value in more.items():
        pairs[keys[key]] = value
    return [f"{k}={v}" for k, v in pairs.items()]


# -- ports -------------------------------------------------------------------------------


class PortSpec(TypedDict):
    """One container port of a pod, as stored in the sandbox's :data:`PORTS` label."""

    name: str
    containerPort: int
    hostPort: int
    protocol: str
    hostIP: str


def pod_port_specs(pod: BoundPod, default_ip: str) -> list[PortSpec]:
    """Every container port of the pod, in the order the pod lists them."""
    specs: list[PortSpec] = []
    for container in pod.spec.containers:
        for port in container.ports:
            protocol = (port.protocol or "TCP").upper()
            if protocol not in _PROTOCOLS:
                raise ContainerError(
                    Reason.INVALID,
                    f"container {container.name!r}: port {port.container_port} has protocol"
                    f" {port.protocol!r}; only TCP and UDP can be published",
                )
            if not 0 < port.container_port < 65536 or not 0 <= port.host_port < 65536:
                raise ContainerError(
                    Reason.INVALID,
                    f"container {container.name!r}: port {port.container_port} (hostPort"
                    f" {port.host_port}) is out of range",
                )
            specs.append(
                PortSpec(
                    name=port.name,
                    containerPort=port.container_port,
                    hostPort=port.host_port,
                    protocol=protocol,
                    hostIP=port.host_ip or default_ip,
                )
            )
    return specs


def port_key(spec: PortSpec) -> str:
    return f"{spec['containerPort']}/{spec['protocol'].lower()}"


def port_bindings(specs: Sequence[PortSpec]) -> dict[str, list[tuple[str, int | None]]]:
    """Docker's ``PortBindings``: each port on its host IP, at its hostPort or (``None``)
    at a free port the daemon picks."""
    bindings: dict[str, list[tuple[str, int | None]]] = {}
    for spec in specs:
        bindings.setdefault(port_key(spec), []).append(
            (spec["hostIP"], spec["hostPort"] or None)
        )
    return bindings


def _mappings(specs: Sequence[PortSpec], published: Mapping[str, Any] | None) -> list[PortMapping]:
    """Pair each spec with the host address Docker actually bound for it. Fixed host
    ports take their own binding; the others take the remaining ones in order. A port
    not (or no longer) bound reports its spec's host port (0 when Docker would pick)."""
    free: dict[str, list[Mapping[str, str]]] = {
        key: list(bound or []) for key, bound in (published or {}).items()
    }
    chosen: list[Mapping[str, str] | None] = [None] * len(specs)
    for fixed in (True, False):
        for i, spec in enumerate(specs):
            if bool(spec["hostPort"]) is not fixed:
                continue
            candidates = free.get(port_key(spec), [])
            for binding in candidates:
                if not fixed or binding.get("HostPort") == str(spec["hostPort"]):
                    chosen[i] = binding
                    candidates.remove(binding)
                    break
    result: list[PortMapping] = []
    for spec, found in zip(specs, chosen, strict=True):
        host_port = spec["hostPort"]
        host_ip = spec["hostIP"]
        if found is not None:
            host_port = int(found.get("HostPort") or host_port)
            host_ip = found.get("HostIp") or host_ip
        result.append(
            PortMapping(
                container_port=spec["containerPort"],
                host_port=host_port,
                host_ip=host_ip,
                protocol=spec["protocol"],
                name=spec["name"],
            )
        )
    return result


# -- times and exits ---------------------------------------------------------------------


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of a Docker RFC 3339 timestamp (nanoseconds allowed);
    ``None`` for Docker's zero time ``0001-01-01T00:00:00Z`` and anything unreadable."""
    if not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    match = _TIME.fullmatch(value)
    if match is None:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    seconds = datetime.fromisoformat(match[1] + zone).timestamp()
    return seconds + (float(f"0.{match[2]}") if match[2] else 0.0)


def exit_message(code: int) -> str:
    """People's words for a non-zero exit code; above 128 Docker means ``128 + signal``."""
    if code > 128:
        try:
            return f"exited with code {code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exited with code {code}"


def command_of(data: Mapping[str, Any]) -> list[str]:
    """The argv Docker runs for an inspected container: entrypoint, then command."""
    config = data.get("Config") or {}
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def cannot_run_message(argv: Sequence[str], image: str, error: str) -> str:
    detail = _START_ERROR_PREFIX.sub("", error.strip())
    detail = detail.removesuffix(": unknown")
    what = repr(shlex.join(argv)) if argv else "the image's default command"
    return f"cannot run {what} (image {image!r}): {detail}"


# -- inspect documents -> infos ------------------------------------------------------------


def labels_of(data: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = (data.get("Config") or {}).get("Labels") or {}
    return labels


def is_running(data: Mapping[str, Any]) -> bool:
    return bool((data.get("State") or {}).get("Running"))


def container_info(data: Mapping[str, Any], *, starting: bool = False) -> ContainerInfo:
    """The :class:`ContainerInfo` of an inspected container.

    A container Docker created but never started is ``WAITING`` while this runtime is
    starting it (``starting``); otherwise it is ``EXITED`` with ``ContainerCannotRun``
    (Docker's start error, or a runtime that stopped between create and start), or with
    the reason of the placeholder it is (see :data:`FAILED_REASON`).
    """
    labels = labels_of(data)
    state: Mapping[str, Any] = data.get("State") or {}
    created = parse_time(data.get("Created")) or 0.0
    image = labels.get(IMAGE) or (data.get("Config") or {}).get("Image", "")
    base: dict[str, Any] = {
        "id": data["Id"],
        "pod_full_name": labels.get(POD_FULL_NAME, ""),
        "pod_uid": labels.get(POD_UID, ""),
        "name": labels.get(CONTAINER_NAME, ""),
        "spec_hash": labels.get(SPEC_HASH, ""),
        "image": image,
        "created_at": created,
    }
    started = parse_time(state.get("StartedAt"))
    if state.get("Running"):
        return ContainerInfo(**base, state=ContainerState.RUNNING, started_at=started)
    failed = labels.get(FAILED_REASON)
    if failed:
        return ContainerInfo(
            **base,
            state=ContainerState.EXITED,
            finished_at=created,
            reason=failed,
            message=labels.get(FAILED_MESSAGE, ""),
        )
    code = state.get("ExitCode")
    if state.get("Status") == "created":
        error = state.get("Error") or ""
        if not error and starting:
            return ContainerInfo(**base, state=ContainerState.WAITING)
        message = (
            cannot_run_message(command_of(data), image, error)
            if error
            else "created but never started: the runtime stopped before starting it"
        )
        return ContainerInfo(
            **base,
            state=ContainerState.EXITED,
            finished_at=created,
            exit_code=code or None,
            reason=Reason.CANNOT_RUN,
            message=message,
        )
    finished = parse_time(state.get("FinishedAt")) or started or created
    if started is not None and finished < started:
        # Docker may stamp a process that exits at once as finished a moment before it
        # stamps it started; the contract says a container ends after it starts.
        finished = started
    if state.get("OOMKilled"):
        reason = OOM_KILLED
        message = f"killed for exceeding its memory limit ({exit_message(code or 137)})"
    elif code == 0:
        reason, message = Reason.COMPLETED, ""
    else:
        reason, message = Reason.ERROR, exit_message(code or 0)
    return ContainerInfo(
        **base,
        state=ContainerState.EXITED,
        started_at=started,
        finished_at=finished,
        exit_code=code if isinstance(code, int) else None,
        reason=reason,
        message=message,
    )


def sandbox_info(data: Mapping[str, Any], default_ip: str) -> SandboxInfo:
    """The :class:`SandboxInfo` of an inspected infra container; ``ports`` pair the pod's
    port specs with the addresses Docker bound for them."""
    labels = labels_of(data)
    try:
        specs: list[PortSpec] = json.loads(labels.get(PORTS) or "[]")
    except ValueError:
        specs = []
    running = is_running(data)
    published = (data.get("NetworkSettings") or {}).get("Ports") if running else None
    return SandboxInfo(
        id=data["Id"],
        pod_full_name=labels.get(POD_FULL_NAME, ""),
        pod_uid=labels.get(POD_UID, ""),
        ready=running,
        ip=default_ip,
        ports=_mappings(specs, published),
        created_at=parse_time(data.get("Created")) or 0.0,
    )
