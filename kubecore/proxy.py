"""The service proxy contract: what a ``kubecore_proxier`` plugin returns.

The proxy's config loop (apiserver watch, etcd or a file) hands the proxier the full
set of services and endpoints every time anything changes; the proxier opens, reopens
and closes listeners to match and forwards each new connection to one endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from kubecore.api import Endpoints, Service


@runtime_checkable
class Proxier(Protocol):
    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; listeners live in this task's nursery."""
        ...

    async def apply(self, services: Sequence[Service], endpoints: Sequence[Endpoints]) -> None:
        """Make the listeners match ``services`` and route to ``endpoints`` (full sets).

        A changed service reopens only its own listener; a removed one stops accepting
        while its open connections finish; endpoint changes apply to new connections.
        """
        ...
