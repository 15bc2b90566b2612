"""Options shared by commands that read the configuration (``run``, ``config``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kubecore import kernel

F = TypeVar("F", bound=Callable[..., Any])


def config_options(command: F) -> F:
    """Add ``--config``, ``--plugins``, ``--role``, ... to ``command``."""
    decorators = [
        click.option("-c", "--config", "config_file", type=click.Path(path_type=Path),
                     help="TOML configuration file."),
        click.option("--plugins", help="Comma-separated plugin names (default: the default set)."),
        click.option("--role", type=click.Choice(["all", "master", "node"]),
                     help="Run the master half, the node half, or both (default: all)."),
        click.option("--hostname-override", help="This node's name (default: the FQDN)."),
        click.option("--data-dir", type=click.Path(path_type=Path),
                     help="Where state is kept (default: ~/.local/share/kubecore)."),
        click.option("--log-format", type=click.Choice(["console", "json"]),
                     help="Log format (default: console)."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                     help="Log level (default: info)."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one configuration key; repeatable."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def raw_config(
    config_file: Path | None,
    plugins: str | None,
    role: str | None,
    hostname_override: str | None,
    data_dir: Path | None,
    log_format: str | None,
    log_level: str | None,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """The configuration as given: file, then ``--set``, then the dedicated flags."""
    raw = kernel.read_config(config_file, overrides)
    section = raw.setdefault("kubecore", {})
    if plugins is not None:
        section["plugins"] = [name.strip() for name in plugins.split(",") if name.strip()]
    flags = {"role": role, "hostname": hostname_override, "log_format": log_format,
             "log_level": log_level, "data_dir": str(data_dir) if data_dir else None}
    section.update({key: value for key, value in flags.items() if value is not None})
    return raw
