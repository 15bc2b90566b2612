"""Watch: a resource's changes as a stream of ``{"type", "object"}`` events.

Contract (KUBERNETES-V05.md section 2):
- ``resourceVersion`` 0 (or absent): every existing matching object first, as ADDED,
  then every change after the revision of that list; N: every change after N.
- A change is tested against the selectors before and after: matching after only is
  ADDED, before and after MODIFIED, before only DELETED (carrying the object as it last
  matched, stamped with the change's revision). A deletion is DELETED with the last value
  and the deletion's revision as ``resourceVersion``.
- A revision older than the store keeps gives one ERROR event whose object is a
  ``Status`` with code 410 (reason ``Gone``), then the stream ends; an unreachable store
  gives an ERROR with code 503 (any other failure, 500). The caller lists again and
  watches from the new revision.
- Over HTTP the events are newline-delimited JSON in a chunked response, which ends when
  the client disconnects or the server stops (all tasks are cancelled, none left over).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from kubecore.api import DEFAULT_NAMESPACE, TypeMeta, encode_json
from kubecore.apiserver import errors
from kubecore.apiserver.strategy import Strategy
from kubecore.log import get_logger
from kubecore.store import Compacted, EventType, StoreError, WatchEvent

if TYPE_CHECKING:
    from kubecore.apiserver.registry import Registry

log = get_logger("kubecore.apiserver")

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
ERROR = "ERROR"

Emit = Callable[[str, TypeMeta], Awaitable[None]]
"""Receives each event: its type and its object (a ``Status`` for ERROR). The object
may be shared with other watches (:meth:`~kubecore.apiserver.registry.Registry.view`):
never change it."""


@dataclass
class Watcher:
    """A checked watch request; :meth:`run` streams it until the stream ends."""

    registry: Registry
    strategy: Strategy
    resource_version: int
    namespace: str | None
    matches: Callable[[TypeMeta], bool]

    def _visible(self, obj: TypeMeta | None) -> bool:
        if obj is None or not self.matches(obj):
            return False
        resource = self.strategy.resource
        if self.namespace is None or not resource.namespaced or resource.namespace_in_key:
            return True
        return (obj.namespace or DEFAULT_NAMESPACE) == self.namespace

    def _translate(self, change: WatchEvent) -> tuple[str, TypeMeta] | None:
        # Shared views: every watch of this resource reads the same change, and hands
        # out one object for it (decorated once, never changed).
        current = self.registry.view(self.strategy, change.kv)
        if change.type is EventType.DELETE:
            return (DELETED, current) if current is not None and self._visible(current) else None
        previous = self.registry.view(self.strategy, change.prev) if change.prev else None
        now_visible, was_visible = self._visible(current), self._visible(previous)
        if now_visible and current is not None:
            return (MODIFIED if was_visible else ADDED), current
        if was_visible and previous is not None:
            left = previous.model_copy(update={"resource_version": change.revision})
            return DELETED, left
        return None

    async def run(self, emit: Emit) -> None:
        """Send every event to ``emit`` until the stream ends (an ERROR event: any
        failure, logged when unexpected, ends the stream with one) or the caller is
        cancelled."""
        store = self.registry.store
        prefix = self.strategy.resource.prefix(
            self.namespace if self.strategy.resource.namespaced else None)
        try:
            start = self.resource_version
            if start == 0:
                kvs, start = await store.list(prefix)
                for kv in kvs:
                    obj = self.registry.view(self.strategy, kv)
                    if obj is not None and self._visible(obj):
                        await emit(ADDED, obj)
            async with store.watch(prefix, start) as changes:
                async for change in changes:
                    event = self._translate(change)
                    if event is not None:
                        await emit(*event)
        except Compacted as exc:
            await emit(ERROR, errors.gone(
                f"too old resource version: {exc.requested} (the oldest kept is "
                f"{exc.compact_revision + 1}); list again and watch from its resourceVersion"
            ).to_status())
        except StoreError as exc:  # unavailable (503) or failing (500): the caller retries
            await emit(ERROR, errors.status_for(exc))
        except Exception as exc:
            # The stream has begun: the error can only be its last event.
            log.error("watch failed", error=repr(exc), exc_info=exc)
            await emit(ERROR, errors.status_for(exc))


def event_line(type: str, obj: TypeMeta) -> bytes:
    """One event as a line of JSON: ``{"type":"ADDED","object":{...}}\\n``."""
    return b'{"type":"' + type.encode() + b'","object":' + encode_json(obj) + b"}\n"


class WatchResponse:
    """The ASGI response of a watch: chunked newline-delimited JSON events.

    It listens for the client's disconnect while it streams and cancels the watch then,
    so a quiet watch whose client left does not linger.
    """

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with trio.open_nursery() as nursery:

            async def until_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(until_disconnect)
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"cache-control", b"no-cache")],
            })

            async def emit(type: str, obj: TypeMeta) -> None:
                await send({"type": "http.response.body", "body": event_line(type, obj),
                            "more_body": True})

            await self.watcher.run(emit)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()
