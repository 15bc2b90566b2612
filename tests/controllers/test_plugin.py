"""The ``[controllers]`` plugin, and both loops surviving an apiserver that is not there
yet."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import Any

import trio
from kubecore_store_sqlite import SqliteStore

from kubecore import kernel, plugins
from kubecore.apiserver.app import create_app
from kubecore.apiserver.registry import Registry
from kubecore.client import AsyncClient
from kubecore.context import STAGE_CONTROL, Context
from kubecore.controllers import plugin
from kubecore.controllers.endpoints import EndpointsController
from kubecore.controllers.replication import ReplicationManager, template_problem
from kubecore.http import serve_asgi
from tests.controllers.helpers import PodCounter, controller


def _context(tmp_path: Path, role: str,
             controllers: dict[str, Any] | None = None) -> Context:
    """A context whose plugin manager holds only the controllers plugin."""
    manager = plugins.new_manager()
    manager.register(plugin, name="controllers")
    loaded = plugins.LoadedPlugins(manager=manager, infos=[])
    raw: dict[str, Any] = {"kubecore": {"data_dir": str(tmp_path), "role": role}}
    if controllers is not None:
        raw["controllers"] = controllers
    return kernel.prepare(raw, loaded)


def test_components_on_the_master_only(tmp_path: Path) -> None:
    master = plugin.kubecore_components(_context(tmp_path, "master"))
    assert [c.name for c in master] == ["replication-manager", "endpoints-controller"]
    assert all(c.stage == STAGE_CONTROL for c in master)
    assert plugin.kubecore_components(_context(tmp_path, "node")) == []


def test_enable_flags_and_defaults(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "all", controllers={"endpoints": False})
    assert [c.name for c in plugin.kubecore_components(ctx)] == ["replication-manager"]
    assert ctx.config(plugin.ControllersConfig).resync_interval == 10.0


def test_builtin_plugin_is_registered() -> None:
    assert plugins.BUILTIN_PLUGINS["controllers"] == "kubecore.controllers.plugin"


def test_templates_that_cannot_be_counted_are_refused() -> None:
    rc = controller("t", 1)
    assert template_problem(rc) is None
    rc.desired_state.pod_template.labels = {}
    assert template_problem(rc) == "the pod template has no labels"
    rc.desired_state.pod_template.labels = {"app": "else"}
    assert template_problem(rc) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_loops_wait_for_an_unreachable_apiserver(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    store = SqliteStore(tmp_path / "store.sqlite3", synchronous="normal")
    try:
        async with AsyncClient(url, timeout=5.0) as client, trio.open_nursery() as nursery:
            manager = ReplicationManager(client, resync_interval=0.3)
            endpoints = EndpointsController(client, resync_interval=0.3)
            await nursery.start(manager.run)
            await nursery.start(endpoints.run)
            await trio.sleep(0.5)  # failing and backing off, not crashing

            await nursery.start(partial(serve_asgi, create_app(Registry(store)),
                                        name="apiserver", address="127.0.0.1", port=port))
            await client.create(controller("late", 2))
            counter = PodCounter(client, {"app": "late"})
            await nursery.start(counter.run)
            await counter.reaches(2)
            with trio.fail_after(10):
                await endpoints.wait_listed()
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
