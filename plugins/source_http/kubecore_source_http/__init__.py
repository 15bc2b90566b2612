"""source_http: pods from ContainerManifests polled from a URL (v0.5's ``-manifest_url``).

See :mod:`kubecore_source_http.source` for the polling and
:mod:`kubecore_source_http.manifests` for how a body becomes pods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore_source_http.manifests import Decoded, decode_pods
from kubecore_source_http.source import HTTPSource

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["Decoded", "HTTPSource", "HTTPSourceConfig", "decode_pods",
           "kubecore_config_section", "kubecore_manifest_sources"]


class HTTPSourceConfig(SectionModel):
    """``[source_http]``: the URL to poll and how often."""

    url: str | None = Field(default=None, description="the manifest URL; unset = no source")
    check_interval: float = Field(default=20.0, gt=0, description="seconds between polls")
    timeout: float = Field(default=10.0, gt=0, description="seconds before a poll gives up")


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("source_http", HTTPSourceConfig, "pods from a manifest URL")


@hookimpl
def kubecore_manifest_sources(ctx: Context) -> list[HTTPSource]:
    if not ctx.runs("node"):
        return []
    cfg = ctx.config(HTTPSourceConfig)
    if not cfg.url:
        return []
    return [HTTPSource(cfg.url, cfg.check_interval, cfg.timeout)]
