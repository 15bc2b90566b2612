"""Per-container restart backoff: ``minimum`` seconds doubling to ``maximum``.

A container that dies is restarted no earlier than its death plus the current delay;
each further death of the same container doubles the delay up to ``maximum``. An
instance that ran at least ``reset_after`` seconds before dying starts the sequence
over. Deaths are told apart by the dead instance's id, so seeing the same dead
instance on every sync round counts once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass
class _State:
    dead_id: str
    delay: float
    not_before: float


class Backoff:
    """Restart delays keyed by any hashable (the kubelet uses ``(pod uid, container)``).

    Times are wall-clock seconds (``clock``), comparable with a runtime's
    ``finished_at``.
    """

    def __init__(
        self,
        minimum: float = 10.0,
        maximum: float = 300.0,
        reset_after: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.reset_after = reset_after
        self.clock = clock
        self._states: dict[Hashable, _State] = {}

    def not_before(
        self,
        key: Hashable,
        dead_id: str,
        started_at: float | None,
        finished_at: float | None,
    ) -> float:
        """When the dead instance ``dead_id`` of ``key`` may be replaced.

        The first call for a new dead instance fixes its time; later calls for the same
        instance return it unchanged.
        """
        state = self._states.get(key)
        if state is not None and state.dead_id == dead_id:
            return state.not_before
        died = finished_at if finished_at is not None else self.clock()
        ran = died - started_at if started_at is not None else 0.0
        if state is None or ran >= self.reset_after:
            delay = self.minimum
        else:
            delay = min(state.delay * 2, self.maximum)
        state = _State(dead_id=dead_id, delay=delay, not_before=died + delay)
        self._states[key] = state
        return state.not_before

    def forget(self, key: Hashable) -> None:
        """Start ``key`` over (its spec changed, or it is gone)."""
        self._states.pop(key, None)

    def retain(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget every key for which ``keep`` is false."""
        for key in [key for key in self._states if not keep(key)]:
            del self._states[key]

    def pending(self, now: float | None = None) -> Iterable[float]:
        """The restart times still in the future."""
        now = self.clock() if now is None else now
        return [s.not_before for s in self._states.values() if s.not_before > now]
