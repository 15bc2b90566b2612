"""Watch over real HTTP: the initial list, changes, selector transitions, resuming from
a resourceVersion, Gone, and streams that end cleanly on disconnect and shutdown."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import trio

from kubecore.apiserver.app import create_app
from kubecore.apiserver.registry import Registry
from kubecore.http import serve_asgi
from tests.apiserver.harness import TIMEOUT, Api
from tests.apiserver.objects import controller, endpoints, event, pod, service

P = "/api/v1beta1"
Event = tuple[str, dict[str, Any]]


class Reader:
    """The events of one open watch response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self) -> Event:
        with trio.fail_after(TIMEOUT):
            while True:
                line = await anext(self.lines)
                if line.strip():
                    data = json.loads(line)
                    assert set(data) == {"type", "object"}
                    return data["type"], data["object"]

    async def take(self, n: int) -> list[tuple[str, str]]:
        """The next ``n`` events as (type, id)."""
        return [(kind, obj["id"]) for kind, obj in [await self.next() for _ in range(n)]]

    async def ended(self) -> bool:
        """Whether the server ends the stream (within the timeout)."""
        with trio.fail_after(TIMEOUT):
            async for line in self.lines:
                if line.strip():
                    return False
        return True


@asynccontextmanager
async def watching(api: Api, path: str) -> AsyncIterator[Reader]:
    timeout = httpx.Timeout(TIMEOUT, read=None)
    async with api.http.stream("GET", f"{P}/watch/{path}", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        reader = Reader(response)
        try:
            yield reader
        finally:
            await reader.lines.aclose()  # type: ignore[attr-defined]


async def wait_for_watches(api: Api, count: int) -> None:
    """Until the store has exactly ``count`` watches open."""
    with trio.fail_after(TIMEOUT):
        # The store exposes a counter, not an event: poll it.
        while getattr(api.store, "active_watches") != count:  # noqa: B009, ASYNC110
            await trio.sleep(0.01)


async def test_initial_list_then_changes(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    await api.ok("POST", f"{P}/pods", json=pod("b"))
    async with watching(api, "pods") as events:
        assert await events.take(2) == [("ADDED", "a"), ("ADDED", "b")]
        created = await api.ok("POST", f"{P}/pods", json=pod("c"))
        kind, obj = await events.next()
        assert (kind, obj) == ("ADDED", created)
        body = dict(pod("c", labels={"app": "web", "v": "2"}),
                    resourceVersion=created["resourceVersion"])
        updated = await api.ok("PUT", f"{P}/pods/c", json=body)
        assert await events.next() == ("MODIFIED", updated)
        await api.ok("DELETE", f"{P}/pods/c")
        kind, obj = await events.next()
        assert kind == "DELETED" and obj["id"] == "c" and obj["labels"] == {"app": "web", "v": "2"}
        assert obj["resourceVersion"] > updated["resourceVersion"]  # the deletion's revision
        assert obj["kind"] == "Pod" and obj["selfLink"] == f"{P}/pods/c"


async def test_watch_from_a_resource_version(api: Api) -> None:
    first = await api.ok("POST", f"{P}/pods", json=pod("a"))
    body = dict(pod("a", labels={"v": "2"}), resourceVersion=first["resourceVersion"])
    second = await api.ok("PUT", f"{P}/pods/a", json=body)
    await api.ok("POST", f"{P}/pods", json=pod("b"))
    async with watching(api, f"pods?resourceVersion={first['resourceVersion']}") as events:
        kind, obj = await events.next()
        assert (kind, obj["resourceVersion"]) == ("MODIFIED", second["resourceVersion"])
        assert await events.take(1) == [("ADDED", "b")]
    listed = await api.ok("GET", f"{P}/pods")
    async with watching(api, f"pods?resourceVersion={listed['resourceVersion']}") as events:
        await api.ok("DELETE", f"{P}/pods/a")
        assert await events.take(1) == [("DELETED", "a")]


async def test_selector_transitions_become_added_and_deleted(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("other", labels={"app": "db"}))
    async with watching(api, "pods?labels=app=web") as events:
        created = await api.ok("POST", f"{P}/pods", json=pod("x", labels={"app": "db"}))
        moved_in = await api.ok("PUT", f"{P}/pods/x", json=dict(
            pod("x", labels={"app": "web"}), resourceVersion=created["resourceVersion"]))
        kind, obj = await events.next()
        assert (kind, obj["id"], obj["labels"]) == ("ADDED", "x", {"app": "web"})
        moved_out = await api.ok("PUT", f"{P}/pods/x", json=dict(
            pod("x", labels={"app": "db"}), resourceVersion=moved_in["resourceVersion"]))
        kind, obj = await events.next()
        # the object as it last matched, at the revision it stopped matching
        assert (kind, obj["id"], obj["labels"]) == ("DELETED", "x", {"app": "web"})
        assert obj["resourceVersion"] == moved_out["resourceVersion"]
        await api.ok("DELETE", f"{P}/pods/x")  # no longer matching: no event
        await api.ok("POST", f"{P}/pods", json=pod("sentinel"))
        assert await events.take(1) == [("ADDED", "sentinel")]


async def test_field_selector_follows_a_binding(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    async with watching(api, "pods?fields=DesiredState.Host=node-a") as events:
        await api.ok("POST", f"{P}/bindings", json={"podID": "a", "host": "node-a"})
        kind, obj = await events.next()
        assert (kind, obj["id"]) == ("ADDED", "a")
        assert obj["desiredState"]["host"] == "node-a" and obj["currentState"]["host"] == "node-a"


async def test_each_change_reaches_every_watch_before_the_next_write(api: Api) -> None:
    """No change waits for a later one to be delivered (a missed wake-up would, and
    nothing else here would wake it): every write is seen by every open watch, each
    with its own selector, before the next write is made. Bindings shared by the
    watches of the scheduler (unassigned, assigned) are in the mix."""
    async with watching(api, "pods") as every, \
            watching(api, "pods?fields=DesiredState.Host=") as unassigned, \
            watching(api, "pods?fields=DesiredState.Host!=") as assigned:
        for i in range(20):
            await api.ok("POST", f"{P}/pods", json=pod(f"p{i}"))
            assert await every.take(1) == [("ADDED", f"p{i}")]
            assert await unassigned.take(1) == [("ADDED", f"p{i}")]
            await api.ok("POST", f"{P}/bindings", json={"podID": f"p{i}", "host": "node-a"})
            assert await every.take(1) == [("MODIFIED", f"p{i}")]
            assert await unassigned.take(1) == [("DELETED", f"p{i}")]
            assert await assigned.take(1) == [("ADDED", f"p{i}")]


async def test_namespaced_watch(api: Api) -> None:
    await api.ok("POST", f"{P}/pods?namespace=prod", json=pod("p"))
    await api.ok("POST", f"{P}/pods", json=pod("d"))
    async with watching(api, "pods?namespace=prod") as events:
        assert await events.take(1) == [("ADDED", "p")]
        await api.ok("POST", f"{P}/pods", json=pod("d2"))
        await api.ok("POST", f"{P}/pods?namespace=prod", json=pod("p2"))
        assert await events.take(1) == [("ADDED", "p2")]
    async with watching(api, "pods") as events:
        assert sorted(await events.take(4)) == [
            ("ADDED", "d"), ("ADDED", "d2"), ("ADDED", "p"), ("ADDED", "p2")]


async def test_other_resources_can_be_watched(api: Api) -> None:
    async with watching(api, "services") as services, watching(api, "endpoints") as eps:
        await api.ok("POST", f"{P}/services", json=service())
        await api.ok("POST", f"{P}/endpoints", json=endpoints("web", "127.0.0.1:1"))
        assert await services.take(1) == [("ADDED", "web")]
        assert await eps.take(1) == [("ADDED", "web")]
        await api.ok("DELETE", f"{P}/services/web")
        assert await services.take(1) == [("DELETED", "web")]
        assert await eps.take(1) == [("DELETED", "web")]
    await api.ok("POST", f"{P}/events?namespace=prod", json=event("e1"))
    await api.ok("POST", f"{P}/events", json=event("e2"))
    async with watching(api, "events?namespace=default") as events:
        assert await events.take(1) == [("ADDED", "e2")]
    async with watching(api, "replicationControllers") as controllers:
        await api.ok("POST", f"{P}/pods", json=pod("sentinel"))  # another resource: nothing
        await api.ok("POST", f"{P}/replicationControllers", json=controller())
        assert await controllers.take(1) == [("ADDED", "web")]


async def test_a_too_old_resource_version_is_gone(api: Api) -> None:
    created = await api.ok("POST", f"{P}/pods", json=pod("a"))
    for i in range(3):
        await api.ok("POST", f"{P}/pods", json=pod(f"b{i}"))
    latest = (await api.ok("GET", f"{P}/pods"))["resourceVersion"]
    await api.store.compact(latest)
    async with watching(api, f"pods?resourceVersion={created['resourceVersion']}") as events:
        kind, status = await events.next()
        assert kind == "ERROR"
        assert status["kind"] == "Status" and status["status"] == "Failure"
        assert (status["code"], status["reason"]) == (410, "Gone")
        assert await events.ended()
    # from the list's revision it works again
    async with watching(api, f"pods?resourceVersion={latest}") as events:
        await api.ok("DELETE", f"{P}/pods/a")
        assert await events.take(1) == [("DELETED", "a")]


async def test_bad_resource_version_is_a_bad_request(api: Api) -> None:
    for value in ("abc", "-1", "1.5"):
        status = await api.fails(400, "GET", f"{P}/watch/pods?resourceVersion={value}")
        assert status["reason"] == "BadRequest"


async def test_disconnecting_ends_the_watch(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod("a"))
    async with watching(api, "pods") as events:
        assert await events.take(1) == [("ADDED", "a")]
        await wait_for_watches(api, 1)
    await wait_for_watches(api, 0)


async def serve_cancellably(
    registry: Registry, *, task_status: trio.TaskStatus[tuple[str, trio.CancelScope]]
) -> None:
    """Serve ``registry`` until the cancel scope handed back is cancelled."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            url: str = await inner.start(partial(
                serve_asgi, create_app(registry), name="apiserver", address="127.0.0.1", port=0
            ))
            task_status.started((url, scope))


async def test_server_shutdown_ends_the_watch(api: Api, nursery: trio.Nursery) -> None:
    url, server = await nursery.start(serve_cancellably, api.registry)
    timeout = httpx.Timeout(TIMEOUT, read=None)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http, \
            http.stream("GET", f"{P}/watch/pods") as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await api.ok("POST", f"{P}/pods", json=pod("a"))
        assert json.loads(await anext(lines))["type"] == "ADDED"
        await wait_for_watches(api, 1)
        server.cancel()
        with trio.fail_after(TIMEOUT):
            try:
                async for _ in lines:
                    pass
            except httpx.RemoteProtocolError:
                pass  # the connection closed mid-stream: ended all the same
    await wait_for_watches(api, 0)
