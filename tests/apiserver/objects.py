"""Small builders of v1beta1 request bodies (plain dicts, as a client would send)."""

from __future__ import annotations

from typing import Any


def pod(
    id: str = "web-1",
    *,
    labels: dict[str, str] | None = None,
    image: str = "nginx",
    host_port: int = 0,
    namespace: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    port: dict[str, Any] = {"containerPort": 80}
    if host_port:
        port["hostPort"] = host_port
    body: dict[str, Any] = {
        "kind": "Pod",
        "apiVersion": "v1beta1",
        "id": id,
        "labels": {"app": "web"} if labels is None else labels,
        "desiredState": {"manifest": {
            "version": "v1beta1",
            "containers": [{"name": "www", "image": image, "ports": [port]}],
        }},
    }
    if namespace is not None:
        body["namespace"] = namespace
    body.update(extra)
    return body


def service(
    id: str = "web",
    *,
    port: int = 80,
    selector: dict[str, str] | None = None,
    portal_ip: str = "",
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Service", "apiVersion": "v1beta1", "id": id, "port": port,
        "selector": {"app": "web"} if selector is None else selector,
    }
    if portal_ip:
        body["portalIP"] = portal_ip
    if namespace is not None:
        body["namespace"] = namespace
    if labels is not None:
        body["labels"] = labels
    return body


def controller(
    id: str = "web", *, replicas: int = 2, selector: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    selector = {"app": "web"} if selector is None else selector
    return {
        "kind": "ReplicationController", "apiVersion": "v1beta1", "id": id,
        "labels": labels or {},
        "desiredState": {
            "replicas": replicas,
            "replicaSelector": selector,
            "podTemplate": {
                "labels": dict(selector),
                "desiredState": {"manifest": {
                    "version": "v1beta1", "containers": [{"name": "www", "image": "nginx"}],
                }},
            },
        },
    }


def minion(id: str = "node-a", *, labels: dict[str, str] | None = None,
           host_ip: str = "127.0.0.1") -> dict[str, Any]:
    return {"kind": "Minion", "apiVersion": "v1beta1", "id": id, "hostIP": host_ip,
            "resources": {"capacity": {"cpu": 4000, "memory": 8 * 2**30}},
            "labels": labels or {}}


def endpoints(id: str = "web", *addresses: str) -> dict[str, Any]:
    return {"kind": "Endpoints", "apiVersion": "v1beta1", "id": id,
            "endpoints": list(addresses)}


def event(id: str = "", *, reason: str = "started", name: str = "web-1") -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Event", "apiVersion": "v1beta1", "status": "running", "reason": reason,
        "message": "container started", "source": "kubelet",
        "involvedObject": {"kind": "Pod", "name": name, "namespace": "default"},
    }
    if id:
        body["id"] = id
    return body
