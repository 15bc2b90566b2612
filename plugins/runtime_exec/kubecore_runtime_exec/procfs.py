"""What ``/proc`` says about processes: identity (to survive pid reuse), sessions and
resource counters. Every function here reads small files and is meant to run in a
worker thread."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` kubecore uses (times in clock ticks)."""

    pid: int
    state: str
    pgrp: int
    session: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    start_ticks: int
    rss_pages: int

    @property
    def dead(self) -> bool:
        """A zombie or a process being torn down: it runs no more code."""
        return self.state in ("Z", "X", "x")

    @property
    def cpu_ns(self) -> int:
        """CPU time of the process and of the children it has waited for."""
        ticks = self.utime + self.stime + self.cutime + self.cstime
        return ticks * 1_000_000_000 // CLOCK_TICKS


def parse_stat(pid: int, text: str) -> ProcStat:
    # The command name (field 2) may hold spaces and parentheses: split at the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=fields[0],
        pgrp=int(fields[2]),
        session=int(fields[3]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat, or ``None`` if no process has that pid."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    try:
        return parse_stat(pid, text)
    except (ValueError, IndexError):
        return None


@cache
def boot_id() -> str:
    """This boot's random id: process start times only compare within one boot."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_same_process(pid: int, start_ticks: int, boot: str) -> ProcStat | None:
    """The live process ``pid`` if it is the one that started at ``start_ticks`` during
    boot ``boot`` (not a later process that reused the pid), else ``None``."""
    if boot != boot_id():
        return None
    stat = read_stat(pid)
    if stat is None or stat.start_ticks != start_ticks or stat.dead:
        return None
    return stat


def session_members(session: int, min_start_ticks: int) -> list[ProcStat]:
    """Live processes of ``session`` that started no earlier than ``min_start_ticks``.

    A container's processes are the session its main process leads; the start-time
    bound keeps out processes of an unrelated session that reused the number.
    """
    members: list[ProcStat] = []
    try:
        entries = os.listdir(PROC)
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry))
        if (
            stat is not None
            and stat.session == session
            and stat.start_ticks >= min_start_ticks
            and not stat.dead
        ):
            members.append(stat)
    return members


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group; a group that is gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_leftovers(session: int, leader_start_ticks: int) -> int:
    """SIGKILL what is left of the session led by the process that started at
    ``leader_start_ticks`` with pid ``session``, once that leader has ended; returns how
    many processes were signalled.

    While any process is still in the session its number cannot be given to a new
    process, so a live process with that pid and another start time means the session
    is gone and the number reused: nothing is killed then.
    """
    leader = read_stat(session)
    if leader is not None and leader.start_ticks != leader_start_ticks:
        return 0
    count = 0
    for stat in session_members(session, leader_start_ticks):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(stat.pid, signal.SIGKILL)
            count += 1
    return count
