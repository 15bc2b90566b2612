"""Every hook kubecore defines: the one contract plugins implement.

A plugin is a plain module (or any object) whose functions are marked with
``@kubecore.hookimpl`` and named after the hooks below. It is found through the
entry-point group ``kubecore.plugins``; the entry point's name is the plugin's name
(``--plugins store_sqlite,runtime_exec``). kubecore's own components (apiserver,
scheduler, controllers, kubelet, proxy) are registered the same way, as built-in
plugins, so nothing a third party can do is reserved to the kernel.

Hooks marked *firstresult* pick one answer: plugins are asked in pluggy order (last
registered first, ``tryfirst``/``trylast`` respected) and the first non-``None`` result
wins, so a plugin declines by returning ``None``. The other hooks collect a list of
every plugin's non-``None`` result.

Hooks that take ``ctx`` receive the :class:`kubecore.context.Context` of the run: its
validated configuration, role (``all``, ``master`` or ``node``), hostname and data
directory.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kubecore.api import Pod
    from kubecore.config import ConfigSection
    from kubecore.context import Component, Context
    from kubecore.kubelet.sources import ManifestSource
    from kubecore.proxy import Proxier
    from kubecore.runtime import Runtime
    from kubecore.scheduler import FitPredicate, PriorityFunction
    from kubecore.store import Store

PROJECT = "kubecore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- configuration and components ---------------------------------------------------


@hookspec
def kubecore_config_section() -> ConfigSection | None:
    """Declare this plugin's configuration section.

    Return a :class:`~kubecore.config.ConfigSection` whose ``model`` (a
    :class:`~kubecore.config.SectionModel`) gives every key a type and a default; the
    section's name is the ``[table]`` users write in the TOML file and the prefix of
    ``--set name.key=value``. Keys are validated before any hook that takes ``ctx`` is
    called; read them with ``ctx.config(MyModel)``. The configuration reference in the
    docs is generated from these declarations.
    """


@hookspec
def kubecore_components(ctx: Context) -> Iterable[Component] | None:
    """Long-running parts this plugin adds to the run, for the role in ``ctx``.

    Each :class:`~kubecore.context.Component` is started in stage order in the kernel's
    nursery and must call ``task_status.started()`` once it serves; a component that
    raises before that fails the start-up with its message, one that raises later is
    logged and restarted with backoff. On SIGINT/SIGTERM components are cancelled in
    reverse stage order, each given ``kubecore.shutdown_grace`` seconds.
    """


# -- node: manifests and containers --------------------------------------------------


@hookspec
def kubecore_manifest_sources(ctx: Context) -> Iterable[ManifestSource] | None:
    """The manifest sources this plugin is configured for (often none or one).

    A :class:`~kubecore.kubelet.sources.ManifestSource` is an async iterator of *full
    snapshots* of the pods it wants on this node, never deltas; the kubelet's merger
    owns the desired state. A source that cannot reach its origin sends nothing (the
    last good snapshot stays in force) and keeps retrying.
    """


@hookspec(firstresult=True)
def kubecore_runtime(ctx: Context) -> Runtime | None:
    """The container runtime for this node (*firstresult*).

    Return ``None`` to decline (for instance when the Docker daemon does not answer),
    letting the next plugin answer; the Docker runtime is asked before the exec runtime.
    """


# -- master: state and scheduling ----------------------------------------------------


@hookspec(firstresult=True)
def kubecore_store(ctx: Context) -> Store | None:
    """The store that holds all cluster state (*firstresult*). See :mod:`kubecore.store`."""


@hookspec
def kubecore_scheduler_predicates(ctx: Context) -> Mapping[str, FitPredicate] | None:
    """Fit predicates by name: a minion is feasible for a pod only if all of them pass.

    A :data:`~kubecore.scheduler.FitPredicate` is called with the pod and a
    :class:`~kubecore.scheduler.NodeInfo` (the minion and the pods already on it) and
    returns ``True`` when the pod fits. Names appear in "failed to find a fit" events.
    A name given by two plugins is a start-up error.
    """


@hookspec
def kubecore_scheduler_priorities(ctx: Context) -> Mapping[str, PriorityFunction] | None:
    """Priority functions by name; a host's score is the sum of every function's score.

    A :data:`~kubecore.scheduler.PriorityFunction` maps the pod and the feasible nodes
    to an integer score per host name. As in Kubernetes v0.5, **lower is better**.
    A function whose score of a node does not depend on the pod can be marked
    :func:`~kubecore.scheduler.node_only`: it is then asked only about nodes that
    changed, and its kept scores serve every pod.
    """


@hookspec(firstresult=True)
def kubecore_scheduler_select_host(
    pod: Pod, scores: Mapping[str, int], rng: random.Random
) -> str | None:
    """Pick the host for ``pod`` from the summed ``scores`` of the feasible hosts
    (*firstresult*). The default picks uniformly at random among the lowest scores;
    ``scores`` is never empty and is read-only (it may be the scheduler's own table).
    ``rng`` is the scheduler's seeded generator."""


# -- node: services ------------------------------------------------------------------


@hookspec(firstresult=True)
def kubecore_proxier(ctx: Context) -> Proxier | None:
    """The service proxy for this node (*firstresult*). See :mod:`kubecore.proxy`."""


# The names above, for tools that list which hooks a plugin implements.
HOOK_NAMES: Sequence[str] = tuple(
    name for name in tuple(globals()) if name.startswith(f"{PROJECT}_")
)
