"""The stored form of objects: v1beta1 JSON without the fields that belong elsewhere."""

from __future__ import annotations

import json

from kubecore.api import API_VERSION, TypeMeta, to_dict


def encode_stored(obj: TypeMeta) -> bytes:
    """The stored form of ``obj``: its JSON with kind and apiVersion, without the
    fields that belong to the key (resourceVersion) or the request (selfLink)."""
    data = to_dict(obj)
    data["kind"] = obj.KIND
    data["apiVersion"] = API_VERSION
    data.pop("resourceVersion", None)
    data.pop("selfLink", None)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
