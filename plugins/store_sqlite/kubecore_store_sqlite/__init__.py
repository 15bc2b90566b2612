"""kubecore-store-sqlite: the embedded default store, one SQLite file with revisions
and watches (in the manner of k3s's kine), for clusters without etcd.

Hooks: ``kubecore_config_section`` declares ``[store_sqlite]``; ``kubecore_store``
returns a :class:`~kubecore_store_sqlite.store.SqliteStore`. The store hook runs
``trylast`` so any other store plugin that is loaded (``store_etcd``) wins.
"""

from __future__ import annotations

from kubecore import hookimpl
from kubecore.config import ConfigSection
from kubecore.context import Context
from kubecore_store_sqlite.config import DEFAULT_FILE_NAME, SqliteStoreConfig
from kubecore_store_sqlite.store import SqliteStore

__all__ = ["SqliteStore", "SqliteStoreConfig", "kubecore_config_section", "kubecore_store"]


@hookimpl
def kubecore_config_section() -> ConfigSection:
    return ConfigSection(
        "store_sqlite", SqliteStoreConfig, "embedded store: one SQLite file with watches"
    )


@hookimpl(trylast=True)
def kubecore_store(ctx: Context) -> SqliteStore:
    """The store in ``path`` (default ``<data_dir>/store.sqlite3``); opened on first use."""
    cfg = ctx.config(SqliteStoreConfig)
    path = cfg.path.expanduser() if cfg.path is not None else ctx.data_dir / DEFAULT_FILE_NAME
    return SqliteStore(
        path,
        retain_revisions=cfg.retain_revisions,
        synchronous=cfg.synchronous,
        busy_timeout=cfg.busy_timeout,
    )
