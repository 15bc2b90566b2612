"""Pods: server-set identity and state on create, restricted updates once scheduled,
and their host's BoundPods kept in step."""

from __future__ import annotations

from typing import cast

from kubecore.api import (
    POD_RUNNING,
    POD_WAITING,
    Pod,
    PodState,
    TypeMeta,
    apply_defaults,
    validate,
    validate_pod_update,
)
from kubecore.apiserver import bindings
from kubecore.apiserver.resources import PODS
from kubecore.apiserver.strategy import Strategy, ensure, keep_identity, key_causes, new_uid, now


class PodStrategy(Strategy):
    """On create (v0.5 ``pkg/registry/pod/rest.go``): ``manifest.uuid`` a new UUID, an
    empty id that UUID, ``manifest.id`` the pod id, a new ``uid``, the creation time,
    ``desiredState.status`` Running, ``desiredState.host`` "" (only a binding sets it),
    ``currentState`` just ``status`` Waiting.

    On update: id and namespace may not change; once scheduled, only labels and
    container images may (422 otherwise). ``desiredState.host`` is kept from the stored
    pod; a body without ``currentState`` keeps the stored one (a body with it is how a
    kubelet reports status). A scheduled pod whose images changed has its BoundPods
    entry rewritten; a deleted one leaves its host's list.

    Reads copy ``desiredState.host`` into ``currentState.host``.
    """

    resource = PODS

    async def prepare_create(self, obj: TypeMeta) -> TypeMeta:
        pod = apply_defaults(cast(Pod, obj))
        manifest = pod.desired_state.manifest
        manifest.uuid = new_uid()
        if not pod.id:
            pod.id = manifest.uuid
        manifest.id = pod.id
        pod.uid = new_uid()
        pod.creation_timestamp = now()
        pod.desired_state = pod.desired_state.model_copy(
            update={"manifest": manifest, "status": POD_RUNNING, "host": ""}
        )
        pod.current_state = PodState(status=POD_WAITING)
        ensure(pod, [*validate(pod), *key_causes(pod)])
        return pod

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        before = cast(Pod, old)
        pod = apply_defaults(cast(Pod, new))
        causes = validate_pod_update(before, pod)
        keep_identity(before, pod)
        was = before.desired_state
        manifest = pod.desired_state.manifest
        manifest.uuid = manifest.uuid or was.manifest.uuid
        manifest.id = pod.id
        pod.desired_state = pod.desired_state.model_copy(update={
            "manifest": manifest,
            "host": was.host,
            "status": pod.desired_state.status or was.status,
        })
        if "current_state" not in pod.model_fields_set:
            pod.current_state = before.current_state
        ensure(pod, [*causes, *validate(pod), *key_causes(pod)])
        return pod

    async def after_update(self, old: TypeMeta, new: TypeMeta) -> None:
        before, pod = cast(Pod, old), cast(Pod, new)
        host = before.desired_state.host
        images = [c.image for c in pod.desired_state.manifest.containers]
        if host and images != [c.image for c in before.desired_state.manifest.containers]:
            await bindings.rewrite_images(self.registry, host, pod)

    async def after_delete(self, obj: TypeMeta) -> None:
        pod = cast(Pod, obj)
        if pod.desired_state.host:
            await bindings.remove_bound_pod(self.registry, pod.desired_state.host,
                                            pod.namespace, pod.id)

    def decorate_one(self, obj: TypeMeta) -> TypeMeta:
        pod = cast(Pod, obj)
        current = pod.current_state.model_copy(update={"host": pod.desired_state.host})
        return pod.model_copy(update={"current_state": current})
