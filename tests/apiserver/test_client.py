"""kubecore.client against a real apiserver: typed objects, Status errors, watch, and the
synchronous client (run in a thread, the server being on this test's trio loop). The
contract tests run on both API clients: HTTP and in-process."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import trio

from kubecore.api import (
    Endpoints,
    Event,
    Minion,
    Pod,
    ReplicationController,
    Service,
    decode_value,
)
from kubecore.apiserver.local import LocalClient
from kubecore.client import (
    ApiClient,
    ApiConnectionError,
    ApiError,
    AsyncClient,
    Client,
    ClientError,
    model_for,
    resource_name,
)
from tests.apiserver.harness import TIMEOUT, Api
from tests.apiserver.objects import controller, pod, service


def a_pod(id: str = "web-1", **kwargs: object) -> Pod:
    return decode_value(pod(id, **kwargs), kind=Pod)  # type: ignore[arg-type]


Connect = Callable[[], ApiClient]


@pytest.fixture(params=["http", "in-process"])
def connect(request: pytest.FixtureRequest, api: Api) -> Connect:
    """Makes a client of ``api``: over HTTP, or in process."""
    if request.param == "http":
        return lambda: AsyncClient(api.url)
    return lambda: LocalClient(api.registry, api.url)


async def test_crud_with_typed_objects(connect: Connect) -> None:
    async with connect() as client:
        created = await client.create(a_pod())
        assert isinstance(created, Pod) and created.desired_state.status == "Running"
        got = await client.get(Pod, "web-1")
        assert got == created
        await client.create(a_pod("db", labels={"app": "db"}), namespace="prod")
        everything = await client.list(Pod)
        assert sorted(p.id for p in everything.items) == ["db", "web-1"]
        assert everything.resource_version >= created.resource_version
        assert [p.id for p in (await client.list(Pod, namespace="prod")).items] == ["db"]
        assert [p.id for p in (await client.list(Pod, labels={"app": "web"})).items] == ["web-1"]
        assert [p.id for p in (await client.list(Pod, labels="app!=web")).items] == ["db"]
        assert [p.id for p in (await client.list(Pod, fields={"name": "db"})).items] == ["db"]
        got.labels = {"app": "web", "v": "2"}
        updated = await client.update(got)
        assert updated.labels["v"] == "2" and updated.resource_version > got.resource_version
        status = await client.bind("web-1", "node-a")
        assert status.status == "Success"
        assert (await client.get(Pod, "web-1")).desired_state.host == "node-a"
        deleted = await client.delete(Pod, "web-1")
        assert deleted.status == "Success"
        svc = await client.create(decode_value(service(), kind=Service))
        assert svc.portal_ip
        rc = await client.create(decode_value(controller(), kind=ReplicationController))
        assert rc.current_state.replicas == 0
        minions = await client.list(Minion)
        assert minions.items == []
        odd = await client.create(a_pod("odd?id #1"))  # pod ids are not format-checked
        assert (await client.get(Pod, "odd?id #1")).uid == odd.uid
        assert (await client.delete(Pod, "odd?id #1")).status == "Success"


async def test_errors_carry_the_status(connect: Connect) -> None:
    async with connect() as client:
        with pytest.raises(ApiError) as missing:
            await client.get(Pod, "nope")
        assert (missing.value.code, missing.value.reason) == (404, "NotFound")
        assert str(missing.value) == 'pod "nope" not found'
        created = await client.create(a_pod())
        with pytest.raises(ApiError) as exists:
            await client.create(a_pod())
        assert (exists.value.code, exists.value.reason) == (409, "AlreadyExists")
        stale = created.model_copy(update={"resource_version": created.resource_version + 99})
        with pytest.raises(ApiError) as conflict:
            await client.update(stale)
        assert (conflict.value.code, conflict.value.reason) == (409, "Conflict")
        with pytest.raises(ApiError) as invalid:
            await client.create(a_pod("x", image=""))
        assert (invalid.value.code, invalid.value.reason) == (422, "Invalid")
        assert [c.field for c in invalid.value.causes] == [
            "desiredState.manifest.containers[0].image"]
        assert "desiredState.manifest.containers[0].image: required value" in str(invalid.value)
        with pytest.raises(ApiError) as bad:
            await client.list(Pod, labels="nonsense")
        assert (bad.value.code, bad.value.reason) == (400, "BadRequest")


async def test_a_plain_404_becomes_a_status(api: Api) -> None:
    async with AsyncClient(f"{api.url}/nothing-here") as lost:
        with pytest.raises(ApiError) as plain:
            await lost.get(Pod, "x")
        assert (plain.value.code, plain.value.reason) == (404, "NotFound")
        assert plain.value.message.startswith('Not Found: "')


async def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncClient(f"http://127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(ApiConnectionError, match="cannot reach the apiserver"):
            await client.list(Pod)
        with pytest.raises(ApiConnectionError):
            async with client.watch(Pod):
                pass


async def test_watch(api: Api, connect: Connect) -> None:
    async with connect() as client:
        await client.create(a_pod("a"))
        listed = await client.list(Pod)
        async with client.watch(Pod, 0, labels={"app": "web"}) as events:
            with trio.fail_after(TIMEOUT):
                first = await anext(events)
                assert (first.type, first.object.id) == ("ADDED", "a")
                assert isinstance(first.object, Pod)
                await client.create(a_pod("b"))
                await client.create(a_pod("c", labels={"app": "db"}))
                await client.delete(Pod, "a")
                seen = [(e.type, e.object.id) for e in [await anext(events) for _ in range(2)]]
        assert seen == [("ADDED", "b"), ("DELETED", "a")]
        kinds = []
        async with client.watch(Pod, listed.resource_version) as resumed:
            with trio.fail_after(TIMEOUT):
                async for event in resumed:
                    kinds.append((event.type, event.object.id))
                    if len(kinds) == 3:
                        break
        assert kinds == [("ADDED", "b"), ("ADDED", "c"), ("DELETED", "a")]
        await api.store.compact(await api.store.revision())
        with pytest.raises(ApiError) as gone:
            async with client.watch(Pod, listed.resource_version) as old:
                with trio.fail_after(TIMEOUT):
                    await anext(old)
        assert (gone.value.code, gone.value.reason) == (410, "Gone")
        with pytest.raises(ApiError) as refused:
            async with client.watch(Endpoints, labels="a=b"):
                pass
        assert refused.value.code == 400


async def test_an_http_watch_opens_on_the_first_read(api: Api) -> None:
    async with AsyncClient(api.url) as client:
        await client.create(a_pod("a"))
        resumed = client.watch(Pod, 0)
        try:
            with trio.fail_after(TIMEOUT):
                first = await anext(resumed)
        finally:
            await resumed.aclose()
        assert (first.type, first.object.id) == ("ADDED", "a")
        with pytest.raises(StopAsyncIteration):
            await anext(resumed)


async def test_the_sync_client(api: Api) -> None:
    def scenario() -> list[str]:
        seen = []
        with Client(api.url) as client:
            created = client.create(a_pod())
            seen.append(created.id)
            got = client.get(Pod, "web-1")
            got.labels = {"v": "2"}
            seen.append(client.update(got).labels["v"])
            seen.append(client.bind("web-1", "node-a").status)
            seen.append(str(len(client.list(Pod, fields="DesiredState.Host=node-a").items)))
            seen.append(client.delete(Pod, "web-1").status)
            try:
                client.get(Pod, "web-1")
            except ApiError as exc:
                seen.append(f"{exc.code} {exc.reason}")
        return seen

    result = await trio.to_thread.run_sync(scenario)
    assert result == ["web-1", "2", "Success", "1", "Success", "404 NotFound"]


def test_resource_names() -> None:
    assert resource_name(ReplicationController) == "replicationControllers"
    assert model_for("events") is Event
    with pytest.raises(KeyError):
        model_for("bindings")
    assert issubclass(ApiError, ClientError) and issubclass(ApiConnectionError, ClientError)
