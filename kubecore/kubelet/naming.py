"""Pod full names: ``<id>.<namespace>.<source>``, the name a pod has on this node.

The id and the namespace may themselves hold dots (DNS subdomains); the source name
never does, so the source is what follows the last dot. Anything else about a full
name is only known from the pod it was made from.
"""

from __future__ import annotations

from kubecore.api import DEFAULT_NAMESPACE, BoundPod

#: The annotation the merger sets on every pod: the name of the source it came from.
SOURCE_ANNOTATION = "kubernetes/config.source"


def full_name(pod: BoundPod, source: str) -> str:
    """``<id>.<namespace>.<source>``; an empty namespace counts as ``default``."""
    return f"{pod.id}.{pod.namespace or DEFAULT_NAMESPACE}.{source}"


def source_of(full: str) -> str:
    """The source part of a full name (after the last dot); ``""`` if there is none."""
    _, dot, source = full.rpartition(".")
    return source if dot else ""
