"""Services: portal IP allocation, immutable portal IPs, endpoints deleted with them."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

import trio

from kubecore.api import (
    Cause,
    Reason,
    Service,
    TypeMeta,
    apply_defaults,
    validate_service,
    validate_service_update,
)
from kubecore.apiserver.portals import PortalError
from kubecore.apiserver.resources import ENDPOINTS, SERVICES
from kubecore.apiserver.strategy import (
    Strategy,
    ensure,
    keep_identity,
    key_causes,
    new_uid,
    now,
)
from kubecore.store import KeyNotFound

if TYPE_CHECKING:
    from kubecore.apiserver.registry import Registry


class ServiceStrategy(Strategy):
    """``portalIP`` is chosen from the registry's portal network unless given (a given
    one must be free and in the network, else 422) and never changes; ``proxyPort`` is
    always 0; deleting a service deletes its endpoints."""

    resource = SERVICES

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        # Held from choosing an address until the service holding it is stored.
        self._allocating = trio.Lock()

    async def _others(self) -> list[Service]:
        services, _ = await self.registry.list_raw(SERVICES.name)
        return [cast(Service, s) for s in services]

    async def prepare_create(self, obj: TypeMeta) -> TypeMeta:
        service = apply_defaults(cast(Service, obj))
        service.uid = new_uid()
        service.creation_timestamp = now()
        service.proxy_port = 0
        others = [s for s in await self._others() if s.namespace == service.namespace]
        ensure(service, [*validate_service(service, others=others), *key_causes(service)])
        return service

    async def create(self, key: str, obj: TypeMeta) -> TypeMeta:
        service = cast(Service, obj)
        async with self._allocating:
            used = [s.portal_ip for s in await self._others() if s.portal_ip]
            try:
                if service.portal_ip:
                    self.registry.portals.check(service.portal_ip, used)
                else:
                    service.portal_ip = self.registry.portals.allocate(used)
            except PortalError as exc:
                ensure(service, [Cause(Reason.INVALID, str(exc), "portalIP")])
            return await self.registry.store_create(self.resource, key, service)

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        before = cast(Service, old)
        service = apply_defaults(cast(Service, new))
        keep_identity(before, service)
        causes = validate_service_update(before, service)
        service.portal_ip = before.portal_ip
        service.proxy_port = 0
        others = [s for s in await self._others() if s.namespace == service.namespace]
        ensure(service, [*causes, *validate_service(service, others=others),
                         *key_causes(service)])
        return service

    async def after_delete(self, obj: TypeMeta) -> None:
        with contextlib.suppress(KeyNotFound):
            await self.registry.store.delete(ENDPOINTS.key(obj.namespace, obj.id))
