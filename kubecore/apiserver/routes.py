"""The ``/api/v1beta1`` request handlers: HTTP in, registry calls, ``Status`` errors out.

- ``GET /api/v1beta1/<r>`` list, ``POST`` create; ``GET|PUT|DELETE /api/v1beta1/<r>/<id>``
  (a PUT body without an id takes the URL's; one with another id is a 400);
  ``GET /api/v1beta1/watch/<r>``; ``POST /api/v1beta1/bindings``.
- Query: ``namespace``, ``labels``, ``fields``, ``resourceVersion`` (watch).
- Bodies are JSON or YAML of the resource's kind (``kind`` may be omitted; another kind
  is a 400, undecodable text a 400, wrong field types and invalid values a 422 with
  every cause). Bodies larger than :data:`~kubecore.api.MAX_INPUT_BYTES` are a 400.
- An unknown resource, or one that has no such verb, is v0.5's plain-text 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from kubecore.api import (
    MAX_INPUT_BYTES,
    Binding,
    InvalidObject,
    Selector,
    TypeMeta,
    decode_value,
    encode_json,
    load_documents,
)
from kubecore.apiserver import errors
from kubecore.apiserver.registry import Registry
from kubecore.apiserver.resources import RESOURCES, Resource
from kubecore.apiserver.watch import WatchResponse

# Revisions are signed 64-bit integers in etcd and SQLite alike.
MAX_RESOURCE_VERSION = 2**63 - 1

M = TypeVar("M", bound=TypeMeta)
Handler = Callable[[Request], Awaitable[Any]]


def json_response(obj: TypeMeta, code: int = 200) -> Response:
    return Response(encode_json(obj), status_code=code, media_type="application/json")


def api_handler(handler: Handler) -> Handler:
    """Answer what ``handler`` raises as a ``Status`` with its code (never a traceback)."""

    @wraps(handler)
    async def run(request: Request) -> Any:
        try:
            return await handler(request)
        except HTTPException:
            raise
        except Exception as exc:
            status = errors.failed_request(exc, method=request.method,
                                           path=request.url.path)
        return json_response(status, status.code or 500)

    return run


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def resource_of(request: Request, *, watch: bool = False) -> Resource:
    """The resource named in the path; plain 404 for an unknown (or unwatchable) one."""
    resource = RESOURCES.get(request.path_params["resource"])
    if resource is None or (watch and not resource.watchable):
        raise HTTPException(404)
    return resource


def namespace_of(request: Request) -> str | None:
    return request.query_params.get("namespace") or None


def selectors_of(request: Request) -> tuple[Selector, Selector]:
    """The ``labels`` and ``fields`` selectors (400 if either does not parse)."""
    return (Selector.parse(request.query_params.get("labels", "")),
            Selector.parse(request.query_params.get("fields", "")))


async def read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_INPUT_BYTES:
            raise errors.bad_request(f"the body is larger than {MAX_INPUT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode_body(request: Request, model: type[M]) -> M:
    """The body as one ``model`` object (see the module docstring for the codes)."""
    data = await read_body(request)
    try:
        documents = load_documents(data)
    except InvalidObject as exc:
        raise errors.bad_request(f"the body cannot be decoded: {exc}") from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise errors.bad_request(f"the body must be one {model.KIND} object")
    kind = documents[0].get("kind")
    if kind not in (None, "", model.KIND):
        raise errors.bad_request(f"the body is a {kind!r}, expected a {model.KIND!r}")
    return decode_value(documents[0], kind=model)


@api_handler
async def collection(request: Request) -> Response:
    resource = resource_of(request)
    registry = registry_of(request)
    if request.method == "GET":
        labels, fields = selectors_of(request)
        listed = await registry.list(resource.name, namespace=namespace_of(request),
                                     labels=labels, fields=fields)
        return json_response(listed)
    obj = await decode_body(request, resource.model)
    created = await registry.create(resource.name, obj, namespace=namespace_of(request),
                                    owned=True)
    return json_response(created)


@api_handler
async def item(request: Request) -> Response:
    resource = resource_of(request)
    registry = registry_of(request)
    id = request.path_params["id"]
    namespace = namespace_of(request)
    if request.method == "GET":
        return json_response(await registry.get(resource.name, id, namespace=namespace))
    if request.method == "DELETE":
        return json_response(await registry.delete(resource.name, id, namespace=namespace))
    obj = await decode_body(request, resource.model)
    if not obj.id:
        obj.id = id
    elif obj.id != id:
        raise errors.bad_request(f"the id in the body ({obj.id!r}) is not the id in the URL "
                                 f"({id!r})")
    return json_response(await registry.update(resource.name, obj, namespace=namespace,
                                               owned=True))


@api_handler
async def watch(request: Request) -> Any:
    resource = resource_of(request, watch=True)
    labels, fields = selectors_of(request)
    text = request.query_params.get("resourceVersion", "") or "0"
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or (
        int(text) > MAX_RESOURCE_VERSION
    ):
        raise errors.bad_request(f"resourceVersion must be an integer from 0 to "
                                 f"{MAX_RESOURCE_VERSION}, not {text[:40]!r}")
    watcher = registry_of(request).open_watch(
        resource.name, resource_version=int(text), namespace=namespace_of(request),
        labels=labels, fields=fields,
    )
    return WatchResponse(watcher)


@api_handler
async def bind(request: Request) -> Response:
    binding = await decode_body(request, Binding)
    status = await registry_of(request).bind(binding, namespace=namespace_of(request))
    return json_response(status)
