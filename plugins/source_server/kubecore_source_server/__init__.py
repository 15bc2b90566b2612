"""source_server: pods POSTed to the kubelet's own server (v0.5's ``/container(s)``).

See :mod:`kubecore_source_server.source`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore_source_server.source import ServerSource

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["ServerSource", "ServerSourceConfig", "kubecore_config_section",
           "kubecore_manifest_sources", "read_token"]


class ServerSourceConfig(SectionModel):
    """``[source_server]``: whether the endpoints are mounted, and their token."""

    enabled: bool = Field(default=True, description="mount POST /container(s)")
    token_file: Path | None = Field(
        default=None, description="a file holding the bearer token; unset = no token"
    )
    state_file: Path | None = Field(
        default=None,
        description="where the last accepted manifests are kept across restarts;"
        " unset = <kubelet root_dir>/source_server.json",
    )


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace removed); it must not be empty."""
    token = path.expanduser().read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("source_server", ServerSourceConfig,
                         "pods POSTed to the kubelet's server")


@hookimpl
def kubecore_manifest_sources(ctx: Context) -> list[ServerSource]:
    if not ctx.runs("node"):
        return []
    cfg = ctx.config(ServerSourceConfig)
    if not cfg.enabled:
        return []
    token = read_token(cfg.token_file) if cfg.token_file is not None else None
    state_file = cfg.state_file
    if state_file is None:
        from kubecore.kubelet.plugin import KubeletConfig

        root = ctx.config(KubeletConfig).root_dir or ctx.data_dir / "kubelet"
        state_file = root / "source_server.json"
    return [ServerSource(token, state_file.expanduser())]
