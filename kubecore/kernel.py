"""The kernel: plugins + configuration -> context -> components in one trio nursery.

``prepare`` does everything that can fail on bad input (plugin selection, the config
file, overrides) before anything starts; ``serve`` starts the components in stage
order, supervises them, and on SIGINT/SIGTERM stops them in reverse order. A second
signal during shutdown exits the process at once (status 130).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from kubecore import plugins
from kubecore.config import (
    KERNEL_SECTION,
    ConfigError,
    KernelConfig,
    load_file,
    merge_overrides,
    resolve,
)
from kubecore.context import Component, Context
from kubecore.errors import PluginError, StartupError
from kubecore.log import get_logger

log = get_logger("kubecore.kernel")

# The interpreter's own collection thresholds, before any tuning.
PYTHON_GC_THRESHOLD = gc.get_threshold()

RESTART_DELAY_MIN = 1.0
RESTART_DELAY_MAX = 30.0


def read_config(config_file: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The raw configuration: the TOML file (if any) with overrides applied."""
    raw = load_file(config_file) if config_file is not None else {}
    return merge_overrides(raw, overrides)


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations (0: Python's own).

    Python collects after every 700 allocations. A component decoding API objects
    allocates dozens of objects per object and keeps most of them, so at that pace the
    collector ran several times longer than the decoding itself (10,000 pods: 1.3 s to
    decode with the default, 0.5 s at 50,000). Older generations keep their defaults:
    cycles are still found, a few tens of thousands of objects later.
    """
    young = threshold or PYTHON_GC_THRESHOLD[0]
    gc.set_threshold(young, *PYTHON_GC_THRESHOLD[1:])


def kernel_config(raw: Mapping[str, Any]) -> KernelConfig:
    """Just the ``[kubecore]`` section, validated, to learn what to load."""
    return resolve({"kubecore": raw.get("kubecore", {})}, [KERNEL_SECTION]).kernel


def prepare(raw: Mapping[str, Any], loaded: plugins.LoadedPlugins | None = None) -> Context:
    """Validate ``raw`` against every loaded plugin's section and build the context."""
    if loaded is None:
        loaded = plugins.load(kernel_config(raw).plugins)
    declared = plugins.declared_sections(loaded.manager)
    sections = [KERNEL_SECTION, *(section for _, section in declared)]
    owners = {"kubecore", *(owner for owner, _ in declared)}
    ignorable = set(plugins.installed_names()) - owners
    settings = resolve(raw, sections, ignorable=ignorable)
    return Context(settings=settings, hook=loaded.manager.hook, extras={"plugins": loaded})


def collect_components(ctx: Context) -> list[Component]:
    results: Iterable[Iterable[Component] | None] = ctx.hook.kubecore_components(ctx=ctx)
    components = [component for batch in results if batch for component in batch]
    names = [component.name for component in components]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PluginError(f"component name(s) used twice: {', '.join(duplicates)}")
    return sorted(components, key=lambda component: component.stage)


def _one_line(exc: BaseException) -> str:
    text = str(_first_leaf(exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


@dataclass
class _Running:
    component: Component
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)

    async def supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Run the component; restart it with backoff if it fails after starting."""
        name = self.component.name
        started = False
        delay = RESTART_DELAY_MIN
        try:
            with self.scope:
                while True:
                    try:
                        async with trio.open_nursery() as nursery:
                            await nursery.start(self.component.run)
                            if not started:
                                started = True
                                task_status.started()
                            delay = RESTART_DELAY_MIN
                        log.warning("component returned; restarting", component=name)
                    except Exception as exc:
                        if not started:
                            raise StartupError(
                                f"{name} failed to start: {_one_line(exc)}"
                            ) from exc
                        log.error(
                            "component failed; restarting",
                            component=name,
                            error=_one_line(exc),
                            delay=delay,
                            exc_info=exc,
                        )
                    await trio.sleep(delay)
                    delay = min(delay * 2, RESTART_DELAY_MAX)
        finally:
            self.done.set()

    async def stop(self, grace: float) -> None:
        self.scope.cancel()
        with trio.move_on_after(grace) as waited:
            await self.done.wait()
        if waited.cancelled_caught:
            log.warning("component did not stop in time", component=self.component.name)


async def serve(ctx: Context, *, ready: trio.Event | None = None) -> None:
    """Run every component until SIGINT/SIGTERM, then stop them in reverse order."""
    kernel = ctx.kernel
    loaded: plugins.LoadedPlugins | None = ctx.extras.get("plugins")
    if loaded is not None:
        for info in loaded.failed:
            log.warning("plugin not loaded", plugin=info.name, error=info.error)
    try:
        ctx.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create data directory {ctx.data_dir}: {exc}") from None
    if ctx.runs("master") and ctx.store is None:
        ctx.store = ctx.hook.kubecore_store(ctx=ctx)
    components = collect_components(ctx)
    if not components:
        raise StartupError(
            f"nothing to run for role {kernel.role!r} with plugins"
            f" {', '.join(loaded.names) if loaded else '(none)'}"
        )
    log.info(
        "starting",
        role=kernel.role,
        hostname=ctx.hostname,
        data_dir=str(ctx.data_dir),
        plugins=loaded.names if loaded else [],
        store=getattr(ctx.store, "name", None),
        gc_threshold=gc.get_threshold()[0],
    )
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                stop = trio.Event()

                async def watch_signals() -> None:
                    async for signum in signals:
                        if stop.is_set():
                            # A part wedged in its cleanup cannot be cancelled from
                            # here; a second signal is the operator asking to leave now.
                            log.warning("second signal: exiting without waiting")
                            logging.shutdown()
                            os._exit(130)
                        log.info("shutting down", signal=signal.Signals(signum).name)
                        stop.set()

                nursery.start_soon(watch_signals)
                running: list[_Running] = []
                for component in components:
                    handle = _Running(component)
                    await nursery.start(handle.supervise)
                    running.append(handle)
                log.info("kubecore is up", components=[c.name for c in components])
                if ready is not None:
                    ready.set()
                await stop.wait()
                for handle in reversed(running):
                    await handle.stop(kernel.shutdown_grace)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A component that fails to start surfaces wrapped in the nursery's group.
        startup = group.subgroup(StartupError)
        if startup is None:
            raise
        raise _first_leaf(startup) from None
    finally:
        if ctx.store is not None:
            with trio.CancelScope(shield=True):
                await ctx.store.aclose()
    log.info("stopped")


__all__ = ["ConfigError", "PluginError", "StartupError", "kernel_config", "prepare",
           "read_config", "serve", "tune_gc"]
