"""``kubecore run``: start the selected components and serve until stopped."""

from __future__ import annotations

from typing import Any

import click
import trio

from kubecore import kernel, log
from kubecore.cli.options import config_options, raw_config


@click.command("run")
@config_options
def run(**options: Any) -> None:
    """Run kubecore: all-in-one by default, or --role master / --role node.

    With no arguments this starts an all-in-one cluster on embedded defaults (SQLite
    store, Docker if its daemon answers, plain processes otherwise). SIGINT or SIGTERM
    stop it cleanly.
    """
    raw = raw_config(**options)
    kernel_cfg = kernel.kernel_config(raw)
    log.configure(kernel_cfg.log_format, kernel_cfg.log_level)
    kernel.tune_gc(kernel_cfg.gc_threshold)
    ctx = kernel.prepare(raw)
    trio.run(kernel.serve, ctx)
