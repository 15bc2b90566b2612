"""Plugin discovery (stevedore, entry-point group ``kubecore.plugins``) into pluggy.

A plugin is selected by its entry-point name. With no selection the run uses
:data:`DEFAULT_PLUGINS`, skipping those that are not installed. A plugin that fails to
load is reported by name with its error and does not take the others down, unless it
was asked for by name: then the run stops with a one-line :class:`PluginError`.

kubecore's own components are built-in plugins (:data:`BUILTIN_PLUGINS`), registered
like any other but always present; each contributes its parts only when the plugins it
needs (a store, a runtime, a proxier) are there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

import pluggy
from stevedore import ExtensionManager, NamedExtensionManager

from kubecore import hookspecs
from kubecore.config import KERNEL_SECTION, ConfigSection
from kubecore.errors import PluginError

ENTRY_POINT_GROUP = "kubecore.plugins"

# stevedore logs each load failure itself; kubecore reports them once, with the name.
logging.getLogger("stevedore").setLevel(logging.CRITICAL)

#: The plugins a run loads when neither ``--plugins`` nor ``plugins = [...]`` is given:
#: an all-in-one cluster on embedded defaults. Docker is used when its daemon answers,
#: plain processes otherwise; sources only act when configured.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "store_sqlite",
    "scheduler_priority",
    "runtime_docker",
    "runtime_exec",
    "proxy_userspace",
    "source_api",
    "source_file",
    "source_http",
    "source_server",
)

#: Modules of kubecore itself registered as plugins in every run (name -> module).
BUILTIN_PLUGINS: dict[str, str] = {
    "apiserver": "kubecore.apiserver.plugin",
    "kubelet": "kubecore.kubelet.plugin",
    "scheduler": "kubecore.scheduler.plugin",
    "controllers": "kubecore.controllers.plugin",
}


@dataclass
class PluginInfo:
    """What ``kubecore plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "builtin": self.builtin,
            "error": self.error,
        }


@dataclass
class LoadedPlugins:
    """A plugin manager with the run's plugins registered, and what happened to each."""

    manager: pluggy.PluginManager
    infos: list[PluginInfo]

    @property
    def failed(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.error]

    @property
    def names(self) -> list[str]:
        return [info.name for info in self.infos if not info.error]


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _distributions() -> dict[tuple[str, str], tuple[str, str]]:
    """(entry-point name, value) -> (distribution, version), from the installed metadata.

    stevedore's cached entry points do not carry their distribution, so it is looked up
    here once per call of :func:`load` or :func:`installed_plugins`.
    """
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None:
            found[(entry_point.name, entry_point.value)] = (dist.name, dist.version)
    return found


def _info_for(
    entry_point: EntryPoint, dists: dict[tuple[str, str], tuple[str, str]]
) -> PluginInfo:
    dist, version = dists.get((entry_point.name, entry_point.value), (None, None))
    return PluginInfo(
        name=entry_point.name, module=entry_point.value, distribution=dist, version=version
    )


