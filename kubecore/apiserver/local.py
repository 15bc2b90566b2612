"""The API client of components that share the apiserver's process: registry calls, no HTTP.

A scheduler or controller running next to the apiserver would otherwise reach it over
loopback HTTP, paying for the request on both ends (hypercorn and h11 on one side,
httpx and httpcore on the other) for every binding, event and watched change. With the
scheduler in the master's process that was most of the cost of a binding.

:class:`LocalClient` is an :class:`~kubecore.client.ApiClient` with the same contract as
:class:`~kubecore.client.AsyncClient`:

- the same registry calls the HTTP routes make, with the same checks (a body is decoded
  as the route decodes it, so an invalid object is the same 422);
- the same errors: what the routes answer as a ``Status`` is raised as
  :class:`~kubecore.client.ApiError` carrying that ``Status`` (an unexpected failure is
  logged and becomes a 500, as over HTTP; it never ends the caller's loop by itself);
- the same objects, but shared: lists and watch events hand out the registry's
  :meth:`~kubecore.apiserver.registry.Registry.view` of each stored value, one decoded object that
  every in-process reader (and every watch) of that value gets, as client-go's shared
  informers do. The :class:`~kubecore.client.ApiClient` contract already says objects
  from a list or watch are read-only; here that is what makes a change cost one decode
  in the process, not one per reader (with four pod watches in a master, those copies
  cost more than the binding that caused them). Reads and writes answer objects of the
  caller's own;
- watches need ``async with``: entering starts the registry's watch in a task of its own
  (its events wait in a bounded buffer, so a slow reader slows only its own watch);
  leaving stops it. An ERROR event raises ``ApiError`` (410 Gone: list again).

Requests of a local client are not authenticated: they come from the process that
serves the API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

import trio

from kubecore.api import (
    Binding,
    Selector,
    Status,
    TypeMeta,
    decode_value,
    encode_json,
    with_kind,
)
from kubecore.apiserver import errors
from kubecore.apiserver.registry import Registry
from kubecore.apiserver.watch import ERROR, Watcher
from kubecore.client import (
    ApiClient,
    ApiError,
    AsyncClient,
    ClientError,
    ObjectList,
    SelectorArg,
    WatchEvent,
    WatchType,
    resource_name,
    selector_text,
)

T = TypeVar("T", bound=TypeMeta)
R = TypeVar("R")

# Events a local watch holds for a reader that is behind; past it the watch waits.
WATCH_BUFFER = 1024


def _api_error(exc: Exception, what: str) -> ApiError:
    """The ``ApiError`` an HTTP client would get for ``exc`` (logged as the routes log
    it)."""
    return ApiError(errors.failed_request(exc, request=what, in_process=True))


def _selector(selector: SelectorArg) -> Selector:
    return Selector.parse(selector_text(selector))


class LocalClient:
    """An :class:`~kubecore.client.ApiClient` calling ``registry`` directly (see the
    module docstring). ``base_url`` names the apiserver the registry serves, for logs."""

    def __init__(self, registry: Registry, base_url: str) -> None:
        self.registry = registry
        self.base_url = base_url
        self.in_process = True

    async def __aenter__(self) -> LocalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release (watches close on leaving their ``async with``)."""

    async def _call(self, what: str, call: Callable[[], Awaitable[R]]) -> R:
        try:
            return await call()
        except Exception as exc:
            raise _api_error(exc, what) from None

    async def list(
        self,
        model: type[T],
        *,
        namespace: str | None = None,
        labels: SelectorArg = None,
        fields: SelectorArg = None,
    ) -> ObjectList[T]:
        """Objects of ``model``'s resource; ``namespace`` None = every namespace."""
        name = resource_name(model)

        async def call() -> Any:
            return await self.registry.list(name, namespace=namespace or None,
                                            labels=_selector(labels), fields=_selector(fields),
                                            shared=True)

        listed = await self._call(f"list {name}", call)
        return ObjectList(cast(list[T], listed.items), listed.resource_version)

    async def get(self, model: type[T], id: str, *, namespace: str | None = None) -> T:
        name = resource_name(model)
        obj = await self._call(f"get {name}/{id}", lambda: self.registry.get(
            name, id, namespace=namespace or None))
        return cast(T, obj)

    def _body(self, obj: T) -> T:
        """``obj`` decoded as the route decodes a request body (a copy the registry
        may own)."""
        return decode_value(json.loads(encode_json(with_kind(obj))), kind=type(obj))

    async def create(self, obj: T, *, namespace: str | None = None) -> T:
        """Create ``obj`` (its resource follows from its type); returns it as stored."""
        return await self._write("create", obj, namespace)

    async def update(self, obj: T, *, namespace: str | None = None) -> T:
        """Replace ``obj`` at its ``resource_version`` (409 ApiError when stale)."""
        return await self._write("update", obj, namespace)

    async def _write(self, verb: Literal["create", "update"], obj: T,
                     namespace: str | None) -> T:
        name = resource_name(type(obj))
        write = self.registry.create if verb == "create" else self.registry.update
        written = await self._call(f"{verb} {name}/{obj.id}", lambda: write(
            name, self._body(obj), namespace=namespace or None, owned=True))
        return cast(T, written)

    async def delete(self, model: type[TypeMeta], id: str, *,
                     namespace: str | None = None) -> Status:
        name = resource_name(model)
        return await self._call(f"delete {name}/{id}", lambda: self.registry.delete(
            name, id, namespace=namespace or None))

    async def bind(self, pod_id: str, host: str, *, namespace: str | None = None) -> Status:
        """Assign pod ``pod_id`` to ``host`` (409 ApiError if it already has one)."""
        # A Binding built here needs no decoding: the registry validates it.
        binding = Binding(pod_id=pod_id, host=host)
        return await self._call(f"bind {pod_id}", lambda: self.registry.bind(
            binding, namespace=namespace or None))

    def watch(
        self,
        model: type[T],
        resource_version: int = 0,
        *,
        namespace: str | None = None,
        labels: SelectorArg = None,
        fields: SelectorArg = None,
    ) -> LocalWatch[T]:
        """Changes to ``model``'s resource after ``resource_version`` (0: every existing
        object first, as ADDED). Use with ``async with``."""
        name = resource_name(model)

        def open_watch() -> Watcher:
            return self.registry.open_watch(
                name, resource_version=resource_version, namespace=namespace or None,
                labels=_selector(labels), fields=_selector(fields))

        return LocalWatch(model, open_watch, f"watch {name}")


