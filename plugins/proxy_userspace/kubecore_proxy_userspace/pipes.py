"""Pipes for splice(2), resized within a memory budget and reused through a pool.

A splicing direction holds one pipe (two file descriptors). Enlarging pipes to 1 MiB
makes bulk transfers markedly faster, but unprivileged users get 64 MiB of pipe buffers
in total (``fs.pipe-user-pages-soft``); past it ``F_SETPIPE_SZ`` fails with EPERM and
new pipes shrink to a page or two. So resized pipes are counted against
``memory`` and, once it is spent or EPERM was seen, pipes keep the kernel's default
size (64 KiB, or less past the limit); callers may decline a pipe that is too small to
beat copying.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from dataclasses import dataclass

from kubecore.log import get_logger

log = get_logger("kubecore.proxy_userspace")

F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)

# After EPERM, resizing is not tried again for this long (others' pipes may go away).
EPERM_BACKOFF = 5.0


@dataclass(slots=True)
class Pipe:
    """A non-blocking pipe: read end ``r``, write end ``w``, capacity ``size`` bytes."""

    r: int
    w: int
    size: int
    resized: bool

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class PipePool:
    """Hands out pipes of ``pipe_size`` bytes while ``memory`` allows, default-sized ones
    otherwise; keeps up to ``keep`` returned empty pipes for reuse. Single-threaded."""

    def __init__(self, pipe_size: int, memory: int, keep: int = 16) -> None:
        self.pipe_size = pipe_size
        self.memory = memory
        self.keep = keep
        self.resized_bytes = 0  # held by resized pipes, in use or pooled
        self.usable = True  # cleared when splice(2) refuses sockets: copy from then on
        self._idle: list[Pipe] = []
        self._eperm_until = 0.0
        self._eperm_logged = False

    def get(self) -> Pipe | None:
        """A clean pipe, or ``None`` when none can be created (out of descriptors)."""
        if self._idle:
            return self._idle.pop()
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            size = fcntl.fcntl(w, F_GETPIPE_SZ)
        except OSError:
            size = 4096
        pipe = Pipe(r, w, size, resized=False)
        if (
            size != self.pipe_size
            and self.resized_bytes + self.pipe_size <= self.memory
            and time.monotonic() >= self._eperm_until
        ):
            self._resize(pipe)
        return pipe

    def _resize(self, pipe: Pipe) -> None:
        try:
            pipe.size = fcntl.fcntl(pipe.w, F_SETPIPE_SZ, self.pipe_size)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                self._eperm_until = time.monotonic() + EPERM_BACKOFF
                if not self._eperm_logged:
                    self._eperm_logged = True
                    log.warning(
                        "pipe buffer limit reached; using smaller pipes",
                        pipe_size=self.pipe_size,
                        hint="raise fs.pipe-user-pages-soft or lower proxy_userspace.pipe_memory",
                    )
            return
        pipe.resized = True
        self.resized_bytes += pipe.size

    def put(self, pipe: Pipe, *, clean: bool) -> None:
        """Give ``pipe`` back; ``clean`` means it holds no data (it is then reused)."""
        if clean and len(self._idle) < self.keep:
            self._idle.append(pipe)
            return
        if pipe.resized:
            self.resized_bytes -= pipe.size
        pipe.close()

    def close(self) -> None:
        """Close every pooled pipe."""
        while self._idle:
            self.put(self._idle.pop(), clean=False)