def _register(manager: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    """Register ``plugin``, checking its hook implementations against the specs."""
    try:
        manager.register(plugin, name=info.name)
    except Exception as exc:  # pluggy's validation errors, duplicate names
        info.error = _describe(exc)
        return
    callers = manager.get_hookcallers(plugin) or []
    unknown = sorted(caller.name for caller in callers if not caller.has_spec())
    if unknown:
        manager.unregister(plugin)
        info.error = f"implements unknown hook(s): {', '.join(unknown)}"
        return
    info.hooks = sorted(caller.name for caller in callers)


def _load_entry_points(
    names: Sequence[str] | None, dists: dict[tuple[str, str], tuple[str, str]]
) -> tuple[list[Any], list[PluginInfo]]:
    """Load the named entry points (all when ``names`` is None) through stevedore.

    Returns the loaded extensions and an info for every one that failed to import.
    """
    failures: list[PluginInfo] = []

    def on_failure(_manager: Any, entry_point: EntryPoint, exc: BaseException) -> None:
        info = _info_for(entry_point, dists)
        info.error = f"failed to load: {_describe(exc)}"
        failures.append(info)

    manager: ExtensionManager[Any]
    if names is None:
        manager = ExtensionManager(
            ENTRY_POINT_GROUP, invoke_on_load=False, on_load_failure_callback=on_failure
        )
    else:
        manager = NamedExtensionManager(
            ENTRY_POINT_GROUP,
            names=list(names),
            invoke_on_load=False,
            name_order=True,
            on_load_failure_callback=on_failure,
        )
    return list(manager.extensions), failures


def installed_plugins() -> list[PluginInfo]:
    """Every installed plugin (built-in ones first), each checked by registering it in a
    throwaway plugin manager, with the hooks it implements or why it cannot be used."""
    return _load_installed()[1]


def installed_manager() -> pluggy.PluginManager:
    """A plugin manager holding every installed plugin that loads."""
    return _load_installed()[0]


def declared_sections(manager: pluggy.PluginManager) -> list[tuple[str, ConfigSection]]:
    """(plugin name, section) for every config section the registered plugins declare.

    Raises :class:`PluginError` when two plugins declare the same section name.
    """
    owners: dict[str, str] = {KERNEL_SECTION.name: "kubecore"}
    sections: list[tuple[str, ConfigSection]] = []
    for impl in reversed(manager.hook.kubecore_config_section.get_hookimpls()):
        section = cast("ConfigSection | None", impl.function())
        if section is None:
            continue
        if section.name in owners:
            raise PluginError(
                f"config section [{section.name}] is declared by both"
                f" {owners[section.name]!r} and {impl.plugin_name!r}"
            )
        owners[section.name] = impl.plugin_name
        sections.append((impl.plugin_name, section))
    return sections


def _load_installed() -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    manager = new_manager()
    infos = [_register_builtin(manager, name, module) for name, module in BUILTIN_PLUGINS.items()]
    dists = _distributions()
    extensions, failures = _load_entry_points(None, dists)
    seen: dict[str, PluginInfo] = {}
    for ext in extensions:
        info = _info_for(ext.entry_point, dists)
        if info.name in seen:
            info.error = f"name also used by distribution {seen[info.name].distribution}"
        else:
            seen[info.name] = info
            _register(manager, ext.plugin, info)
        infos.append(info)
    infos.extend(failures)
    return manager, sorted(infos, key=lambda info: (not info.builtin, info.name))


def _register_builtin(manager: pluggy.PluginManager, name: str, module: str) -> PluginInfo:
    info = PluginInfo(name=name, module=module, distribution="kubecore", builtin=True)
    from kubecore import __version__

    info.version = __version__
    try:
        plugin = importlib.import_module(module)
    except Exception as exc:
        info.error = f"failed to load: {_describe(exc)}"
        return info
    _register(manager, plugin, info)
    return info


def installed_names() -> list[str]:
    """Names of every installed entry-point plugin, without importing any of them."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load(selected: Iterable[str] | None) -> LoadedPlugins:
    """Load the built-in plugins and ``selected`` (or the default set) into a manager.

    Raises :class:`PluginError` when an explicitly selected plugin is not installed or
    cannot be used; default plugins that are absent are skipped, broken ones reported.
    """
    explicit = selected is not None
    wanted = list(dict.fromkeys(selected if selected is not None else DEFAULT_PLUGINS))
    available = set(installed_names())
    missing = [name for name in wanted if name not in available]
    if explicit and missing:
        known = ", ".join(sorted(available)) or "none"
        raise PluginError(
            f"plugin {', '.join(repr(m) for m in missing)} is not installed"
            f" (installed plugins: {known})"
        )
    wanted = [name for name in wanted if name in available]

    manager = new_manager()
    infos = [_register_builtin(manager, name, module) for name, module in BUILTIN_PLUGINS.items()]
    broken_builtin = [info for info in infos if info.error]
    if broken_builtin:
        info = broken_builtin[0]
        raise PluginError(f"built-in plugin {info.name!r} is broken: {info.error}")

    dists = _distributions()
    extensions, failures = _load_entry_points(wanted, dists)
    by_name: dict[str, list[Any]] = {}
    for ext in extensions:
        by_name.setdefault(ext.name, []).append(ext)
    for name in wanted:
        candidates = by_name.get(name, [])
        if len(candidates) > 1:
            owners = ", ".join(
                sorted(str(_info_for(ext.entry_point, dists).distribution) for ext in candidates)
            )
            info = PluginInfo(name=name, module="?", error=f"installed twice ({owners})")
        elif candidates:
            info = _info_for(candidates[0].entry_point, dists)
            _register(manager, candidates[0].plugin, info)
        else:
            continue  # reported among the load failures
        infos.append(info)
    infos.extend(failures)

    if explicit:
        bad = [info for info in infos if info.error and not info.builtin]
        if bad:
            info = bad[0]
            raise PluginError(f"plugin {info.name!r} cannot be used: {info.error}")
    return LoadedPlugins(manager=manager, infos=infos)
