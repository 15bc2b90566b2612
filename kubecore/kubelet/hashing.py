"""The container spec hash: any change to a container's spec restarts that container.

kubecore hashes the whole container spec (v0.5 hashed a Go-printed struct): the model
dumped with every field, JSON names and sorted keys, so the hash does not depend on key
order, on whether a default was written out, or on the process computing it.
"""

from __future__ import annotations

import hashlib
import json

from kubecore.api import BoundPod, Container, PodSpec, apply_defaults

HASH_LENGTH = 16


def container_hash(container: Container) -> str:
    """A stable hex digest of ``container`` with v0.5's defaults applied.

    Two specs that decode to the same container give the same hash; any field that
    differs (command, env, ports, probes...) gives another.
    """
    # Defaults are defined for whole pods; a one-container pod carries them over.
    defaulted = apply_defaults(BoundPod(spec=PodSpec(containers=[container])))
    data = defaulted.spec.containers[0].model_dump(mode="json", by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
