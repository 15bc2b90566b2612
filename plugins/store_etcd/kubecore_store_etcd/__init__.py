"""kubecore-store-etcd: cluster state in etcd v3, through the ``etcd3`` package.

Hooks: ``kubecore_config_section`` declares ``[store_etcd]``; ``kubecore_store``
returns an :class:`~kubecore_store_etcd.store.EtcdStore`. The store module (and with
it gRPC and etcd3) is imported only when a store is asked for, so listing plugins stays
fast; see :mod:`kubecore_store_etcd.compat` for how etcd3 is imported on current
protobuf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubecore import hookimpl
from kubecore.config import ConfigSection
from kubecore.context import Context
from kubecore_store_etcd.config import EtcdStoreConfig

if TYPE_CHECKING:
    from kubecore_store_etcd.store import EtcdStore

__all__ = ["EtcdStoreConfig", "kubecore_config_section", "kubecore_store"]


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection("store_etcd", EtcdStoreConfig, "cluster state in etcd v3")


@hookimpl
def kubecore_store(ctx: Context) -> EtcdStore:
    """An etcd store for the configured endpoints; it connects on first use."""
    from kubecore_store_etcd.store import EtcdStore

    cfg = ctx.config(EtcdStoreConfig)
    return EtcdStore(
        cfg.endpoints,
        prefix=cfg.prefix,
        request_timeout=cfg.request_timeout,
        reconnect_delay_max=cfg.reconnect_delay_max,
    )
