"""The in-process API client (kubecore.apiserver.local) on a real registry and SQLite
store: what differs from HTTP by construction (shared decodes, a watch task of its own,
no socket to fail) keeps the HTTP client's contract. The contract tests themselves run
on both clients in test_client.py."""

from __future__ import annotations

import gc
import weakref
from functools import partial
from pathlib import Path

import pytest
import trio

from kubecore.api import Pod, decode_value, encode_json
from kubecore.apiserver.local import LocalClient
from kubecore.apiserver.resources import PODS
from kubecore.client import ApiError, AsyncClient, ClientError
from kubecore.config import KernelConfig, Settings
from kubecore.context import Context
from tests.apiserver.harness import TIMEOUT, Api, changed_views
from tests.apiserver.objects import pod


def a_pod(id: str, **kwargs: object) -> Pod:
    return decode_value(pod(id, **kwargs), kind=Pod)  # type: ignore[arg-type]


@pytest.fixture
async def client(api: Api) -> LocalClient:
    return LocalClient(api.registry, api.url)


async def test_writes_and_gets_answer_the_callers_own_objects(
    api: Api, client: LocalClient
) -> None:
    mine = a_pod("a")
    created = await client.create(mine)
    mine.labels["app"] = "changed after create"
    created.labels["app"] = "changed too"
    got = await client.get(Pod, "a")
    assert got.labels == {"app": "web"}
    got.labels.clear()
    assert (await client.get(Pod, "a")).labels == {"app": "web"}
    updated = await client.update((await client.get(Pod, "a")).model_copy(
        update={"labels": {"app": "v2"}}))
    updated.labels.clear()
    assert (await client.get(Pod, "a")).labels == {"app": "v2"}


async def test_lists_and_watch_events_share_one_object_per_stored_value(
    api: Api, client: LocalClient
) -> None:
    await client.create(a_pod("a"))
    async with client.watch(Pod, 0) as first, client.watch(Pod, 0) as second:
        with trio.fail_after(TIMEOUT):
            one, two = await anext(first), await anext(second)
        # One decode for every watch and list of the value: the contract makes them
        # read-only, and sharing is what makes that worth having.
        assert one.object is two.object
        assert (await client.list(Pod)).items[0] is one.object
        await client.bind("a", "node-a")
        with trio.fail_after(TIMEOUT):
            one, two = await anext(first), await anext(second)
        assert one.type == two.type == "MODIFIED"
        assert one.object is two.object
        assert one.object.desired_state.host == one.object.current_state.host == "node-a"
        assert (await client.list(Pod, fields="DesiredState.Host=node-a")).items == [one.object]
    # A reader that changes a shared object changes everyone's: the tests' guard sees it.
    assert changed_views(api.registry) == []
    one.object.labels["app"] = "scribbled"
    assert changed_views(api.registry) == ["/registry/pods/default/a"]
    one.object.labels["app"] = "web"
    # Shared only while held: a value nobody holds is not kept.
    held = weakref.ref(one.object)
    del one, two
    gc.collect()
    assert held() is None
    # The same objects as over HTTP (JSON for JSON).
    async with AsyncClient(api.url) as http:
        over_http = await http.list(Pod)
    assert [encode_json(p) for p in (await client.list(Pod)).items] == [
        encode_json(p) for p in over_http.items]


async def test_what_happens_in_the_body_of_a_watch_stays_as_it_is(
    api: Api, client: LocalClient
) -> None:
    await client.create(a_pod("a"))
    with pytest.raises(KeyError):  # not wrapped in an exception group by the watch's task
        async with client.watch(Pod, 0) as events:
            await anext(events)
            raise KeyError("the caller's own")
    assert api.store.active_watches == 0
    with trio.move_on_after(0.2) as cancelled:  # cancelled while waiting for an event
        async with client.watch(Pod, 0) as events:
            await anext(events)
            await anext(events)
    assert cancelled.cancelled_caught
    assert api.store.active_watches == 0


async def test_closing_inside_a_nested_scope_ends_the_iteration(
    api: Api, client: LocalClient
) -> None:
    await client.create(a_pod("a"))
    async with client.watch(Pod, 0) as events:
        with trio.fail_after(TIMEOUT):
            await anext(events)
            await events.aclose()
            with pytest.raises(StopAsyncIteration):
                await anext(events)
            await events.aclose()  # idempotent
    assert api.store.active_watches == 0


