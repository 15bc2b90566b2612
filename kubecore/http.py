"""Serving an ASGI application on trio (hypercorn), shared by every HTTP component."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from kubecore.log import get_logger


async def serve_asgi(
    app: Any,
    *,
    name: str,
    address: str,
    port: int,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``address:port`` until cancelled.

    Reports the bound URL through ``task_status`` (``port`` 0 picks a free port), so a
    caller using ``nursery.start`` knows the server accepts connections.
    """
    config = Config()
    config.bind = [f"[{address}]:{port}" if ":" in address else f"{address}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger(f"kubecore.{name}.http")
    # hypercorn repeats the bind at info; keep its warnings and errors only.
    config.errorlog.setLevel(logging.WARNING)
    config.keep_alive_timeout = 75
    log = get_logger(f"kubecore.{name}")

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        url = binds[0]
        log.info("listening", url=url)
        task_status.started(url)
