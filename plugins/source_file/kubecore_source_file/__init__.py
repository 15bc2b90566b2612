"""source_file: pods from a manifest file or a directory of them (v0.5's ``-config``).

See :mod:`kubecore_source_file.source` for how files become pods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore_source_file.source import FileSource, pod_id_for

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["FileSource", "FileSourceConfig", "kubecore_config_section",
           "kubecore_manifest_sources", "pod_id_for"]


class FileSourceConfig(SectionModel):
    """``[source_file]``: where the manifests are and how often to re-read them."""

    path: Path | None = Field(
        default=None, description="a manifest file or a directory of them; unset = no source"
    )
    check_interval: float = Field(
        default=20.0, gt=0, description="seconds between re-reads (changes are also watched)"
    )
    watch: bool = Field(default=True, description="also re-read at once on file changes")


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("source_file", FileSourceConfig, "pods from manifest files")


@hookimpl
def kubecore_manifest_sources(ctx: Context) -> list[FileSource]:
    if not ctx.runs("node"):
        return []
    cfg = ctx.config(FileSourceConfig)
    if cfg.path is None:
        return []
    return [FileSource(cfg.path.expanduser(), cfg.check_interval, watch=cfg.watch)]
