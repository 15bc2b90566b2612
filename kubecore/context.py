"""The run's context handed to hooks, and the component contract.

The data flows one way: the kernel builds one :class:`Context` from the validated
configuration, asks the plugins for components with it, and runs those components.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kubecore.config import KernelConfig, SectionModel, Settings

if TYPE_CHECKING:
    from kubecore.client import ApiClient
    from kubecore.store import Store

M = TypeVar("M", bound=SectionModel)

# Start order of components; shutdown runs in reverse.
STAGE_STORE = 0
STAGE_API = 10
STAGE_CONTROL = 20
STAGE_NODE = 30
STAGE_PROXY = 40


@dataclass(frozen=True)
class Component:
    """A long-running part of the run.

    ``run`` is called as ``await nursery.start(run)``: it must call
    ``task_status.started()`` once it is ready (listening, connected), and then run
    until cancelled. ``stage`` orders start-up (lower first) and shutdown (reverse).
    """

    name: str
    run: Callable[..., Awaitable[None]]
    stage: int = STAGE_NODE


def machine_hostname() -> str:
    """The machine's fully qualified name, as ``hostname -f`` would print it."""
    return socket.getfqdn() or socket.gethostname()


@dataclass
class Context:
    """What every hook that takes ``ctx`` sees: configuration, role, identity, hooks."""

    settings: Settings
    hook: Any  # the pluggy HookRelay: ``ctx.hook.kubecore_store(ctx=ctx)``
    store: Store | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def kernel(self) -> KernelConfig:
        return self.settings.kernel

    @property
    def role(self) -> Literal["all", "master", "node"]:
        return self.kernel.role

    def runs(self, part: Literal["master", "node"]) -> bool:
        """Whether this run includes the master or the node half."""
        return self.role in ("all", part)

    @property
    def hostname(self) -> str:
        return self.kernel.hostname or machine_hostname()

    @property
    def data_dir(self) -> Path:
        return self.kernel.data_dir.expanduser()

    def api_url(self) -> str | None:
        """Where this process's components reach the apiserver: ``kubecore.api_server``,
        else the apiserver this process runs (known once it listens), else ``None``."""
        url = self.kernel.api_server or self.extras.get("apiserver_url")
        return str(url) if url else None

    def api_token(self) -> str | None:
        """The bearer token for :meth:`api_url`, if one is configured."""
        if self.kernel.api_token_file is not None:
            lines = self.kernel.api_token_file.expanduser().read_text().split()
            return lines[0] if lines else None
        token = self.extras.get("apiserver_token")
        return str(token) if token else None

    def api_client(self) -> ApiClient | None:
        """A new API client for :meth:`api_url` (the caller closes it), or ``None``.

        Without ``kubecore.api_server``, components of the process that serves the API
        get the apiserver's in-process client (the same API without loopback HTTP; see
        :mod:`kubecore.apiserver.local`) when it offers one."""
        local = self.extras.get("apiserver_local_client")
        if not self.kernel.api_server and callable(local):
            client: ApiClient = local()
            return client
        url = self.api_url()
        if url is None:
            return None
        from kubecore.client import AsyncClient

        return AsyncClient(url, token=self.api_token())

    def config(self, model: type[M]) -> M:
        """The validated section whose schema is ``model``."""
        return self.settings.get(model)

