"""structlog set-up: a console renderer for people, JSON lines for machines.

Every component logs through ``structlog.get_logger(component=...)``; the standard
library's loggers (hypercorn, httpx) are routed through the same processors so one run
writes one consistent stream to stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from kubecore.config import LogFormat, LogLevel

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure(fmt: LogFormat = "console", level: LogLevel = "info") -> None:
    """Configure structlog and stdlib logging; safe to call more than once."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        # Filtering first makes a line below the level cost no timestamp or rendering.
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Libraries' per-request chatter stays below info unless debugging.
    for noisy in ("httpx", "httpcore", "hpack", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))


def get_logger(name: str, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A logger named after the module or component that logs."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **bound)
    return logger
