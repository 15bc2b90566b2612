"""runtime_docker: pods as Docker containers, through the Docker Engine API.

Its ``kubecore_runtime`` hook is asked first and answers only when a Docker daemon
answers a ping; otherwise it declines, and the exec runtime answers. See
:mod:`kubecore_runtime_docker.runtime` for what it does and ``README.md`` for setup.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore.log import get_logger
from kubecore_runtime_docker.runtime import (
    DEFAULT_HOST_IP,
    DEFAULT_INFRA_IMAGE,
    DockerRuntime,
    client_arguments,
    ping,
)

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = [
    "DockerRuntime",
    "DockerRuntimeConfig",
    "kubecore_config_section",
    "kubecore_runtime",
]

log = get_logger("kubecore.runtime_docker")


class DockerRuntimeConfig(SectionModel):
    """``[runtime_docker]``: which daemon, the infra image, volumes and limits."""

    endpoint: str | None = Field(
        default=None,
        description="Docker Engine API address (unix:///var/run/docker.sock,"
        " tcp://host:2376); unset = DOCKER_HOST (with DOCKER_TLS_VERIFY and"
        " DOCKER_CERT_PATH), else the local socket",
    )
    infra_image: str = Field(
        default=DEFAULT_INFRA_IMAGE,
        description="image of each pod's infra container, which holds the pod's network"
        " namespace and published ports. Pulled once if absent; on a node without a"
        " registry it must be built or imported locally (see README)",
    )
    without_infra_image: Literal["decline", "use"] = Field(
        default="decline",
        description="when infra_image is not on the node: decline (another runtime such"
        " as runtime_exec answers) or use Docker anyway (pods wait until the image is"
        " pulled, built or imported)",
    )
    infra_command: list[str] = Field(
        default=[],  # pydantic copies it per instance
        description="command of the infra container; empty = the image's own. It must"
        " run until killed (for a busybox image: [\"sleep\", \"2147483647\"])",
    )
    root: Path | None = Field(
        default=None,
        description="emptyDir volumes live under <root>/pods/<pod uid>/volumes/; unset ="
        " <data_dir>/docker. The daemon must see the same path (a local daemon)",
    )
    labels: dict[str, str] = Field(
        default={},
        description="extra labels put on every container this runtime makes",
    )
    node: str | None = Field(
        default=None,
        description="the value of the kubecore.node label that scopes this runtime's"
        " containers, so kubelets sharing one daemon keep apart; unset = the node's"
        " hostname",
    )
    host_ip: str = Field(
        default=DEFAULT_HOST_IP,
        description="address container ports are published on (a port's own hostIP"
        " wins); 0.0.0.0 publishes on every interface",
    )
    network: str = Field(
        default="bridge", description="Docker network of the infra containers"
    )
    allow_privileged: bool = Field(
        default=False, description="whether containers may ask to run privileged"
    )
    infra_stop_grace: float = Field(
        default=0.0,
        ge=0,
        description="seconds an infra container gets between SIGTERM and SIGKILL when its"
        " sandbox stops (its pod's containers get the grace the kubelet gives)",
    )
    ping_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds the daemon has to answer at start-up before this runtime"
        " declines (and the exec runtime answers instead)",
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds per Docker API request")
    pull_timeout: float = Field(
        default=60.0, gt=0, description="seconds an image pull may take before it fails"
    )
    max_threads: int = Field(
        default=16, ge=1, description="worker threads for concurrent Docker API calls"
    )


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection(
        "runtime_docker", DockerRuntimeConfig, "pods as Docker containers (Docker Engine API)"
    )


@hookimpl(tryfirst=True)
def kubecore_runtime(ctx: Context) -> DockerRuntime | None:
    """The Docker runtime on a node whose daemon answers a ping within ``ping_timeout``;
    ``None`` (decline) otherwise, on a master-only run, and (by default) when the infra
    image is missing. Blocks for the probe (once, at start-up; a hook is not a coroutine)."""
    if not ctx.runs("node"):
        return None
    cfg = ctx.config(DockerRuntimeConfig)
    answer = ping(cfg.endpoint, cfg.ping_timeout, cfg.infra_image)
    where = client_arguments(cfg.endpoint).get("base_url", "")
    if answer is None:
        log.info("no Docker daemon answers; declining", endpoint=where)
        return None
    version, infra_present = answer
    if not infra_present and cfg.without_infra_image == "decline":
        # A daemon with no infra image cannot run a single pod; a runtime that can is
        # the better default than pods that wait forever.
        log.warning(
            "the infra image is not on this node; declining (build or import it, see the"
            " runtime_docker README, or set runtime_docker.without_infra_image = \"use\")",
            infra_image=cfg.infra_image,
        )
        return None
    log.info("using the Docker daemon", endpoint=where, api_version=version)
    if not infra_present:
        log.warning(
            "the infra image is not on this node: pods cannot start until it is pulled,"
            " built or imported (see the runtime_docker README) or infra_image is changed",
            infra_image=cfg.infra_image,
        )
    return DockerRuntime(
        node=cfg.node or ctx.hostname,
        root=(cfg.root or ctx.data_dir / "docker").expanduser(),
        endpoint=cfg.endpoint,
        infra_image=cfg.infra_image,
        infra_command=cfg.infra_command,
        labels=cfg.labels,
        allow_privileged=cfg.allow_privileged,
        host_ip=cfg.host_ip,
        network=cfg.network,
        infra_stop_grace=cfg.infra_stop_grace,
        timeout=cfg.timeout,
        pull_timeout=cfg.pull_timeout,
        max_threads=cfg.max_threads,
        api_version=version,
    )
