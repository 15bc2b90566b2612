"""List-then-watch of one resource, kept going through errors, and a retry backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from kubecore.api import TypeMeta
from kubecore.client import ApiClient, ApiError, ClientError, WatchEvent
from kubecore.log import get_logger

log = get_logger("kubecore.controllers")

T = TypeVar("T", bound=TypeMeta)

ObjectKey = tuple[str, str]
"""(namespace, id) of a namespaced object."""

# A watch that ends sooner than this after opening counts as a failure (backoff), so a
# server that keeps closing streams at once does not cause a hot re-list loop.
MIN_HEALTHY_WATCH = 1.0


def key_of(obj: TypeMeta) -> ObjectKey:
    return (obj.namespace, obj.id)


class Backoff:
    """Delays between retries: ``initial`` doubling up to ``maximum``; :meth:`reset`
    after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    async def sleep(self) -> None:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        await trio.sleep(delay)


async def list_and_watch(
    client: ApiClient,
    model: type[T],
    *,
    on_list: Callable[[list[T]], None],
    on_event: Callable[[WatchEvent[T]], None],
    backoff: Backoff | None = None,
) -> None:
    """Follow ``model``'s resource in every namespace until cancelled.

    ``on_list`` gets the full state after every (re)list; ``on_event`` each change after
    it, in order. The watch starts at the list's revision, so nothing is missed; a 410
    (revision too old) or a closed stream means list again at once, any other failure
    (unreachable apiserver, 5xx) list again after a growing delay. Callbacks must not
    block; an exception they raise propagates.
    """
    backoff = backoff or Backoff()
    name = model.KIND
    while True:
        try:
            listed = await client.list(model)
            on_list(listed.items)
            opened = trio.current_time()
            async with client.watch(model, listed.resource_version) as watch:
                async for event in watch:
                    on_event(event)
                    backoff.reset()
            if trio.current_time() - opened < MIN_HEALTHY_WATCH:
                await backoff.sleep()
            else:
                backoff.reset()
        except ApiError as exc:
            if exc.code == 410:
                log.debug("watch revision too old; listing again", resource=name)
                continue
            log.warning("list/watch failed; retrying", resource=name, error=str(exc))
            await backoff.sleep()
        except ClientError as exc:
            log.warning("list/watch failed; retrying", resource=name, error=str(exc))
            await backoff.sleep()
