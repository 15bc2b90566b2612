"""What differs between resources on create, update, delete and read.

The :class:`~kubecore.apiserver.registry.Registry` runs the same flow for every
resource (namespace, keys, compare-and-swap, errors) and asks the resource's
:class:`Strategy` for the rest: server-set fields, validation, side effects and read-time
decoration. Strategies raise :class:`~kubecore.api.InvalidObject` (422) or
:class:`~kubecore.apiserver.errors.StatusError`; they never write the object itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from kubecore.api import Cause, InvalidObject, Reason, TypeMeta, validate
from kubecore.apiserver.resources import Resource

if TYPE_CHECKING:
    from kubecore.apiserver.registry import Registry


def new_uid() -> str:
    """A new object uid (v1 UUIDs, as v0.5)."""
    return str(uuid.uuid1())


def now() -> datetime:
    """The creation time of a new object: UTC, to the second (as v0.5's util.Now)."""
    return datetime.now(UTC).replace(microsecond=0)


def key_causes(obj: TypeMeta) -> list[Cause]:
    """Causes for an id or namespace that cannot be a key segment (``/`` would reach
    into another object's key; control characters have no place in a key)."""
    causes = []
    for field, value in (("id", obj.id), ("namespace", obj.namespace)):
        if "/" in value or value in (".", "..") or any(ord(c) < 32 or ord(c) == 127
                                                      for c in value):
            causes.append(Cause(Reason.INVALID, f"invalid value {value!r}: must not contain "
                                "'/' or control characters, or be '.' or '..'", field))
    return causes


def ensure(obj: TypeMeta, causes: Iterable[Cause]) -> None:
    """Raise InvalidObject (422) with every cause, if there is any."""
    found = list(causes)
    if found:
        raise InvalidObject(obj.KIND, obj.id, found)


class Strategy:
    """The per-resource behaviour; the defaults suit a plain stored object.

    ``upsert``: POST and PUT write whether or not the object exists, and PUT needs no
    resourceVersion (endpoints).
    """

    resource: ClassVar[Resource]
    upsert: ClassVar[bool] = False

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # -- selectors -------------------------------------------------------------------

    def labels(self, obj: TypeMeta) -> Mapping[str, str]:
        labels: Mapping[str, str] = getattr(obj, "labels", {})
        return labels

    def fields(self, obj: TypeMeta) -> Mapping[str, str]:
        values = self.resource.field_values
        return values(obj) if values is not None else {}

    # -- writes ------------------------------------------------------------------------

    async def prepare_create(self, obj: TypeMeta) -> TypeMeta:
        """The object to store for a create (namespace already resolved): defaults,
        server-set fields, validation."""
        obj.uid = new_uid()
        obj.creation_timestamp = now()
        ensure(obj, [*validate(obj), *key_causes(obj)])
        return obj

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        """The object to store for an update of ``old`` (as stored) by ``new``; keeps the
        server-set fields and validates."""
        keep_identity(old, new)
        ensure(new, [*validate(new), *key_causes(new)])
        return new

    async def create(self, key: str, obj: TypeMeta) -> TypeMeta:
        """Store a prepared object (services override this to allocate under a lock)."""
        return await self.registry.store_create(self.resource, key, obj)

    async def after_create(self, obj: TypeMeta) -> None:
        """Side effects once ``obj`` is stored."""

    async def after_update(self, old: TypeMeta, new: TypeMeta) -> None:
        """Side effects once ``new`` replaced ``old``."""

    def check_delete(self, obj: TypeMeta) -> None:
        """Raise a StatusError to refuse deleting ``obj``."""

    async def after_delete(self, obj: TypeMeta) -> None:
        """Side effects once ``obj`` (its last value) is gone."""

    # -- reads ---------------------------------------------------------------------

    async def decorate(self, objs: list[TypeMeta]) -> list[TypeMeta]:
        """What a GET or list answers for stored objects (computed fields filled in)."""
        return [self.decorate_one(obj) for obj in objs]

    def decorate_one(self, obj: TypeMeta) -> TypeMeta:
        """The cheap, per-object part of :meth:`decorate`; also used for watch events.
        Returns a new object or ``obj`` itself, never changes ``obj``, and leaves what
        :meth:`labels` and :meth:`fields` read as it was (selectors may test either)."""
        return obj

    @property
    def decorates_each(self) -> bool:
        """Whether :meth:`decorate` is :meth:`decorate_one` on each object (so a list
        may be answered with shared :meth:`Registry.view` objects)."""
        return type(self).decorate is Strategy.decorate


def keep_identity(old: TypeMeta, new: TypeMeta) -> None:
    """Carry the fields only the server sets (uid, creation time) from ``old`` to ``new``."""
    new.uid = old.uid
    new.creation_timestamp = old.creation_timestamp

