"""The apiserver as a built-in plugin: its ``[apiserver]`` section and its component."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
from pydantic import Field, field_validator, model_validator

from kubecore.apiserver.expiry import DEFAULT_EVENT_TTL
from kubecore.apiserver.keys import DEFAULT_HOST_KEY, check_host_key_template
from kubecore.apiserver.portals import DEFAULT_PORTAL_NET, parse_portal_net
from kubecore.config import ConfigSection, SectionModel
from kubecore.context import STAGE_API, Component, Context
from kubecore.errors import StartupError
from kubecore.hookspecs import hookimpl
from kubecore.http import serve_asgi


class ApiserverConfig(SectionModel):
    """``[apiserver]``: where the REST API listens and how it allocates and writes."""

    address: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="port (0 = any free port)")
    portal_net: str = Field(
        default=DEFAULT_PORTAL_NET,
        description="IPv4 network service portal IPs are allocated from",
    )
    host_key: str = Field(
        default=DEFAULT_HOST_KEY,
        description="key of each host's BoundPods ({host} is replaced); "
        "v0.5 used /registry/nodes/{host}/boundpods",
    )
    token_file: Path | None = Field(
        default=None,
        description="bearer tokens, one per line; when set every request but /healthz "
        "needs one",
    )
    event_ttl: float = Field(
        default=DEFAULT_EVENT_TTL, ge=0,
        description="seconds an event is kept after its creation (v0.5: 48 h); "
        "0 keeps events forever",
    )
    in_process_clients: bool = Field(
        default=True,
        description="components in the apiserver's process (scheduler, controllers, "
        "kubelet, proxy) call it directly rather than over loopback HTTP",
    )
    tls_cert_file: Path | None = Field(
        default=None, description="certificate (PEM) to serve HTTPS; needs tls_key_file"
    )
    tls_key_file: Path | None = Field(
        default=None, description="private key (PEM) of tls_cert_file"
    )

    @field_validator("portal_net")
    @classmethod
    def _check_portal_net(cls, value: str) -> str:
        parse_portal_net(value)
        return value

    @field_validator("host_key")
    @classmethod
    def _check_host_key(cls, value: str) -> str:
        return check_host_key_template(value)

    @model_validator(mode="after")
    def _check_tls(self) -> ApiserverConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        return self


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("apiserver", ApiserverConfig, "the v1beta1 REST API")


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    if not ctx.runs("master"):
        return []
    if ctx.store is None and ctx.kernel.api_server:
        # A master's components served by another process's apiserver (v0.5's
        # scheduler and controller manager ran apart from it): none here.
        return []
    if ctx.store is None:
        raise StartupError(
            "the apiserver needs a store plugin: select store_sqlite or store_etcd"
        )
    store = ctx.store
    cfg = ctx.config(ApiserverConfig)

    async def run(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        from kubecore.apiserver.app import create_app
        from kubecore.apiserver.auth import read_token_file
        from kubecore.apiserver.registry import Registry

        tokens = None
        if cfg.token_file is not None:
            tokens = read_token_file(cfg.token_file.expanduser())
        registry = Registry(store, portal_net=cfg.portal_net, host_key=cfg.host_key)
        serve = partial(
            serve_asgi, create_app(registry, tokens=tokens), name="apiserver",
            address=cfg.address, port=cfg.port,
            tls_cert_file=cfg.tls_cert_file.expanduser() if cfg.tls_cert_file else None,
            tls_key_file=cfg.tls_key_file.expanduser() if cfg.tls_key_file else None,
        )
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(serve)
            if cfg.event_ttl > 0:
                from kubecore.apiserver.expiry import run_event_expiry

                nursery.start_soon(run_event_expiry, registry, cfg.event_ttl)
            # Components started after this one in the same process talk to it.
            ctx.extras["apiserver_url"] = url
            if cfg.in_process_clients:
                from kubecore.apiserver.local import LocalClient

                ctx.extras["apiserver_local_client"] = partial(LocalClient, registry, url)
            if tokens:
                ctx.extras["apiserver_token"] = sorted(tokens)[0]
            task_status.started(url)

    return [Component("apiserver", run, STAGE_API)]
