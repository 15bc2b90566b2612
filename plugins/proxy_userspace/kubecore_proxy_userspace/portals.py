"""Portal IPs: one loopback address per service, so services may share a port."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping

from kubecore.proxy import ServiceKey


class PortalAllocator:
    """Assigns each service an address of ``network``.

    A service whose requested ``portalIP`` lies in the network gets it. Any other gets
    an address derived from a hash of its key (probing onwards past taken ones), and
    keeps it for as long as it exists, unless a later request claims it explicitly.
    The network and broadcast addresses are never handed out.
    """

    def __init__(self, network: str) -> None:
        self.network = ipaddress.ip_network(network, strict=False)
        self._first = int(self.network.network_address) + 1
        self._size = self.network.num_addresses - 2
        self._held: dict[ServiceKey, str] = {}

    def contains(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address in self.network and self._first <= int(address) < self._first + self._size

    def assign(self, requested: Mapping[ServiceKey, str]) -> dict[ServiceKey, str]:
        """Portal IPs for exactly the services in ``requested`` (key -> its portalIP,
        possibly ""). Keys not given are forgotten."""
        explicit = {key: ip for key, ip in requested.items() if ip and self.contains(ip)}
        claimed = set(explicit.values())
        result: dict[ServiceKey, str] = dict(explicit)
        for key in sorted(requested):
            if key in result:
                continue
            held = self._held.get(key)
            if held is not None and held not in claimed:
                result[key] = held
                claimed.add(held)
        for key in sorted(requested):
            if key in result:
                continue
            ip = self._probe(key, claimed)
            if ip is None:
                continue  # the network is full; the service is served on bind_address only
            result[key] = ip
            claimed.add(ip)
        self._held = result
        return dict(result)

    def _probe(self, key: ServiceKey, taken: set[str]) -> str | None:
        digest = hashlib.blake2b(f"{key[0]}/{key[1]}".encode(), digest_size=8).digest()
        start = int.from_bytes(digest, "big") % self._size
        for step in range(self._size):
            ip = str(ipaddress.ip_address(self._first + (start + step) % self._size))
            if ip not in taken:
                return ip
        return None
