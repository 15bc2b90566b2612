"""kubecore-proxy-userspace: the service proxy of a node, in user space.

TCP and UDP forwarding per service, round robin over endpoints (optionally sticky per
client IP), a listener on ``bind_address:port`` and one on a loopback portal IP per
service, and a splice(2) data path for bulk TCP traffic.

Hooks:

- ``kubecore_config_section`` declares ``[proxy_userspace]``
  (:class:`~kubecore_proxy_userspace.config.ProxyUserspaceConfig`).
- ``kubecore_proxier`` returns a
  :class:`~kubecore_proxy_userspace.proxier.UserspaceProxier` (``trylast``: any other
  proxier plugin that is loaded wins).
- ``kubecore_components`` adds the ``proxy`` component on nodes: it runs the proxier
  and feeds it from ``services_file`` when that is set, else from the apiserver
  (``ctx.api_client()``: list then watch services and endpoints of every namespace,
  :mod:`~kubecore_proxy_userspace.apisource`).
"""

from __future__ import annotations

from functools import partial

import trio

from kubecore import hookimpl
from kubecore.client import AsyncClient
from kubecore.config import ConfigSection
from kubecore.context import STAGE_PROXY, Component, Context
from kubecore.log import get_logger
from kubecore.proxy import Proxier
from kubecore_proxy_userspace.apisource import ApiFeed
from kubecore_proxy_userspace.config import ProxyUserspaceConfig
from kubecore_proxy_userspace.filesource import follow_services_file, parse_services
from kubecore_proxy_userspace.proxier import UserspaceProxier

__all__ = [
    "ApiFeed",
    "ProxyUserspaceConfig",
    "UserspaceProxier",
    "follow_services_file",
    "kubecore_components",
    "kubecore_config_section",
    "kubecore_proxier",
    "parse_services",
    "run_proxy",
]

log = get_logger("kubecore.proxy_userspace")


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection(
        "proxy_userspace", ProxyUserspaceConfig, "service proxy: TCP/UDP forwarding, round robin"
    )


@hookimpl(trylast=True)
def kubecore_proxier(ctx: Context) -> UserspaceProxier:
    """A new proxier configured from ``[proxy_userspace]``; it serves once run."""
    return UserspaceProxier(ctx.config(ProxyUserspaceConfig))


@hookimpl
def kubecore_components(ctx: Context) -> list[Component]:
    if not ctx.runs("node"):
        return []
    return [Component("proxy", partial(run_proxy, ctx), STAGE_PROXY)]


async def run_proxy(
    ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The ``proxy`` component: the run's proxier, fed from ``services_file`` when set,
    else from the apiserver when the run knows one. Started once the proxier serves
    the first configuration (or found its source unusable)."""
    cfg = ctx.config(ProxyUserspaceConfig)
    proxier: Proxier | None = ctx.hook.kubecore_proxier(ctx=ctx)
    if proxier is None:
        proxier = UserspaceProxier(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        if cfg.services_file is not None:
            await nursery.start(
                partial(
                    follow_services_file,
                    cfg.services_file.expanduser(),
                    proxier,
                    poll=cfg.services_file_poll,
                )
            )
        elif (client := ctx.api_client()) is not None:
            nursery.start_soon(_close_on_exit, client)
            await nursery.start(ApiFeed(client, proxier).run)
            log.info("proxy follows the apiserver", url=client.base_url)
        else:
            log.info("proxy has no services source: neither services_file nor an"
                     " apiserver is configured")
        task_status.started()


async def _close_on_exit(client: AsyncClient) -> None:
    """Hold ``client`` open for the nursery's life; close it when cancelled."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
