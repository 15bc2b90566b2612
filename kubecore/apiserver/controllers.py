"""Replication controllers: an id by default, ``currentState.replicas`` computed on read."""

from __future__ import annotations

from typing import cast

from kubecore.api import (
    ReplicationController,
    ReplicationControllerState,
    Selector,
    TypeMeta,
    apply_defaults,
    validate,
)
from kubecore.apiserver.resources import CONTROLLERS, PODS
from kubecore.apiserver.strategy import (
    Strategy,
    ensure,
    keep_identity,
    key_causes,
    new_uid,
    now,
)


class ControllerStrategy(Strategy):
    """An empty id becomes a new UUID; the stored ``currentState`` is dropped, and every
    GET or list answers ``currentState.replicas`` = the number of pods in the
    controller's namespace matching its replica selector (as v0.5). Watch events carry
    the stored object without that count."""

    resource = CONTROLLERS

    async def prepare_create(self, obj: TypeMeta) -> TypeMeta:
        rc = apply_defaults(cast(ReplicationController, obj))
        rc.uid = new_uid()
        if not rc.id:
            rc.id = rc.uid
        rc.creation_timestamp = now()
        rc.current_state = ReplicationControllerState()
        ensure(rc, [*validate(rc), *key_causes(rc)])
        return rc

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        rc = apply_defaults(cast(ReplicationController, new))
        keep_identity(old, rc)
        rc.current_state = ReplicationControllerState()
        ensure(rc, [*validate(rc), *key_causes(rc)])
        return rc

    async def decorate(self, objs: list[TypeMeta]) -> list[TypeMeta]:
        if not objs:
            return objs
        namespaces = {obj.namespace for obj in objs}
        # One read for all: a single namespace's pods, or everyone's.
        scope = next(iter(namespaces)) if len(namespaces) == 1 else None
        pods, _ = await self.registry.list_raw(PODS.name, scope)
        result: list[TypeMeta] = []
        for obj in objs:
            rc = cast(ReplicationController, obj)
            selector = Selector.from_set(rc.desired_state.replica_selector)
            count = 0
            if not selector.empty:
                count = sum(1 for pod in pods if pod.namespace == rc.namespace
                            and selector.matches(getattr(pod, "labels", {})))
            result.append(rc.model_copy(update={
                "current_state": ReplicationControllerState(replicas=count)
            }))
        return result
