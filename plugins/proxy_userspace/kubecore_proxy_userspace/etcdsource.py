"""The cluster store as the proxy's configuration source (v0.5's ``kube-proxy -etcd_servers``).

Services and endpoints are read where the apiserver writes them
(:mod:`kubecore.apiserver.keys`): ``/registry/services/specs/<ns>/<id>`` and
``/registry/services/endpoints/<ns>/<id>``, both under ``/registry/services/``, so one
range read gives a consistent view of both and one watch from that read's revision
follows every change (v0.5 listed specs and watched ``/registry/services/``, but its
watch understood only un-namespaced keys).

The store is any :class:`kubecore.store.Store`; with ``store_etcd`` its watch resumes
by itself from the last revision it delivered when a connection breaks (so an etcd
restart loses no change). A watch that ends with a store error (a compaction, a closed
store, etcd away for good) is followed by a new read after ``retry`` seconds, doubling
up to ``retry_max`` while reads keep failing; the last applied configuration stays in
force meanwhile, and an outage is logged once.

Values are stored v1beta1 JSON. ``resourceVersion`` comes from the key's
``mod_revision``; a value without namespace or id takes them from its key. A value that
does not decode is logged (once per revision of the key) and left out, as the
apiserver's own lists leave it out. After changes the proxier gets the full sets,
debounced by ``debounce`` seconds so a burst (a service and its endpoints) is applied
once.
"""

from __future__ import annotations

import trio

from kubecore.api import Endpoints, InvalidObject, Service, apply_defaults, decode
from kubecore.apiserver.keys import ENDPOINTS_ROOT, SERVICE_ROOT
from kubecore.log import get_logger
from kubecore.proxy import Proxier
from kubecore.store import EventType, KeyValue, Store, StoreError
from kubecore_proxy_userspace.feed import Feed

log = get_logger("kubecore.proxy_userspace")

#: The one prefix read and watched: it holds both roots.
PREFIX = "/registry/services/"
_ROOTS: tuple[tuple[str, type[Service] | type[Endpoints]], ...] = (
    (SERVICE_ROOT + "/", Service),
    (ENDPOINTS_ROOT + "/", Endpoints),
)

def decode_kv(kv: KeyValue) -> Service | Endpoints | None:
    """The object stored at ``kv`` (defaults applied, ``resourceVersion`` set), ``None``
    for a key outside the two roots. Raises :class:`InvalidObject` for a bad value."""
    for root, model in _ROOTS:
        if kv.key.startswith(root):
            parts = kv.key[len(root):].split("/")
            if len(parts) != 2 or not all(parts):
                return None  # not <ns>/<id>: nothing the apiserver writes
            return _finish(decode(kv.value, kind=model, source=kv.key), parts, kv)
    return None


def _finish(obj: Service | Endpoints, parts: list[str], kv: KeyValue) -> Service | Endpoints:
    namespace, name = parts
    if not obj.namespace:
        obj.namespace = namespace
    if not obj.id:
        obj.id = name
    obj.resource_version = kv.mod_revision
    return apply_defaults(obj)


class StoreFeed(Feed):
    """Feeds ``proxier`` from ``store`` until cancelled (see the module docstring).

    ``reads`` counts full reads of the prefix and ``applied`` the configurations handed
    to the proxier (diagnostics and tests). The store is not closed here: its owner
    closes it."""

    origin = "the store"

    def __init__(
        self,
        store: Store,
        proxier: Proxier,
        *,
        debounce: float = 0.05,
        retry: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        super().__init__(proxier, debounce)
        self.store = store
        self.retry = retry
        self.retry_max = retry_max
        self.reads = 0
        self._objects: dict[str, Service | Endpoints] = {}  # store key -> object
        self._bad: dict[str, int] = {}  # store key -> revision of the undecodable value
        self._listed = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Started once the first read was applied, or failed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow)
            nursery.start_soon(self._apply_loop)
            await self._first_try.wait()
            task_status.started()

    def snapshot(self) -> tuple[list[Service], list[Endpoints]]:
        """The services and endpoints known now (key order)."""
        services: list[Service] = []
        endpoints: list[Endpoints] = []
        for key in sorted(self._objects):
            obj = self._objects[key]
            if isinstance(obj, Service):
                services.append(obj)
            else:
                endpoints.append(obj)
        return services, endpoints

    def ready(self) -> bool:
        return self._listed

    def current(self) -> tuple[list[Service], list[Endpoints]]:
        return self.snapshot()

    async def _follow(self) -> None:
        delay = self.retry
        failing = False
        while True:
            try:
                kvs, revision = await self.store.list(PREFIX)
            except StoreError as exc:
                if not failing:
                    failing = True
                    log.warning("proxy cannot read services from the store", prefix=PREFIX,
                                error=str(exc), note="the last configuration stays in force")
                self._first_try.set()
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            if failing:
                failing = False
                log.info("proxy reads services from the store again", prefix=PREFIX)
            delay = self.retry
            self.reads += 1
            self._objects.clear()
            for kv in kvs:
                self._put(kv)
            self._listed = True
            self.changed()
            try:
                async with self.store.watch(PREFIX, revision) as events:
                    async for event in events:
                        if event.type is EventType.DELETE:
                            self._objects.pop(event.kv.key, None)
                            self._bad.pop(event.kv.key, None)
                        else:
                            self._put(event.kv)
                        self.changed()
            except StoreError as exc:
                log.info("proxy store watch ended; reading again", prefix=PREFIX,
                         error=str(exc))
                await trio.sleep(self.retry)

    def _put(self, kv: KeyValue) -> None:
        try:
            obj = decode_kv(kv)
        except InvalidObject as exc:
            self._objects.pop(kv.key, None)
            if self._bad.get(kv.key) != kv.mod_revision:
                self._bad[kv.key] = kv.mod_revision
                log.warning("stored service or endpoints skipped", key=kv.key,
                            error=str(exc).splitlines()[0] if str(exc) else repr(exc))
            return
        self._bad.pop(kv.key, None)
        if obj is not None:
            self._objects[kv.key] = obj

