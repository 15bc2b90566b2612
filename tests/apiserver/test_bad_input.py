"""A bad-input corpus for every write: each field of a valid body of every resource
replaced by values of the wrong type, out of range or hostile. The apiserver answers
every one with 200 or a 4xx Status, never a 500."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import trio

from tests.apiserver.harness import Api
from tests.apiserver.objects import controller, endpoints, event, minion, pod, service

P = "/api/v1beta1"

ODD_VALUES: list[Any] = [None, -1, 2**70, "x/y\x00\udcff", {"": [None]}]

BODIES: dict[str, dict[str, Any]] = {
    "pods": pod(host_port=80),
    "services": service(),
    "replicationControllers": controller(),
    "minions": minion(),
    "endpoints": endpoints("web", "127.0.0.1:80"),
    "events": event("e1"),
    "bindings": {"kind": "Binding", "podID": "web-1", "host": "node-a"},
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths(child, (*prefix, index))


def replaced(body: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return copy


def mutations() -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """(resource, the path changed, the body) for every field and odd value."""
    for resource, body in BODIES.items():
        for path in paths(body):
            for value in ODD_VALUES:
                yield resource, path, replaced(body, path, value)
        for key in ("resourceVersion", "creationTimestamp", "uid", "selfLink"):
            for value in ODD_VALUES:
                yield resource, (key,), {**body, key: value}


async def check(api: Api, method: str, path: str, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode("utf-8", "surrogatepass")
    response = await api.http.request(method, path, content=content)
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code != 200:
        status = response.json()
        assert status["kind"] == "Status" and status["code"] == response.status_code


async def test_no_write_is_a_server_error(api: Api) -> None:
    # Targets for updates and bindings, so those paths get past "not found".
    await api.ok("POST", f"{P}/pods", json=pod())
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for resource, path, body in mutations():
        requests.append(("POST", f"{P}/{resource}", body))
        if resource != "bindings" and len(path) == 1:
            id = body.get("id")
            target = id if isinstance(id, str) and re.fullmatch(r"[a-z0-9-]+", id) else "x"
            requests.append(("PUT", f"{P}/{resource}/{target}", body))
    assert len(requests) > 700
    limit = trio.CapacityLimiter(16)

    async def one(method: str, path: str, body: dict[str, Any]) -> None:
        async with limit:
            await check(api, method, path, body)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for request in requests:
                nursery.start_soon(one, *request)


ODD_QUERIES = [
    "labels=a", "labels=a=b=c", "labels=!=", "labels=a!=b!=c", "labels=,,", "labels=%00=%ff",
    "fields=x", "fields=name==a==b", "namespace=%2F..%2F", "namespace=a/b", "namespace=%00",
    "namespace=" + "n" * 5000,
]


async def test_no_read_is_a_server_error(api: Api) -> None:
    await api.ok("POST", f"{P}/pods", json=pod())
    for resource in BODIES:
        for query in ODD_QUERIES:
            for path in (f"{P}/{resource}?{query}", f"{P}/{resource}/web-1?{query}"):
                response = await api.http.get(path)
                assert response.status_code < 500, (path, response.text)
    for version in ("-1", "abc", "1e3", "0x10", " 1", "9" * 30, "1" * 5000):
        response = await api.http.get(f"{P}/watch/pods", params={"resourceVersion": version})
        assert response.status_code == 400, (version, response.text)
