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
  and feeds it from the source ``config_source`` names: the apiserver
  (``ctx.api_client()``: list then watch services and endpoints of every namespace,
  :mod:`~kubecore_proxy_userspace.apisource`), the cluster store's keys
  (:mod:`~kubecore_proxy_userspace.etcdsource`) or ``services_file``
  (:mod:`~kubecore_proxy_userspace.filesource`).
"""

from __future__ import annotations

from functools import partial

import trio

from kubecore import hookimpl
from kubecore.client import ApiClient
from kubecore.config import ConfigSection
from kubecore.context import STAGE_PROXY, Component, Context
from kubecore.errors import StartupError
from kubecore.log import get_logger
from kubecore.proxy import Proxier
from kubecore_proxy_userspace.apisource import ApiFeed
from kubecore_proxy_userspace.config import ProxyUserspaceConfig
from kubecore_proxy_userspace.etcdsource import StoreFeed
from kubecore_proxy_userspace.filesource import follow_services_file, parse_services
from kubecore_proxy_userspace.proxier import UserspaceProxier

__all__ = [
    "ApiFeed",
    "ProxyUserspaceConfig",
    "StoreFeed",
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
    """The ``proxy`` component: the run's proxier, fed from the source ``config_source``
    names (``auto``: ``services_file`` when set, else the apiserver when the run knows
    one). Started once the proxier serves the first configuration (or found its source
    unusable)."""
    cfg = ctx.config(ProxyUserspaceConfig)
    proxier: Proxier | None = ctx.hook.kubecore_proxier(ctx=ctx)
    if proxier is None:
        proxier = UserspaceProxier(cfg)
    source = cfg.config_source
    if source == "auto":
        source = "file" if cfg.services_file is not None else "api"
    async with trio.open_nursery() as nursery:
        await nursery.start(proxier.run)
        if source == "file":
            assert cfg.services_file is not None  # the config's validator ensures it
            await nursery.start(
                partial(
                    follow_services_file,
                    cfg.services_file.expanduser(),
                    proxier,
                    poll=cfg.services_file_poll,
                )
            )
        elif source == "etcd":
            await nursery.start(_follow_store, ctx, proxier)
        elif (client := ctx.api_client()) is not None:
            nursery.start_soon(_close_on_exit, client)
            await nursery.start(ApiFeed(client, proxier).run)
            log.info("proxy follows the apiserver", url=client.base_url,
                     in_process=client.in_process)
        else:
            log.info("proxy has no services source: neither services_file nor an"
                     " apiserver is configured")
        task_status.started()


async def _follow_store(
    ctx: Context, proxier: Proxier, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Feed ``proxier`` from the run's store: the one this process already runs on (an
    all-in-one run), else a new one from the ``kubecore_store`` hook, closed on exit."""
    store = ctx.store
    owned = store is None
    if store is None:
        store = ctx.hook.kubecore_store(ctx=ctx)
    if store is None:
        raise StartupError('proxy_userspace.config_source = "etcd" needs a store plugin:'
                           " load store_etcd (its endpoints and prefix say where to read)")
    try:
        if owned and store.name != "store_etcd":
            log.warning("proxy reads services from a store of this process only",
                        store=store.name, hint="load store_etcd to follow the cluster's etcd")
        log.info("proxy follows the store", store=store.name)
        await StoreFeed(store, proxier).run(task_status=task_status)
    finally:
        if owned:
            with trio.CancelScope(shield=True):
                await store.aclose()


async def _close_on_exit(client: ApiClient) -> None:
    """Hold ``client`` open for the nursery's life; close it when cancelled."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
