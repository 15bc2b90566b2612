"""``kubecore plugins``: what is installed, what it implements, what failed."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from kubecore.plugins import DEFAULT_PLUGINS, installed_plugins


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: name, distribution, version, hooks and load errors."""
    infos = installed_plugins()
    if as_json:
        rows = [dict(info.as_dict(), default=info.name in DEFAULT_PLUGINS) for info in infos]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS"):
        table.add_column(column, no_wrap=column != "HOOKS")
    for info in infos:
        hooks = ", ".join(hook.removeprefix("kubecore_") for hook in info.hooks)
        if info.error:
            status = "[red]error[/red]"
        elif info.builtin:
            status = "built-in"
        else:
            status = "default" if info.name in DEFAULT_PLUGINS else "ok"
        table.add_row(info.name, info.distribution or "?", info.version or "?", status, hooks)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    for info in infos:
        if info.error:
            console.print(f"[red]{info.name}[/red]: {info.error}", highlight=False)
