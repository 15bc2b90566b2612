"""The apiserver as the proxy's configuration source (v0.5's ``kube-proxy -master``).

Services and endpoints of every namespace are each listed, then watched from the list's
``resourceVersion``. After any change the proxier gets the full sets through
``apply(services, endpoints)``, once both kinds have been listed, and debounced by
``debounce`` seconds so a burst of events is applied once. Objects get the same
defaults as the services file (namespace ``default``, protocol ``TCP``).

A watch that the server ends is re-opened from the last ``resourceVersion`` seen; one
answered 410 Gone is followed by a new list. After an error (unreachable apiserver,
broken stream) the kind is listed again after ``retry`` seconds, or ``retry_long``
seconds once ``failures_before_long`` attempts in a row have failed; meanwhile the last
applied configuration stays in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from kubecore.api import Endpoints, Service, apply_defaults
from kubecore.client import ApiClient, ApiError, ClientError
from kubecore.log import get_logger
from kubecore.proxy import Proxier, ServiceKey, service_key
from kubecore_proxy_userspace.feed import Feed

log = get_logger("kubecore.proxy_userspace")

T = TypeVar("T", Service, Endpoints)


@dataclass
class _Cache(Generic[T]):
    """One kind's objects by key, and whether it has been listed once."""

    items: dict[ServiceKey, T] = field(default_factory=dict)
    listed: bool = False


class ApiFeed(Feed):
    """Feeds ``proxier`` from ``client`` until cancelled (see the module docstring)."""

    origin = "the apiserver"

    def __init__(
        self,
        client: ApiClient,
        proxier: Proxier,
        *,
        debounce: float = 0.05,
        retry: float = 1.0,
        retry_long: float = 30.0,
        failures_before_long: int = 3,
    ) -> None:
        super().__init__(proxier, debounce)
        self.client = client
        self.retry = retry
        self.retry_long = retry_long
        self.failures_before_long = failures_before_long
        self._services: _Cache[Service] = _Cache()
        self._endpoints: _Cache[Endpoints] = _Cache()
        self._tried_kinds: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Started once both kinds were tried once (applied, or found unreachable)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, Service, self._services)
            nursery.start_soon(self._follow, Endpoints, self._endpoints)
            nursery.start_soon(self._apply_loop)
            await self._first_try.wait()
            task_status.started()

    def ready(self) -> bool:
        return self._services.listed and self._endpoints.listed

    def current(self) -> tuple[list[Service], list[Endpoints]]:
        return list(self._services.items.values()), list(self._endpoints.items.values())

    def _tried(self, kind: str) -> None:
        """Record a first list attempt; once both kinds were tried and one failed, the
        feed counts as started (with both listed, the first apply starts it)."""
        self._tried_kinds.add(kind)
        both_listed = self._services.listed and self._endpoints.listed
        if len(self._tried_kinds) == 2 and not both_listed:
            self._first_try.set()

    async def _follow(self, model: type[T], cache: _Cache[T]) -> None:
        failures = 0
        version: int | None = None  # where the next watch starts; None = list first
        kind = model.KIND
        while True:
            try:
                if version is None:
                    listed = await self.client.list(model)
                    cache.items = {service_key(obj): apply_defaults(obj)
                                   for obj in listed.items}
                    cache.listed = True
                    version = listed.resource_version
                    self.changed()
                    self._tried(kind)
                async with self.client.watch(model, version) as watch:
                    failures = 0
                    async for event in watch:
                        obj = apply_defaults(event.object)
                        version = obj.resource_version or version
                        if event.type == "DELETED":
                            cache.items.pop(service_key(obj), None)
                        else:
                            cache.items[service_key(obj)] = obj
                        self.changed()
                # The server ended the stream: watch again from the last version.
                await trio.sleep(self.retry)
                continue
            except ApiError as exc:
                if exc.code == 410:
                    log.info("watch too old; listing again", kind=kind)
                    version = None
                    continue
                error = str(exc)
            except ClientError as exc:
                error = str(exc)
            failures += 1
            version = None
            self._tried(kind)
            pause = self.retry if failures < self.failures_before_long else self.retry_long
            log.warning("proxy watch failed", kind=kind, error=error, retry_in=pause)
            await trio.sleep(pause)
