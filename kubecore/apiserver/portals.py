"""Service portal IPs: allocated from ``portal_net``, each used by at most one service.

The services in the store are the record of which addresses are taken (so nothing
needs reloading at start); the service strategy holds a lock around "choose an
address, then create the service" so two creates in this server cannot pick the same
one. The network and broadcast addresses are never handed out.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

DEFAULT_PORTAL_NET = "127.77.0.0/16"
"""A loopback range: each service gets its own address on one machine (DESIGN.md 4)."""

# Random probes before falling back to a scan (only a nearly full network needs one).
_PROBES = 64


class PortalError(ValueError):
    """A requested portal IP cannot be used, or the network is full."""


def parse_portal_net(text: str) -> ipaddress.IPv4Network:
    """``text`` as an IPv4 network with at least one usable address, else ValueError."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"portal_net {text!r}: {exc}") from None
    if net.num_addresses < 4:
        raise ValueError(f"portal_net {text!r} is too small (at least a /30)")
    return net


class PortalAllocator:
    """Chooses portal IPs in one network (see the module docstring)."""

    def __init__(self, net: str = DEFAULT_PORTAL_NET, *, rng: random.Random | None = None):
        self.net = parse_portal_net(net)
        self._first = int(self.net.network_address) + 1
        self._last = int(self.net.broadcast_address) - 1
        self._rng = rng or random.Random()

    @property
    def size(self) -> int:
        """How many addresses can be handed out."""
        return self._last - self._first + 1

    def check(self, requested: str, used: Iterable[str]) -> str:
        """``requested`` if it is a usable, free address of the network."""
        try:
            address = ipaddress.IPv4Address(requested)
        except ValueError:
            raise PortalError(f"{requested!r} is not an IPv4 address") from None
        if address not in self.net:
            raise PortalError(f"{requested} is not in the portal network {self.net}")
        if not self._first <= int(address) <= self._last:
            raise PortalError(f"{requested} is the network or broadcast address of {self.net}")
        if requested in set(used):
            raise PortalError(f"{requested} is already allocated to another service")
        return requested

    def allocate(self, used: Iterable[str]) -> str:
        """A free address chosen at random; PortalError when none is left."""
        taken = {int(ipaddress.IPv4Address(ip)) for ip in used if _is_ipv4(ip)}
        free = self.size - sum(1 for ip in taken if self._first <= ip <= self._last)
        if free <= 0:
            raise PortalError(f"no portal IP left in {self.net}")
        for _ in range(_PROBES):
            candidate = self._rng.randint(self._first, self._last)
            if candidate not in taken:
                return str(ipaddress.IPv4Address(candidate))
        for candidate in range(self._first, self._last + 1):
            if candidate not in taken:
                return str(ipaddress.IPv4Address(candidate))
        raise PortalError(f"no portal IP left in {self.net}")  # pragma: no cover


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