async def test_a_watch_is_read_inside_async_with(client: LocalClient) -> None:
    with pytest.raises(ClientError, match="async with"):
        await anext(client.watch(Pod, 0))


async def test_failures_are_api_errors_with_the_status_http_would_carry(
    api: Api, client: LocalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.create(a_pod("a"))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.registry, "get", broken)
    with pytest.raises(ApiError) as unexpected:
        await client.get(Pod, "a")
    assert (unexpected.value.code, unexpected.value.reason) == (500, "InternalError")
    monkeypatch.undo()

    def broken_decorate(obj: object) -> object:
        raise RuntimeError("a bug in a watch")

    monkeypatch.setattr(api.registry.strategies["pods"], "decorate_one", broken_decorate)
    async with client.watch(Pod, 0) as failing:
        with pytest.raises(ApiError) as bug, trio.fail_after(TIMEOUT):
            await anext(failing)
    assert (bug.value.code, bug.value.reason) == (500, "InternalError")
    monkeypatch.undo()
    with pytest.raises(ApiError) as refused:
        async with client.watch(Pod, 0, labels="not a selector"):
            pass
    assert refused.value.code == 400
    async with client.watch(Pod, 0) as events:
        with trio.fail_after(TIMEOUT):
            assert (await anext(events)).object.id == "a"
            await api.store.aclose()  # the store goes away under an open watch
            with pytest.raises(ApiError) as gone:
                await anext(events)
    assert gone.value.code == 503
    with pytest.raises(ApiError) as unavailable:
        await client.list(Pod)
    assert (unavailable.value.code, unavailable.value.reason) == (503, "ServiceUnavailable")


async def test_the_context_prefers_the_in_process_client_unless_told_otherwise(
    tmp_path: Path, api: Api
) -> None:
    def context(**kernel: object) -> Context:
        return Context(settings=Settings({
            "kubecore": KernelConfig(role="master", data_dir=tmp_path, **kernel)}), hook=None)

    ctx = context()
    assert ctx.api_client() is None
    ctx.extras["apiserver_url"] = api.url
    assert isinstance(ctx.api_client(), AsyncClient)
    ctx.extras["apiserver_local_client"] = partial(LocalClient, api.registry, api.url)
    local = ctx.api_client()
    assert isinstance(local, LocalClient) and local.in_process
    # A named apiserver is another process's: only HTTP reaches it.
    named = context(api_server="http://127.0.0.1:1")
    named.extras.update(ctx.extras)
    remote = named.api_client()
    assert isinstance(remote, AsyncClient) and not remote.in_process


async def test_a_binding_and_its_watch_events_decode_no_pod(
    api: Api, client: LocalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod a binding reads is the raw read behind a view someone holds, and the
    value it writes is the object it encoded: neither is decoded again, and what the
    registry answers instead equals a fresh decode."""
    await client.create(a_pod("a"))
    decoded: list[bytes] = []
    original = Pod.model_validate_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Pod], data: str | bytes, **kwargs: object) -> Pod:
        decoded.append(bytes(data, "utf-8") if isinstance(data, str) else bytes(data))
        return original(cls, data, **kwargs)  # type: ignore[no-any-return]

    async with client.watch(Pod, 0) as events:
        with trio.fail_after(TIMEOUT):
            held = (await anext(events)).object  # the scheduler holds its pods so
        monkeypatch.setattr(Pod, "model_validate_json", classmethod(counting))
        await client.bind("a", "node-a")
        with trio.fail_after(TIMEOUT):
            event = await anext(events)
        monkeypatch.undo()
    assert decoded == []
    assert event.type == "MODIFIED" and event.object.desired_state.host == "node-a"
    kv = await api.store.get("/registry/pods/default/a")
    assert kv is not None
    remembered, fresh = api.registry.read_shared(PODS, kv), api.registry.read(PODS, kv)
    assert remembered is not None and fresh is not None
    assert encode_json(remembered) == encode_json(fresh)
    assert remembered.model_dump(exclude_unset=True) == fresh.model_dump(exclude_unset=True)
    # A raw read is kept only while its view is held.
    assert api.registry._held
    del held, event, remembered
    gc.collect()
    assert not api.registry._held
