"""Serving the apiserver's application on trio through hypercorn, over HTTP or HTTPS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from kubecore.log import get_logger

log = get_logger("kubecore.apiserver")


def hypercorn_config(
    address: str,
    port: int,
    *,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    graceful_timeout: float = 5.0,
) -> Config:
    """hypercorn's configuration for one listening address; HTTPS when a certificate
    and key are given."""
    config = Config()
    config.bind = [f"[{address}]:{port}" if ":" in address else f"{address}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("kubecore.apiserver.http")
    # hypercorn repeats the bind at info; keep its warnings and errors only.
    config.errorlog.setLevel(logging.WARNING)
    config.keep_alive_timeout = 75
    if tls_cert_file is not None and tls_key_file is not None:
        config.certfile = str(tls_cert_file)
        config.keyfile = str(tls_key_file)
    return config


async def serve_apiserver(
    app: Any,
    config: Config,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; reports the bound URL (``http://`` or
    ``https://``, the real port when 0 was asked) through ``task_status``."""

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        url = binds[0]
        log.info("listening", url=url)
        task_status.started(url)
