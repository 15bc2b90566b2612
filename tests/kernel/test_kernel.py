"""The kernel's component runner: start order, supervision, ordered shutdown."""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from kubecore import hookimpl, kernel, plugins
from kubecore.context import Component, Context
from kubecore.errors import PluginError, StartupError


def make_context(tmp_path: Path, *objects: object, raw: dict[str, Any] | None = None) -> Context:
    """A context whose plugin manager holds exactly ``objects`` (no apiserver)."""
    manager = plugins.new_manager()
    for index, obj in enumerate(objects):
        manager.register(obj, name=f"test{index}")
    loaded = plugins.LoadedPlugins(manager=manager, infos=[])
    base: dict[str, Any] = {"kubecore": {"data_dir": str(tmp_path), "shutdown_grace": 2}}
    base.update(raw or {})
    return kernel.prepare(base, loaded)


class Recorder:
    """A plugin whose components record when they start and stop."""

    def __init__(self, stages: dict[str, int]) -> None:
        self.stages = stages
        self.events: list[str] = []

    @hookimpl
    def kubecore_components(self, ctx: Context) -> list[Component]:
        return [Component(name, self._runner(name), stage) for name, stage in self.stages.items()]

    def _runner(self, name: str) -> Any:
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            self.events.append(f"start {name}")
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.events.append(f"stop {name}")

        return run


async def test_components_start_in_stage_order_and_stop_in_reverse(tmp_path: Path) -> None:
    recorder = Recorder({"proxy": 40, "apiserver": 10, "kubelet": 30, "scheduler": 20})
    ctx = make_context(tmp_path, recorder)
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: kernel.serve(ctx, ready=ready))
        await ready.wait()
        os.kill(os.getpid(), signal.SIGTERM)
    assert recorder.events == [
        "start apiserver", "start scheduler", "start kubelet", "start proxy",
        "stop proxy", "stop kubelet", "stop scheduler", "stop apiserver",
    ]


class FailsToStart:
    @hookimpl
    def kubecore_components(self, ctx: Context) -> list[Component]:
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            raise OSError(98, "Address already in use")

        return [Component("listener", run)]


async def test_startup_failure_is_one_clear_error(tmp_path: Path) -> None:
    recorder = Recorder({"first": 0})
    ctx = make_context(tmp_path, recorder, FailsToStart())
    with pytest.raises(StartupError, match=r"listener failed to start: .*Address already in use"):
        await kernel.serve(ctx)
    # What had started is stopped again.
    assert recorder.events == ["start first", "stop first"]


class CrashesOnce:
    def __init__(self) -> None:
        self.runs = 0
        self.restarted = trio.Event()

    @hookimpl
    def kubecore_components(self, ctx: Context) -> list[Component]:
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            self.runs += 1
            task_status.started()
            if self.runs == 1:
                raise RuntimeError("boom")
            self.restarted.set()
            await trio.sleep_forever()

        return [Component("flaky", run)]


async def test_a_crashed_component_is_restarted(tmp_path: Path, autojump_clock: Any) -> None:
    plugin = CrashesOnce()
    ctx = make_context(tmp_path, plugin)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(kernel.serve, ctx)
        with trio.fail_after(60):
            await plugin.restarted.wait()
        nursery.cancel_scope.cancel()
    assert plugin.runs == 2


async def test_nothing_to_run_is_an_error(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    with pytest.raises(StartupError, match="nothing to run"):
        await kernel.serve(ctx)


def test_duplicate_component_names_are_rejected(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, Recorder({"a": 0}), Recorder({"a": 1}))
    with pytest.raises(PluginError, match="used twice: a"):
        kernel.collect_components(ctx)


def test_two_plugins_declaring_one_section_is_an_error(tmp_path: Path) -> None:
    from kubecore.config import ConfigSection, SectionModel

    class Section:
        @hookimpl
        def kubecore_config_section(self) -> ConfigSection:
            return ConfigSection("same", SectionModel)

    with pytest.raises(PluginError, match=r"\[same\] is declared by both"):
        make_context(tmp_path, Section(), Section())


def test_tune_gc_sets_the_young_threshold_and_zero_restores_pythons() -> None:
    before = gc.get_threshold()
    try:
        kernel.tune_gc(12_345)
        assert gc.get_threshold() == (12_345, *kernel.PYTHON_GC_THRESHOLD[1:])
        kernel.tune_gc(0)
        assert gc.get_threshold() == kernel.PYTHON_GC_THRESHOLD
    finally:
        gc.set_threshold(*before)
