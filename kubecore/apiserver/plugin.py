"""The apiserver as a built-in plugin: its ``[apiserver]`` section and its component."""

from __future__ import annotations

from functools import partial

from pydantic import Field

from kubecore.config import ConfigSection, SectionModel
from kubecore.context import STAGE_API, Component, Context
from kubecore.hookspecs import hookimpl
from kubecore.http import serve_asgi


class ApiserverConfig(SectionModel):
    """``[apiserver]``: where the REST API listens."""

    address: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="port (0 = any free port)")


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("apiserver", ApiserverConfig, "the v1beta1 REST API")


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    if not ctx.runs("master"):
        return []
    from kubecore.apiserver.app import create_app

    cfg = ctx.config(ApiserverConfig)
    run = partial(serve_asgi, create_app(), name="apiserver", address=cfg.address, port=cfg.port)
    return [Component("apiserver", run, STAGE_API)]
