"""``kubecore config``: check a configuration and print it with every default filled in."""

from __future__ import annotations

from typing import Any

import click
import tomli_w

from kubecore import kernel
from kubecore.cli.options import config_options, raw_config


@click.command("config")
@config_options
def config(**options: Any) -> None:
    """Validate the configuration and print the effective settings as TOML."""
    ctx = kernel.prepare(raw_config(**options))
    document = {
        name: section.model_dump(mode="json", exclude_none=True)
        for name, section in ctx.settings.items()
    }
    click.echo(tomli_w.dumps(document), nl=False)