class LocalWatch(Generic[T]):
    """An open local watch (see the module docstring); ``model`` types its events (the
    registry's objects of that resource, shared)."""

    def __init__(self, model: type[T], open_watch: Callable[[], Watcher], what: str) -> None:
        self._open_watch = open_watch
        self._what = what
        self._manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self._receive: trio.MemoryReceiveChannel[tuple[str, TypeMeta]] | None = None
        self._closed = False

    async def __aenter__(self) -> LocalWatch[T]:
        try:
            watcher = self._open_watch()
        except Exception as exc:
            raise _api_error(exc, self._what) from None
        send, self._receive = trio.open_memory_channel[tuple[str, TypeMeta]](WATCH_BUFFER)
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._manager = manager
        self._nursery.start_soon(self._pump, watcher, send)
        return self

    async def _pump(self, watcher: Watcher,
                    send: trio.MemorySendChannel[tuple[str, TypeMeta]]) -> None:
        async with send:

            async def emit(type: str, obj: TypeMeta) -> None:
                await send.send((type, obj))

            await watcher.run(emit)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        manager, self._manager = self._manager, None
        if manager is not None:
            # The caller's own exception (if any) is not the nursery's: it propagates
            # from the caller's ``async with`` as it is, never wrapped in a group.
            await manager.__aexit__(None, None, None)

    def __aiter__(self) -> LocalWatch[T]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        if self._closed:
            raise StopAsyncIteration
        if self._receive is None:
            raise ClientError("a local watch is read inside `async with client.watch(...)`")
        try:
            type, obj = await self._receive.receive()
        except trio.EndOfChannel:
            await self.aclose()
            raise StopAsyncIteration from None
        if type == ERROR:
            await self.aclose()  # an ERROR event is the stream's last
            raise ApiError(cast(Status, obj))
        return WatchEvent(cast(WatchType, type), cast(T, obj))

    async def aclose(self) -> None:
        """Stop the watch; further iteration ends at once. Idempotent. (Its task is
        waited for when the ``async with`` is left: only there is the nursery that
        holds it innermost.)"""
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


if TYPE_CHECKING:  # both clients keep the one contract components are written against
    _local: type[ApiClient] = LocalClient
    _http: type[ApiClient] = AsyncClient
