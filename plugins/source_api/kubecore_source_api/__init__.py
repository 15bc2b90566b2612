"""source_api: the pods bound to this host, watched through the apiserver.

This is how a node runs pods created through the API when the store is not etcd (the
embedded ``store_sqlite``): see :mod:`kubecore_source_api.source`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubecore import hookimpl
from kubecore_source_api.source import ApiSource, bound_pod, snapshot_of

if TYPE_CHECKING:
    from kubecore.context import Context

__all__ = ["ApiSource", "bound_pod", "kubecore_manifest_sources", "snapshot_of"]


@hookimpl
def kubecore_manifest_sources(ctx: Context) -> list[ApiSource]:
    """One ``api`` source on a node; its apiserver is looked up when it starts."""
    if not ctx.runs("node"):
        return []
    return [ApiSource(ctx.api_client, ctx.hostname)]
