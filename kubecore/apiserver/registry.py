"""Objects <-> store: list, get, create, update (compare-and-swap), delete, bind, watch.

Contract:
- Values are stored as v1beta1 JSON without ``resourceVersion`` or ``selfLink``; every
  object read back carries ``kind``, ``apiVersion``, ``selfLink`` and
  ``resourceVersion`` = the key's ``mod_revision`` (never the body's). Lists carry the
  store revision they were read at, from which a watch misses nothing.
- Namespaces: a list or watch without a namespace spans all of them; the other verbs
  default to ``default``. A body whose namespace differs from an explicit ``?namespace``
  is a 409 Conflict; without one, the body's namespace (else ``default``) is used.
- Updates are compare-and-swap on the body's ``resourceVersion``: missing or 0 on an
  existing object, or stale, is a 409 Conflict; an update of a missing object is a 404.
  Endpoints are upserts (no resourceVersion needed).
- :meth:`Registry.view` hands out shared objects (watch events, in-process lists): one
  decoded, decorated object per stored value while anyone holds it. Their readers must
  not change them.
- Errors are raised as :class:`~kubecore.apiserver.errors.StatusError` or
  :class:`~kubecore.api.InvalidObject`; a store that cannot be reached raises
  :class:`~kubecore.store.StoreUnavailable` (the HTTP layer answers 503).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from kubecore.api import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    Binding,
    MinionList,
    Selector,
    Status,
    TypeMeta,
)
from kubecore.apiserver import bindings, errors
from kubecore.apiserver.controllers import ControllerStrategy
from kubecore.apiserver.endpoints import EndpointsStrategy
from kubecore.apiserver.events import EventStrategy
from kubecore.apiserver.keys import DEFAULT_HOST_KEY, check_host_key_template
from kubecore.apiserver.minions import MinionStrategy
from kubecore.apiserver.pods import PodStrategy
from kubecore.apiserver.portals import DEFAULT_PORTAL_NET, PortalAllocator
from kubecore.apiserver.resources import Resource
from kubecore.apiserver.services import ServiceStrategy
from kubecore.apiserver.stored import encode_stored
from kubecore.apiserver.strategy import Strategy
from kubecore.apiserver.watch import Watcher
from kubecore.log import get_logger
from kubecore.store import Conflict, KeyExists, KeyNotFound, KeyValue, Store

log = get_logger("kubecore.apiserver")

# Compare-and-swap loops (upserts, host lists) give up after this many lost races.
MAX_RETRIES = 20
# Decoded values kept for :meth:`Registry.read_shared` (every open watch of a resource
# decodes the same changes; the scheduler alone holds two pod watches).
SHARED_READS = 512


K = TypeVar("K")
V = TypeVar("V")


def _put_recent(recent: OrderedDict[K, V], key: K, value: V) -> None:
    """Put ``key`` in ``recent`` as its newest entry; past :data:`SHARED_READS`
    entries, the oldest goes."""
    recent[key] = value
    recent.move_to_end(key)
    if len(recent) > SHARED_READS:
        recent.popitem(last=False)


class Registry:
    """The apiserver's view of the store; one per server, safe to share between tasks.

    ``portal_net``: where service portal IPs are allocated. ``host_key``: the key
    template of each host's BoundPods (``{host}`` is replaced).
    """

    def __init__(
        self,
        store: Store,
        *,
        portal_net: str = DEFAULT_PORTAL_NET,
        host_key: str = DEFAULT_HOST_KEY,
    ) -> None:
        self.store = store
        self.portals = PortalAllocator(portal_net)
        self.host_key = check_host_key_template(host_key)
        self.host_lists = bindings.HostLists()
        strategies: list[Strategy] = [
            PodStrategy(self),
            ServiceStrategy(self),
            ControllerStrategy(self),
            EndpointsStrategy(self),
            MinionStrategy(self),
            EventStrategy(self),
        ]
        self.strategies: dict[str, Strategy] = {s.resource.name: s for s in strategies}
        self._shared: OrderedDict[tuple[str, str, int], tuple[bytes, TypeMeta | None]] = (
            OrderedDict())
        self._views: weakref.WeakValueDictionary[tuple[str, str, int, bytes], TypeMeta] = (
            weakref.WeakValueDictionary())
        self._held: dict[tuple[str, str, int, bytes], TypeMeta] = {}  # raw reads of views
        self._written: OrderedDict[tuple[str, str, bytes], TypeMeta] = OrderedDict()

    # -- plumbing ------------------------------------------------------------------------

    def strategy(self, name: str) -> Strategy:
        """The strategy of resource ``name``; a StatusError 404 for an unknown one."""
        strategy = self.strategies.get(name)
        if strategy is None:
            raise errors.StatusError(404, errors.NOT_FOUND, f"unknown resource {name!r}")
        return strategy

    def read(self, resource: Resource, kv: KeyValue) -> TypeMeta | None:
        """The object stored in ``kv`` as a response carries it; ``None`` (logged) if the
        stored value is not a valid object of the resource's kind."""
        try:
            obj = resource.model.model_validate_json(kv.value)
        except (ValidationError, ValueError) as exc:
            log.warning("skipping undecodable stored object", key=kv.key,
                        error=str(exc).splitlines()[0])
            return None
        return self._stamp(resource, obj, kv.mod_revision)

    @staticmethod
    def _stamp(resource: Resource, obj: TypeMeta, revision: int) -> TypeMeta:
        return obj.model_copy(update={
            "kind": resource.kind,
            "api_version": API_VERSION,
            "self_link": resource.self_link(obj.id),
            "resource_version": revision,
        })

    def read_shared(self, resource: Resource, kv: KeyValue) -> TypeMeta | None:
        """:meth:`read`, answered without decoding when ``kv`` (a key at one revision)
        was read or written recently, or its :meth:`view` is still held. The object may
        be handed to other callers too: never change it (``model_copy`` with an update
        makes a changed one)."""
        index = (resource.name, kv.key, kv.mod_revision)
        cached = self._shared.get(index)
        if cached is not None and cached[0] == kv.value:
            self._shared.move_to_end(index)
            return cached[1]
        held = self._held.get((*index, kv.value))
        if held is not None:
            return held
        written = self._written.get((resource.name, kv.key, kv.value))
        obj = (self._stamp(resource, written, kv.mod_revision) if written is not None
               else self.read(resource, kv))
        self._keep(index, kv.value, obj)
        return obj

    def _keep(self, index: tuple[str, str, int], value: bytes, obj: TypeMeta | None) -> None:
        _put_recent(self._shared, index, (value, obj))

    def remember(self, resource: Resource, key: str, value: bytes, obj: TypeMeta) -> None:
        """Let :meth:`read_shared` answer ``value`` at ``key`` with ``obj``, whose
        encoding it is, instead of decoding it: a writer calls this before it writes, so
        the watches of the change (which may see it before the write returns) need not
        decode what it just encoded. ``obj`` must not be changed afterwards."""
        _put_recent(self._written, (resource.name, key, value), obj)

    def view(self, strategy: Strategy, kv: KeyValue) -> TypeMeta | None:
        """``kv`` as a watch event or an in-process list hands it out: read and
        decorated (``decorate_one``), ``None`` if undecodable. One object per stored value
        for as long as anyone holds it, so every watch and in-process reader of a change
        shares one decode. Shared: never change it."""
        index = (strategy.resource.name, kv.key, kv.mod_revision, kv.value)
        obj = self._views.get(index)
        if obj is None:
            raw = self.read_shared(strategy.resource, kv)
            if raw is None:
                return None
            obj = strategy.decorate_one(raw)
            if obj is raw:
                obj = raw.model_copy()  # the view alone is held weakly
            self._views[index] = obj
            # The undecorated object lives as long as its view: a binding reading the
            # pod the scheduler holds, for one, needs no decode.
            self._held[index] = raw
            weakref.finalize(obj, self._held.pop, index, None)
        return obj

    def _read_or_fail(self, resource: Resource, kv: KeyValue) -> TypeMeta:
        obj = self.read(resource, kv)
        if obj is None:
            raise errors.StatusError(500, errors.INTERNAL_ERROR,
                                     f"the stored value at {kv.key} is not a valid "
                                     f"{resource.kind}")
        return obj

    def _resolve_namespace(
        self, resource: Resource, obj: TypeMeta, namespace: str | None
    ) -> TypeMeta:
        if not resource.namespaced:
            return obj
        if namespace and obj.namespace and obj.namespace != namespace:
            raise errors.StatusError(
                409, errors.CONFLICT,
                f"the namespace of the object ({obj.namespace!r}) does not match the "
                f"namespace of the request ({namespace!r})",
                kind=errors.kind_name(resource.kind), id=obj.id,
            )
        if not obj.namespace:
            obj.namespace = namespace or DEFAULT_NAMESPACE
        return obj

    def _check_namespace(self, resource: Resource, obj: TypeMeta, namespace: str) -> None:
        # Events share one key space; another namespace's event is not this one's.
        if resource.namespaced and (obj.namespace or DEFAULT_NAMESPACE) != namespace:
            raise errors.not_found(resource.kind, obj.id)

    def _matcher(
        self, strategy: Strategy, labels: Selector | None, fields: Selector | None
    ) -> Callable[[TypeMeta], bool]:
        resource = strategy.resource
        label_sel = labels if labels is not None and not labels.empty else None
        field_sel = fields if fields is not None and not fields.empty else None
        for selector, policy, what in ((label_sel, resource.labels, "label"),
                                       (field_sel, resource.fields, "field")):
            if selector is not None and policy == "reject":
                raise errors.bad_request(
                    f"{resource.name} cannot be selected by {what} ({what}s={selector})"
                )
        if resource.labels == "ignore":
            label_sel = None
        if resource.fields == "ignore":
            field_sel = None

        def matches(obj: TypeMeta) -> bool:
            if label_sel is not None and not label_sel.matches(strategy.labels(obj)):
                return False
            return field_sel is None or field_sel.matches(strategy.fields(obj))

        return matches

    async def store_create(self, resource: Resource, key: str, obj: TypeMeta) -> TypeMeta:
        """Create ``key`` holding ``obj``; 409 AlreadyExists if it is there."""
        try:
            kv = await self.store.create(key, encode_stored(obj))
        except KeyExists:
            raise errors.already_exists(resource.kind, obj.id) from None
        return self._read_or_fail(resource, kv)

    # -- reads -------------------------------------------------------------------------

    async def list_raw(
        self, name: str, namespace: str | None = None
    ) -> tuple[list[TypeMeta], int]:
        """Every stored object of resource ``name`` (in ``namespace``, or all), not
        decorated, and the revision of the read."""
        resource = self.strategy(name).resource
        return await self._listed(resource, namespace, lambda kv: self.read(resource, kv))

    async def _listed(
        self, resource: Resource, namespace: str | None,
        read: Callable[[KeyValue], TypeMeta | None],
    ) -> tuple[list[TypeMeta], int]:
        """Every stored object of ``resource`` in ``namespace`` (or all) as ``read``
        makes it (undecodable ones left out), and the revision of the read."""
        kvs, revision = await self.store.list(resource.prefix(namespace))
        objs = [obj for kv in kvs if (obj := read(kv)) is not None]
        if namespace is not None and resource.namespaced and not resource.namespace_in_key:
            objs = [obj for obj in objs if (obj.namespace or DEFAULT_NAMESPACE) == namespace]
        return objs, revision

    async def list(
        self,
        name: str,
        *,
        namespace: str | None = None,
        labels: Selector | None = None,
        fields: Selector | None = None,
        shared: bool = False,
    ) -> TypeMeta:
        """The list object (``PodList``...) of the objects matching the selectors.

        ``shared``: the items may be :meth:`view` objects, shared with other readers in
        this process (which must not change them); otherwise they are the caller's own.
        """
        strategy = self.strategy(name)
        resource = strategy.resource
        matches = self._matcher(strategy, labels, fields)
        items: list[TypeMeta]
        if shared and strategy.decorates_each:
            views, revision = await self._listed(resource, namespace,
                                                 lambda kv: self.view(strategy, kv))
            items = [obj for obj in views if matches(obj)]
        else:
            objs, revision = await self.list_raw(name, namespace)
            items = await strategy.decorate([obj for obj in objs if matches(obj)])
        values: dict[str, Any] = {
            "kind": resource.list_model.KIND,
            "api_version": API_VERSION,
            "self_link": resource.self_link(),
            "resource_version": revision,
            "items": items,
        }
        if resource.list_model is MinionList:
            values["minions"] = items  # v1beta1 wrote both
        return resource.list_model(**values)

    async def get(self, name: str, id: str, *, namespace: str | None = None) -> TypeMeta:
        strategy = self.strategy(name)
        resource = strategy.resource
        ns = namespace or DEFAULT_NAMESPACE
        kv = await self.store.get(resource.key(ns, id))
        if kv is None:
            raise errors.not_found(resource.kind, id)
        obj = self._read_or_fail(resource, kv)
        if not resource.namespace_in_key:
            self._check_namespace(resource, obj, ns)
        return (await strategy.decorate([obj]))[0]

    # -- writes ------------------------------------------------------------------------

    async def create(
        self, name: str, obj: TypeMeta, *, namespace: str | None = None, owned: bool = False
    ) -> TypeMeta:
        """Store a new object; 409 AlreadyExists if its key is taken. ``obj`` is left as
        it was unless ``owned`` (the caller hands it over: a request body just decoded
        need not be copied first)."""
        strategy = self.strategy(name)
        resource = strategy.resource
        obj = self._resolve_namespace(resource, obj if owned else obj.model_copy(deep=True),
                                      namespace)
        if strategy.upsert:
            return await self._upsert(strategy, obj)
        prepared = await strategy.prepare_create(obj)
        stored = await strategy.create(resource.key(prepared.namespace, prepared.id), prepared)
        await strategy.after_create(stored)
        return (await strategy.decorate([stored]))[0]

    async def update(
        self, name: str, obj: TypeMeta, *, namespace: str | None = None, owned: bool = False
    ) -> TypeMeta:
        """Replace an object at the body's resourceVersion (see the module docstring);
        ``obj`` is left as it was unless ``owned`` (as for :meth:`create`)."""
        strategy = self.strategy(name)
        resource = strategy.resource
        obj = self._resolve_namespace(resource, obj if owned else obj.model_copy(deep=True),
                                      namespace)
        if strategy.upsert:
            return await self._upsert(strategy, obj)
        if not obj.id:
            raise errors.bad_request(f"the {resource.kind} to update has no id")
        key = resource.key(obj.namespace, obj.id)
        kv = await self.store.get(key)
        if kv is None:
            raise errors.not_found(resource.kind, obj.id)
        old = self._read_or_fail(resource, kv)
        if not resource.namespace_in_key:
            self._check_namespace(resource, old, obj.namespace or DEFAULT_NAMESPACE)
        expected = obj.resource_version
        if expected == 0:
            raise errors.conflict(resource.kind, obj.id,
                                  "resourceVersion is required to update an existing object")
        if expected != kv.mod_revision:
            raise errors.conflict(resource.kind, obj.id,
                                  f"resourceVersion {expected} is not the current one "
                                  f"({kv.mod_revision}); get the object and retry")
        new = await strategy.prepare_update(old, obj)
        try:
            written = await self.store.update(key, encode_stored(new), expected)
        except Conflict:
            raise errors.conflict(resource.kind, obj.id,
                                  "the object was modified concurrently; get it and retry"
                                  ) from None
        except KeyNotFound:
            raise errors.not_found(resource.kind, obj.id) from None
        stored = self._read_or_fail(resource, written)
        await strategy.after_update(old, stored)
        return (await strategy.decorate([stored]))[0]

    async def _upsert(self, strategy: Strategy, obj: TypeMeta) -> TypeMeta:
        """Create or replace; a non-zero resourceVersion still has to be the current one."""
        resource = strategy.resource
        if not obj.id:
            # Validation names the missing id together with every other problem.
            await strategy.prepare_create(obj.model_copy(deep=True))
            raise errors.bad_request(f"the {resource.kind} has no id")
        key = resource.key(obj.namespace, obj.id)
        for _ in range(MAX_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                prepared = await strategy.prepare_create(obj.model_copy(deep=True))
                try:
                    written = await self.store.create(key, encode_stored(prepared))
                except KeyExists:
                    continue
                stored = self._read_or_fail(resource, written)
                await strategy.after_create(stored)
                return (await strategy.decorate([stored]))[0]
            old = self._read_or_fail(resource, kv)
            expected = obj.resource_version
            if expected and expected != kv.mod_revision:
                raise errors.conflict(resource.kind, obj.id,
                                      f"resourceVersion {expected} is not the current one "
                                      f"({kv.mod_revision})")
            new = await strategy.prepare_update(old, obj.model_copy(deep=True))
            try:
                written = await self.store.update(key, encode_stored(new), kv.mod_revision)
            except (Conflict, KeyNotFound):
                if expected:
                    raise errors.conflict(resource.kind, obj.id,
                                          "the object was modified concurrently") from None
                continue
            stored = self._read_or_fail(resource, written)
            await strategy.after_update(old, stored)
            return (await strategy.decorate([stored]))[0]
        raise errors.conflict(resource.kind, obj.id, "too many concurrent writers; retry")

    async def delete(self, name: str, id: str, *, namespace: str | None = None) -> Status:
        """Remove an object; its side effects (a pod leaves its host's list, a service's
        endpoints go with it) follow. Answers ``Status`` Success."""
        strategy = self.strategy(name)
        resource = strategy.resource
        ns = namespace or DEFAULT_NAMESPACE
        key = resource.key(ns, id)
        kv = await self.store.get(key)
        if kv is None:
            raise errors.not_found(resource.kind, id)
        current = self.read(resource, kv)
        if current is not None:
            if not resource.namespace_in_key:
                self._check_namespace(resource, current, ns)
            strategy.check_delete(current)
        try:
            deleted = await self.store.delete(key)
        except KeyNotFound:
            raise errors.not_found(resource.kind, id) from None
        last = self.read(resource, deleted)
        if last is not None:
            await strategy.after_delete(last)
        return errors.success(resource.kind, id)

    async def bind(self, binding: Binding, *, namespace: str | None = None) -> Status:
        """Assign a pod to a host (see :mod:`kubecore.apiserver.bindings`)."""
        return await bindings.bind(self, binding, namespace)

    # -- watch -------------------------------------------------------------------------

    def open_watch(
        self,
        name: str,
        *,
        resource_version: int = 0,
        namespace: str | None = None,
        labels: Selector | None = None,
        fields: Selector | None = None,
    ) -> Watcher:
        """A checked watch of resource ``name`` (404 if it cannot be watched, 400 for a
        selector it refuses); ``await watcher.run(emit)`` streams it (see
        :mod:`kubecore.apiserver.watch`)."""
        strategy = self.strategy(name)
        if not strategy.resource.watchable:
            raise errors.StatusError(404, errors.NOT_FOUND,
                                     f"{strategy.resource.name} cannot be watched")
        matches = self._matcher(strategy, labels, fields)
        return Watcher(self, strategy, resource_version, namespace, matches)
