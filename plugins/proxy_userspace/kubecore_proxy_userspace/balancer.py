"""Round robin over each service's endpoints, with optional client-IP affinity."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kubecore.proxy import ServiceKey, parse_endpoint

Address = tuple[str, int]


@dataclass
class _Pool:
    endpoints: list[Address]
    index: int = 0
    # client IP -> (endpoint, last use); only filled with affinity on
    affinity: dict[str, tuple[Address, float]] = field(default_factory=dict)


class RoundRobin:
    """Endpoint choice per service (v0.5's ``LoadBalancerRR``).

    ``update`` replaces a service's endpoints; when the list differs from the current
    one, its round-robin index and affinities are reset. ``next`` returns the next
    endpoint (every call advances), or the client's previous endpoint when affinity is
    on and that endpoint is still listed and was used within ``affinity_timeout``.
    """

    def __init__(
        self,
        *,
        affinity: bool = False,
        affinity_timeout: float = 10800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.affinity = affinity
        self.affinity_timeout = affinity_timeout
        self._clock = clock
        self._pools: dict[ServiceKey, _Pool] = {}

    def update(self, key: ServiceKey, endpoints: Iterable[str]) -> bool:
        """Set ``key``'s endpoints (``host:port`` strings; invalid ones are skipped).
        Returns whether the list changed."""
        parsed = [address for text in endpoints if (address := parse_endpoint(text))]
        pool = self._pools.get(key)
        if pool is not None and pool.endpoints == parsed:
            return False
        self._pools[key] = _Pool(parsed)
        return True

    def remove(self, key: ServiceKey) -> None:
        self._pools.pop(key, None)

    def endpoints(self, key: ServiceKey) -> list[Address]:
        pool = self._pools.get(key)
        return list(pool.endpoints) if pool else []

    def next(self, key: ServiceKey, client_ip: str | None = None, *, sticky: bool = True
             ) -> Address | None:
        """The endpoint for a new connection from ``client_ip``; ``None`` when ``key`` has
        no endpoints. ``sticky=False`` skips (and replaces) the client's affinity, for a
        retry after its endpoint failed."""
        pool = self._pools.get(key)
        if pool is None or not pool.endpoints:
            return None
        now = self._clock()
        if self.affinity and client_ip is not None and sticky:
            held = pool.affinity.get(client_ip)
            if (held is not None and now - held[1] < self.affinity_timeout
                    and held[0] in pool.endpoints):
                pool.affinity[client_ip] = (held[0], now)
                return held[0]
        endpoint = pool.endpoints[pool.index % len(pool.endpoints)]
        pool.index = (pool.index + 1) % len(pool.endpoints)
        if self.affinity and client_ip is not None:
            if len(pool.affinity) > 4096:
                self._expire(pool, now)
            pool.affinity[client_ip] = (endpoint, now)
        return endpoint

    def _expire(self, pool: _Pool, now: float) -> None:
        stale = [ip for ip, (_, used) in pool.affinity.items()
                 if now - used >= self.affinity_timeout]
        for ip in stale:
            del pool.affinity[ip]
