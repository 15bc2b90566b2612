"""What the proxy's watch-driven configuration sources share: once the source holds a
full view, every change hands the proxier the full sets of services and endpoints,
debounced by ``debounce`` seconds so a burst (a service and its endpoints) is applied
once. Subclasses keep the view (:meth:`Feed.ready`, :meth:`Feed.current`) and call
:meth:`Feed.changed` after each change; ``applied`` counts the applies."""

from __future__ import annotations

from abc import ABC, abstractmethod

import trio

from kubecore.api import Endpoints, Service
from kubecore.log import get_logger
from kubecore.proxy import Proxier

log = get_logger("kubecore.proxy_userspace")


class Feed(ABC):
    """The debounced apply loop of one configuration source (see the module docstring);
    ``origin`` names the source in the log."""

    origin = "the source"

    def __init__(self, proxier: Proxier, debounce: float) -> None:
        self.proxier = proxier
        self.debounce = debounce
        self.applied = 0
        self._changed = trio.Event()
        #: set once the source was tried (applied, or found unreachable): ``run`` waits
        #: for it before it reports started
        self._first_try = trio.Event()

    @abstractmethod
    def ready(self) -> bool:
        """Whether the view is complete enough to apply."""

    @abstractmethod
    def current(self) -> tuple[list[Service], list[Endpoints]]:
        """The services and endpoints the view holds now."""

    def changed(self) -> None:
        self._changed.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._changed.wait()
            await trio.sleep(self.debounce)
            self._changed = trio.Event()
            if not self.ready():
                continue
            services, endpoints = self.current()
            await self.proxier.apply(services, endpoints)
            self.applied += 1
            log.info(f"services from {self.origin} applied", services=len(services),
                     endpoints=sum(len(e.endpoints) for e in endpoints))
            self._first_try.set()
