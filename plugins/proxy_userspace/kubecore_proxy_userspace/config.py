"""The ``[proxy_userspace]`` configuration section."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kubecore.config import SectionModel

MIB = 1024 * 1024


class ProxyUserspaceConfig(SectionModel):
    """``[proxy_userspace]``: where services listen and how traffic is forwarded."""

    bind_address: str = Field(
        default="127.0.0.1", description="address every service's port is bound on"
    )
    portal_net: str = Field(
        default="127.77.0.0/16",
        description="loopback range for per-service portal IPs (each service also binds"
        " portalIP:port, so services may share a port); empty = no portals",
    )
    config_source: Literal["auto", "api", "etcd", "file"] = Field(
        default="auto",
        description="where services and endpoints come from: api (list and watch the"
        " apiserver), etcd (read and watch the cluster store's keys, through the run's"
        " store plugin: store_etcd's endpoints and prefix), file (services_file); auto ="
        " file when services_file is set, else api",
    )
    services_file: Path | None = Field(
        default=None,
        description='JSON or YAML file {"services": [...], "endpoints": [...]} to serve;'
        " re-read when it changes",
    )
    services_file_poll: float = Field(
        default=1.0, gt=0, description="seconds between checks of services_file for changes"
    )
    dial_timeouts: list[float] = Field(
        default=[0.25, 0.5, 1.0, 2.0],
        min_length=1,
        description="TCP: one connect attempt per entry (each to the next endpoint),"
        " with this timeout in seconds",
    )
    udp_idle_timeout: float = Field(
        default=60.0, gt=0, description="UDP: seconds a client's backend socket lives unused"
    )
    session_affinity: bool = Field(
        default=False, description="send a client IP to the endpoint it used last"
    )
    session_affinity_timeout: float = Field(
        default=10800.0, gt=0, description="seconds an unused client IP affinity is kept"
    )
    splice: bool = Field(
        default=True, description="TCP: move bulk data with splice(2) where Linux offers it"
    )
    splice_after: int = Field(
        default=64 * 1024,
        ge=0,
        description="TCP: bytes a direction copies through user space before switching"
        " to splice (small exchanges never allocate a pipe)",
    )
    pipe_size: int = Field(
        default=MIB, ge=4096, description="TCP: bytes of each splice pipe (F_SETPIPE_SZ)"
    )
    pipe_memory: int = Field(
        default=32 * MIB,
        ge=0,
        description="TCP: total bytes of enlarged pipes; past it, pipes keep the"
        " kernel's default size",
    )
    copy_buffer: int = Field(
        default=64 * 1024, ge=1024, description="bytes per recv when copying (TCP and UDP)"
    )
    backlog: int = Field(default=1024, ge=1, description="TCP listen backlog")

    @field_validator("bind_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"not an IP address: {value!r}") from None

    @field_validator("portal_net")
    @classmethod
    def _loopback_net(cls, value: str) -> str:
        if not value:
            return ""
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"not a network: {value!r}") from None
        if not net.is_loopback or net.num_addresses < 4:
            raise ValueError(f"{value!r} is not a loopback range of at least 4 addresses")
        return str(net)

    @field_validator("dial_timeouts")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(timeout <= 0 for timeout in value):
            raise ValueError("every dial timeout must be > 0")
        return value

    @model_validator(mode="after")
    def _file_source_has_file(self) -> ProxyUserspaceConfig:
        if self.config_source == "file" and self.services_file is None:
            raise ValueError('config_source = "file" needs services_file')
        return self
