"""Malformed manifests: every source must reject each with the field it is about.

``ITEMS`` are manifests that decode as data but are wrong (they can sit in a list next
to a healthy manifest); ``BODIES`` are inputs that do not decode at all (they can only
be a whole file, body or value). Each entry names the field the rejection must give
("" for a whole-input problem, whose message must then contain ``message``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.sources.helpers import manifest


@dataclass(frozen=True)
class BadItem:
    name: str
    value: Any
    field: str
    # The file source names pods after their files: a bad manifest id is not used there.
    file_ignores: bool = False


@dataclass(frozen=True)
class BadBody:
    name: str
    data: bytes
    message: str


def _with(path: str, value: Any, *, drop: bool = False, pod_id: str = "bad") -> dict[str, Any]:
    """A healthy manifest with the dotted ``path`` set to ``value`` (or removed)."""
    body = manifest(pod_id)
    parts = path.split(".")
    target: Any = body
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if drop:
        del target[last]
    else:
        target[last] = value
    return body


def _container(**fields: Any) -> dict[str, Any]:
    return {"name": "main", "image": "busybox", **fields}


def _containers(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": "v1beta1", "id": "bad", "containers": list(containers), **extra}


ITEMS: list[BadItem] = [
    BadItem("not an object", "just a string", ""),
    BadItem("array item is a number", 42, ""),
    BadItem("containers not a list", _with("containers", "busybox"), "containers"),
    BadItem("container not an object", _with("containers", [7]), "containers[0]"),
    BadItem("missing image", _with("containers.0.image", None, drop=True),
            "containers[0].image"),
    BadItem("empty image", _with("containers.0.image", ""), "containers[0].image"),
    BadItem("image not a string", _with("containers.0.image", {"a": 1}),
            "containers[0].image"),
    BadItem("missing container name", _with("containers.0.name", None, drop=True),
            "containers[0].name"),
    BadItem("uppercase container name", _with("containers.0.name", "Main"),
            "containers[0].name"),
    BadItem("container name too long", _with("containers.0.name", "a" * 64),
            "containers[0].name"),
    BadItem("duplicate container names", _containers(_container(), _container()),
            "containers[1].name"),
    BadItem("bad pod id", _with("id", "Bad_Id!"), "id", file_ignores=True),
    BadItem("id not a string", _with("id", ["x"]), "id"),
    BadItem("restart policy not an object", _with("restartPolicy", "sometimes"),
            "restartPolicy"),
    BadItem("working dir not a string", _with("containers.0.workingDir", ["x"]),
            "containers[0].workingDir"),
    BadItem("command not a list", _with("containers.0.command", 5),
            "containers[0].command"),
    BadItem("port zero", _containers(_container(ports=[{"containerPort": 0}])),
            "containers[0].ports[0].containerPort"),
    BadItem("port too large", _containers(_container(ports=[{"containerPort": 70000}])),
            "containers[0].ports[0].containerPort"),
    BadItem("port not a number", _containers(_container(ports=[{"containerPort": "http"}])),
            "containers[0].ports[0].containerPort"),
    BadItem("negative host port",
            _containers(_container(ports=[{"containerPort": 80, "hostPort": -1}])),
            "containers[0].ports[0].hostPort"),
    BadItem("duplicate host ports",
            _containers(_container(ports=[{"containerPort": 80, "hostPort": 8080},
                                          {"containerPort": 81, "hostPort": 8080}])),
            "containers[0].ports[1].hostPort"),
    BadItem("bad protocol",
            _containers(_container(ports=[{"containerPort": 80, "protocol": "SCTP"}])),
            "containers[0].ports[0].protocol"),
    BadItem("bad port name",
            _containers(_container(ports=[{"containerPort": 80, "name": "Web Port"}])),
            "containers[0].ports[0].name"),
    BadItem("bad env name", _containers(_container(env=[{"name": "1-BAD", "value": "x"}])),
            "containers[0].env[0].name"),
    BadItem("bad volume name", _containers(_container(), volumes=[
        {"name": "Bad Vol", "source": {"emptyDir": {}}}]), "volumes[0].name"),
    BadItem("duplicate volumes", _containers(_container(), volumes=[
        {"name": "v", "source": {"emptyDir": {}}}, {"name": "v", "source": {"emptyDir": {}}}]),
        "volumes[1].name"),
    BadItem("volume with two sources", _containers(_container(), volumes=[
        {"name": "v", "source": {"emptyDir": {}, "hostDir": {"path": "/tmp"}}}]),
        "volumes[0].source"),
    BadItem("mount of an unknown volume",
            _containers(_container(volumeMounts=[{"name": "nope", "mountPath": "/x"}])),
            "containers[0].volumeMounts[0].name"),
    BadItem("mount without a path", _containers(
        _container(volumeMounts=[{"name": "v"}]),
        volumes=[{"name": "v", "source": {"emptyDir": {}}}]),
        "containers[0].volumeMounts[0].mountPath"),
    BadItem("privileged", _containers(_container(privileged=True)),
            "containers[0].privileged"),
    BadItem("memory not a number", _with("containers.0.memory", "lots"),
            "containers[0].memory"),
    BadItem("hook without a handler", _containers(_container(lifecycle={"postStart": {}})),
            "containers[0].lifecycle.postStart"),
    BadItem("HTTP hook without a path",
            _containers(_container(lifecycle={"postStart": {"httpGet": {"port": 80}}})),
            "containers[0].lifecycle.postStart.httpGet.path"),
    BadItem("unknown kind", _with("kind", "Pod"), "kind"),
]

_BOMB = b"""a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""

BODIES: list[BadBody] = [
    BadBody("binary junk", bytes(range(256)) * 4, ""),
    BadBody("invalid UTF-8", b'{"id": "\xff\xfe"}', ""),
    BadBody("truncated JSON", b'{"version": "v1beta1", "containers": [', ""),
    BadBody("YAML bomb", _BOMB, ""),
    BadBody("deep nesting", b"[" * 5000 + b"]" * 5000, ""),
    BadBody("deep YAML nesting", b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 300)),
            ""),
    BadBody("two YAML documents", b"id: a\n---\nid: b\n", "documents"),
    BadBody("a bare number", b"12", ""),
    BadBody("empty body", b"", "empty"),
    BadBody("duplicate JSON keys", b'{"id": "a", "id": "b"}', ""),
]
