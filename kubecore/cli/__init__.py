"""The ``kubecore`` command line.

Every error a person can cause (a bad flag, file, config key or plugin name) ends the
command with one ``error: ...`` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from kubecore import __version__
from kubecore.errors import KubecoreError


class _Group(click.Group):
    """A group that turns kubecore's own errors into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KubecoreError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubecore")
def main() -> None:
    """kubecore: a container cluster manager in the shape of Kubernetes v0.5."""


def _register() -> None:
    from kubecore.cli.config import config
    from kubecore.cli.kubecfg import RunDispatch, resize, rm, run_container, stop
    from kubecore.cli.plugins import plugins
    from kubecore.cli.resources import create, delete, get, list_, update
    from kubecore.cli.run import run
    from kubecore.cli.validate import validate

    for command in (RunDispatch(run, run_container), plugins, config, validate, get, list_,
                    create, update, delete, resize, stop, rm, run_container):
        main.add_command(command)


_register()
