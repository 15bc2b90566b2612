"""runtime_exec: containers' commands as plain host processes (like Nomad's raw_exec).

The embedded default runtime of a node where no Docker daemon answers: its
``kubecore_runtime`` hook is asked last, so a runtime that answers wins. See
:mod:`kubecore_runtime_exec.runtime` for what it does and ``README.md`` for its limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from kubecore import hookimpl
from kubecore.config import ConfigSection, SectionModel
from kubecore_runtime_exec.runtime import DEFAULT_PATH, ExecRuntime

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["ExecRuntime", "ExecRuntimeConfig", "kubecore_config_section", "kubecore_runtime"]


class ExecRuntimeConfig(SectionModel):
    """``[runtime_exec]``: where pods live and what environment containers start with."""

    root: Path | None = Field(
        default=None,
        description="pods' directories, logs and state files; unset = <data_dir>/exec."
        " One per kubelet: a second runtime on the same root refuses to start",
    )
    path: str = Field(
        default=DEFAULT_PATH, description="PATH of containers whose env sets none"
    )
    inherit_env: list[str] = Field(
        default=[],  # pydantic copies it per instance
        description="names of the kubelet's own environment variables passed on to"
        " containers (LANG, TZ...); nothing else of it is",
    )


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection(
        "runtime_exec", ExecRuntimeConfig, "containers' commands as plain host processes"
    )


@hookimpl(trylast=True)
def kubecore_runtime(ctx: Context) -> ExecRuntime | None:
    """The exec runtime on a node (asked after every other runtime); ``None`` on a
    master-only run. Raises :class:`~kubecore.errors.StartupError` if the root is in use."""
    if not ctx.runs("node"):
        return None
    cfg = ctx.config(ExecRuntimeConfig)
    root = (cfg.root or ctx.data_dir / "exec").expanduser()
    return ExecRuntime(root, path=cfg.path, inherit_env=cfg.inherit_env)
