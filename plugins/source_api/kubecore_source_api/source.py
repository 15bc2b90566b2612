"""Pods bound to this host, listed then watched through the apiserver.

The source lists pods with ``fields DesiredState.Host=<hostname>`` (every namespace)
and watches from the list's ``resourceVersion``; each change yields a full snapshot of
BoundPods built from them: ``id``, ``uid``, ``namespace`` (``default`` when empty),
``creationTimestamp``, ``selfLink`` ``/api/v1beta1/boundPods/<id>``, and a spec that
is the pod's manifest (volumes, containers, restart policy) plus its node selector.
A snapshot equal to the last one yielded (a status update touches no spec) is not
yielded again.

Service environment variables (v0.5 appends them at binding, into the host's BoundPods,
which only an etcd source reads): when a pod is first seen, the services are listed
(every namespace) and those created no later than the pod give its containers'
variables (:func:`kubecore.apiserver.envvars.service_env`), appended to their own. They
are kept for as long as the pod is bound, so a service created or deleted later changes
no running pod; the creation-time rule gives the same variables after a kubelet
restart, so adopted containers keep their hash.

A watch that ends, or answers 410 Gone, is followed by a new list at once (after a
pause if the previous watch lasted under a second). An unreachable apiserver or
another error keeps the last snapshot in force and retries after ``retry_min`` seconds,
doubling to ``retry_max``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

import trio

from kubecore.api import DEFAULT_NAMESPACE, BoundPod, EnvVar, Pod, PodSpec, Service
from kubecore.apiserver.envvars import service_env
from kubecore.client import ApiClient, ApiError, ClientError
from kubecore.kubelet.sources import Snapshot
from kubecore.log import get_logger

log = get_logger("kubecore.source_api")

SOURCE_NAME = "api"
HOST_FIELD = "DesiredState.Host"


def bound_pod(pod: Pod, env: Sequence[EnvVar] = ()) -> BoundPod:
    """The BoundPod the kubelet runs for API pod ``pod``, ``env`` appended to each
    container's environment."""
    manifest = pod.desired_state.manifest
    containers = manifest.containers
    if env:
        # Shallow: the BoundPod shares the pod's parts, as its volumes do; the merger
        # works on its own deep copy (apply_defaults).
        containers = [c.model_copy(update={"env": [*c.env, *env]}) for c in containers]
    return BoundPod(
        id=pod.id,
        uid=pod.uid,
        namespace=pod.namespace or DEFAULT_NAMESPACE,
        creation_timestamp=pod.creation_timestamp,
        self_link=f"/api/v1beta1/boundPods/{pod.id}",
        spec=PodSpec(volumes=manifest.volumes, containers=containers,
                     restart_policy=manifest.restart_policy,
                     node_selector=pod.node_selector),
    )


def snapshot_of(pods: Iterable[Pod],
                envs: Mapping[str, Sequence[EnvVar]] | None = None) -> Snapshot:
    """A full snapshot of ``pods`` in (namespace, id) order; ``envs`` maps a pod uid to
    the service variables its containers get."""
    ordered = sorted(pods, key=lambda p: (p.namespace or DEFAULT_NAMESPACE, p.id))
    envs = envs or {}
    return Snapshot(pods=tuple(bound_pod(pod, envs.get(pod.uid, ())) for pod in ordered))


def services_for(pod: Pod, services: Iterable[Service]) -> list[EnvVar]:
    """The service variables of ``pod``: those of the services created no later than
    the pod (all of them when either has no creation time)."""
    created = pod.creation_timestamp
    return service_env(
        s for s in services
        if created is None or s.creation_timestamp is None
        or s.creation_timestamp <= created
    )


async def _update_envs(client: ApiClient, pods: Iterable[Pod],
                       envs: dict[str, list[EnvVar]]) -> None:
    """Give each pod not yet in ``envs`` its variables; forget pods no longer bound."""
    current = {pod.uid: pod for pod in pods}
    for uid in set(envs) - set(current):
        del envs[uid]
    new = [pod for uid, pod in current.items() if uid not in envs]
    if new:
        services = (await client.list(Service)).items
        for pod in new:
            envs[pod.uid] = services_for(pod, services)


def _key(pod: Pod) -> tuple[str, str]:
    return (pod.namespace or DEFAULT_NAMESPACE, pod.id)


class ApiSource:
    """A :class:`~kubecore.kubelet.sources.ManifestSource` named ``api``.

    ``client_factory`` is called when :meth:`snapshots` starts (the apiserver of the
    same run is known only then); it returns a client the source closes, or ``None``
    when there is no apiserver.
    """

    name = SOURCE_NAME

    def __init__(
        self,
        client_factory: Callable[[], ApiClient | None],
        hostname: str,
        *,
        retry_min: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        self.client_factory = client_factory
        self.hostname = hostname
        self.retry_min = retry_min
        self.retry_max = retry_max

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        client = self.client_factory()
        if client is None:
            # In the default plugin set: a node without an apiserver is a normal setup.
            log.info("source_api has no apiserver (set kubecore.api_server or run the"
                     " master role); it yields no pods")
            await trio.sleep_forever()
        assert client is not None
        fields = {HOST_FIELD: self.hostname}
        last: Snapshot | None = None
        envs: dict[str, list[EnvVar]] = {}
        delay = self.retry_min
        try:
            while True:
                try:
                    listed = await client.list(Pod, fields=fields)
                    pods = {_key(pod): pod for pod in listed.items}
                    await _update_envs(client, pods.values(), envs)
                    snapshot = snapshot_of(pods.values(), envs)
                    if snapshot != last:
                        last = snapshot
                        yield snapshot
                    opened = trio.current_time()
                    async with client.watch(Pod, listed.resource_version,
                                            fields=fields) as watch:
                        async for event in watch:
                            if event.type == "DELETED":
                                pods.pop(_key(event.object), None)
                            else:
                                pods[_key(event.object)] = event.object
                            await _update_envs(client, pods.values(), envs)
                            snapshot = snapshot_of(pods.values(), envs)
                            if snapshot != last:
                                last = snapshot
                                yield snapshot
                    delay = self.retry_min
                    if trio.current_time() - opened < 1.0:
                        await trio.sleep(self.retry_min)  # a stream that drops at once
                    continue
                except ApiError as exc:
                    if exc.code == 410:
                        log.info("pod watch too old; listing again")
                        continue
                    log.warning("pod watch failed", error=str(exc), retry_in=delay)
                except ClientError as exc:
                    log.warning("apiserver unreachable; the last pods stay", error=str(exc),
                                retry_in=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
