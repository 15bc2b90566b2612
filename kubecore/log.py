"""structlog set-up: a console renderer for people, JSON lines for machines.

Every component logs through ``structlog.get_logger(component=...)``; the standard
library's loggers (hypercorn, httpx) are routed through the same processors so one run
writes one consistent stream to stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog

from kubecore.config import LogFormat, LogLevel

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _StderrLogger:
    """Where structlog's rendered lines go: straight to stderr, one write per line (the
    standard library's logging, which the lines used to pass through, cost more than the
    rest of a line). ``name`` is read by ``add_logger_name``."""

    _lock = threading.Lock()  # lines from several threads never interleave

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        with self._lock:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger(*args: Any) -> _StderrLogger:
    """The logger of ``structlog.get_logger(name)``; without a name, the module that
    logs gives it (as the standard library's loggers were named)."""
    if args and isinstance(args[0], str):
        return _StderrLogger(args[0])
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
            ("structlog", __name__)):
        frame = frame.f_back
    return _StderrLogger(frame.f_globals.get("__name__", "?"))


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
        # The filtering logger makes a line below the level a no-op call.
        processors=[*shared, renderer],
        logger_factory=_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: same processors, same stream.
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


def get_logger(name: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger named after the module or component that logs."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name, **bound)
    return logger
