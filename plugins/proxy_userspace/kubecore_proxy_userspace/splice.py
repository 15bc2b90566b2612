"""One direction of a TCP connection: bytes from ``src`` to ``dst`` until ``src`` ends.

Two ways to move them, chosen per direction:

- **copy**: ``recv`` into user space and ``send`` on. Every direction starts this way;
  a short request or reply never needs more, and costs no pipe.
- **splice**: once ``splice_after`` bytes went by, the data moves socket -> pipe ->
  socket inside the kernel (``os.splice``), with a pipe from the :class:`PipePool`.

Both work on non-blocking stdlib sockets and wait through trio's I/O manager, so the
trio loop is never blocked; each yields every few rounds so one busy direction cannot
starve the others. The splice loop tracks the bytes in its pipe: EAGAIN reading the
source means "source empty" or "pipe full" (a pipe counts page slots, not bytes), so it
waits for the source only when the pipe is empty and drains the pipe otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass

from trio.lowlevel import checkpoint, wait_readable, wait_writable

from kubecore_proxy_userspace.pipes import PipePool

# Rounds without a blocking wait before a direction yields to the scheduler.
CHECKPOINT_EVERY = 8

# A pipe smaller than this (the limit of a user's pipe buffers was reached) moves bulk
# data slower than copying with a 64 KiB buffer, so the direction keeps copying.
MIN_SPLICE_PIPE = 64 * 1024

SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
HAVE_SPLICE = hasattr(os, "splice")


@dataclass
class PumpOptions:
    """How directions move data. ``pipes`` is ``None`` when splice is off or missing.
    ``copied`` and ``spliced`` count the bytes moved each way (statistics, added as
    each phase of a direction ends)."""

    copy_buffer: int = 64 * 1024
    splice_after: int = 64 * 1024
    pipes: PipePool | None = None
    copied: int = 0
    spliced: int = 0


class _SpliceUnsupported(Exception):
    """splice(2) refused these descriptors before moving anything."""


async def pump(
    src: socket.socket, dst: socket.socket, options: PumpOptions, *, wait_first: bool = False
) -> int:
    """Move bytes from ``src`` to ``dst`` until ``src`` reaches end of stream and
    everything read has been written; return the byte count. Does not shut down or
    close either socket. Raises :class:`OSError` when either socket fails (reset,
    broken pipe). ``wait_first``: ``src`` is known to have nothing yet (a reply not
    yet asked for), so wait before the first read rather than try it."""
    pipes = options.pipes
    limit = options.splice_after if pipes is not None else None
    if wait_first:
        await wait_readable(src)
    moved, eof = await _copy(src, dst, options.copy_buffer, limit)
    options.copied += moved
    if eof or pipes is None:
        return moved
    spliced = await _splice(src, dst, pipes)
    if spliced is None:  # no usable pipe, or splice refused these sockets
        if not pipes.usable:
            options.pipes = None
        copied, _ = await _copy(src, dst, options.copy_buffer, None)
        options.copied += copied
        return moved + copied
    options.spliced += spliced
    return moved + spliced


async def _copy(
    src: socket.socket, dst: socket.socket, bufsize: int, limit: int | None
) -> tuple[int, bool]:
    """Copy until end of stream (-> ``(n, True)``) or until at least ``limit`` bytes
    went by (-> ``(n, False)``)."""
    moved = 0
    rounds = 0
    while limit is None or moved < limit:
        try:
            data = src.recv(bufsize)
        except BlockingIOError:
            await wait_readable(src)
            rounds = 0
            continue
        if not data:
            return moved, True
        try:
            sent = dst.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await _send_rest(dst, memoryview(data)[sent:])
            rounds = 0
        moved += len(data)
        rounds += 1
        if rounds >= CHECKPOINT_EVERY:
            rounds = 0
            await checkpoint()
    return moved, False


async def _send_rest(dst: socket.socket, view: memoryview) -> None:
    while view:
        await wait_writable(dst)
        with contextlib.suppress(BlockingIOError):  # woken, but the buffer filled again
            view = view[dst.send(view) :]


async def _splice(src: socket.socket, dst: socket.socket, pipes: PipePool) -> int | None:
    """Splice until end of stream; ``None`` (nothing moved) when no pipe large enough
    can be had or splice refuses these descriptors."""
    pipe = pipes.get()
    if pipe is None:
        return None
    if pipe.size < MIN_SPLICE_PIPE:
        pipes.put(pipe, clean=True)
        return None
    # fileno() is read at every call, never kept: the other direction may close these
    # sockets on an error, and a kept number could meanwhile name a new socket.
    in_pipe = 0
    moved = 0
    eof = False
    rounds = 0
    try:
        while True:
            if not eof and in_pipe < pipe.size:
                try:
                    n = os.splice(src.fileno(), pipe.w, pipe.size - in_pipe, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    if not in_pipe:
                        await wait_readable(src)
                        rounds = 0
                        continue
                except OSError as exc:
                    if moved == 0 and in_pipe == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS):
                        pipes.usable = False
                        raise _SpliceUnsupported from exc
                    raise
                else:
                    if n == 0:
                        eof = True
                    in_pipe += n
            if in_pipe:
                try:
                    n = os.splice(pipe.r, dst.fileno(), in_pipe, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    await wait_writable(dst)
                    rounds = 0
                    continue
                in_pipe -= n
                moved += n
            elif eof:
                return moved
            rounds += 1
            if rounds >= CHECKPOINT_EVERY:
                rounds = 0
                await checkpoint()
    except _SpliceUnsupported:
        return None
    finally:
        pipes.put(pipe, clean=in_pipe == 0)
