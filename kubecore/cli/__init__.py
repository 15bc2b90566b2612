"""The ``kubecore`` command line.

Every error a person can cause (a bad flag, file, config key or plugin name) ends the
command with one ``error: ...`` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from kubecore import __version__
from kubecore.errors import KubecoreError


class _Group(click.Group):
    """A group that turns kubecore's own errors into one line and exit status 1.

    Click's own usage errors (an unknown flag or command, a missing argument) get the same
    treatment instead of click's multi-line usage text and status 2, so scripts can rely
    on one rule: 0 is success, 1 is a mistake, 130 an interrupt.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(f"{exc.format_message().rstrip('.')}{hint}", 1)
        except click.ClickException as exc:
            _fail(exc.format_message(), 1)
        except click.Abort:
            _fail("interrupted", 130)
        # Non-standalone click returns the code of ``ctx.exit(code)``, or the command's
        # own return value (never an exit code in kubecore's commands).
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KubecoreError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _fail(message: str, status: int) -> NoReturn:
    click.echo(message if status == 130 else f"error: {message}", err=True)
    sys.exit(status)


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
