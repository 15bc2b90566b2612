"""Serving an ASGI application on trio (hypercorn), shared by every HTTP component."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from kubecore.log import get_logger


def hypercorn_config(
    name: str,
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
    config.errorlog = logging.getLogger(f"kubecore.{name}.http")
    # hypercorn repeats the bind at info; keep its warnings and errors only.
    config.errorlog.setLevel(logging.WARNING)
    config.keep_alive_timeout = 75
    if tls_cert_file is not None and tls_key_file is not None:
        config.certfile = str(tls_cert_file)
        config.keyfile = str(tls_key_file)
    return config


async def serve_asgi(
    app: Any,
    *,
    name: str,
    address: str,
    port: int,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``address:port`` until cancelled, over HTTPS when a certificate
    and key are given.

    Reports the bound URL (``http://`` or ``https://``; ``port`` 0 picks a free port)
    through ``task_status``, so a caller using ``nursery.start`` knows the server
    accepts connections.
    """
    config = hypercorn_config(
        name, address, port, tls_cert_file=tls_cert_file, tls_key_file=tls_key_file,
        graceful_timeout=graceful_timeout,
    )
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, app, config))
        url = binds[0]
        get_logger(f"kubecore.{name}").info("listening", url=url)
        task_status.started(url)
