"""source_etcd: the pods written under this host's key in etcd.

See :mod:`kubecore_source_etcd.source`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore_source_etcd.source import EtcdSource, snapshot_of

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["EtcdSource", "EtcdSourceConfig", "host_prefix", "kubecore_config_section",
           "kubecore_manifest_sources", "snapshot_of"]

DEFAULT_KEY_TEMPLATE = "/registry/hosts/{hostname}/kubelet"


class EtcdSourceConfig(SectionModel):
    """``[source_etcd]``: the etcd cluster and the host key (a prefix) to watch.

    The source is active whenever the plugin is loaded (it is not a default plugin)."""

    endpoints: list[str] = Field(default_factory=lambda: ["127.0.0.1:2379"],
                                 description="etcd client endpoints, host:port")
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description="the watched prefix; {hostname} is the node's name "
        "(v0.5: /registry/nodes/{hostname}/boundpods)",
    )

    @field_validator("key_template")
    @classmethod
    def _has_hostname(cls, value: str) -> str:
        host_prefix(value, "h")  # fails on unknown fields or bad braces
        return value


def host_prefix(template: str, hostname: str) -> str:
    """``template`` with ``{hostname}`` filled in (a ``ValueError`` for anything else)."""
    try:
        return template.format(hostname=hostname)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"bad key template {template!r}: only {{hostname}} may be used "
                         f"({exc})") from None


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("source_etcd", EtcdSourceConfig, "pods from the host key in etcd")


@hookimpl
def kubecore_manifest_sources(ctx: Context) -> list[EtcdSource]:
    if not ctx.runs("node"):
        return []
    cfg = ctx.config(EtcdSourceConfig)
    return [EtcdSource(cfg.endpoints, host_prefix(cfg.key_template, ctx.hostname))]
