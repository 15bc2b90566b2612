"""The API client on httpx: :class:`AsyncClient` for components, :class:`Client` for the CLI.

Resources are named by their model class (``Pod``, ``Service``,
``ReplicationController``, ``Minion``, ``Endpoints``, ``Event``); :func:`model_for`
maps a URL name (``pods``, ``replicationControllers``...) to its class. Reads return
typed objects; ``list`` returns an :class:`ObjectList` whose ``resource_version`` is
where a watch should start to miss nothing.

Errors: an answer other than 2xx raises :class:`ApiError`, carrying the decoded
``Status`` (``code``, ``reason``, ``message``, ``causes``; a plain-text 404 becomes a
``NotFound`` Status). A server that cannot be reached raises
:class:`ApiConnectionError`. Both are :class:`ClientError`, a ``KubecoreError``.

Watch (async only)::

    async with client.watch(Pod, listed.resource_version, fields={"DesiredState.Host": h}) as w:
        async for event in w:          # WatchEvent(type, object)
            ...

An ERROR event raises :class:`ApiError` (code 410 = the revision is too old: list
again and watch from the new ``resource_version``); the iteration ends when the server
closes the stream.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from kubecore.api import (
    API_VERSION,
    STATUS_FAILURE,
    Binding,
    Endpoints,
    Event,
    Minion,
    Pod,
    ReplicationController,
    Selector,
    Service,
    Status,
    StatusCause,
    TypeMeta,
    encode_json,
    with_kind,
)
from kubecore.errors import KubecoreError

T = TypeVar("T", bound=TypeMeta)

RESOURCE_NAMES: dict[type[TypeMeta], str] = {
    Pod: "pods",
    Service: "services",
    ReplicationController: "replicationControllers",
    Minion: "minions",
    Endpoints: "endpoints",
    Event: "events",
}
"""Model -> the resource's name in ``/api/v1beta1/<name>``."""

DEFAULT_TIMEOUT = 30.0

SelectorArg = str | Mapping[str, str] | Selector | None
"""A selector as text (``a=b,c!=d``), a mapping of required values, or a Selector."""


def model_for(name: str) -> type[TypeMeta]:
    """The model of resource ``name`` (``pods`` -> ``Pod``); ``KeyError`` if unknown."""
    for model, resource in RESOURCE_NAMES.items():
        if resource == name:
            return model
    raise KeyError(name)


def resource_name(model: type[TypeMeta]) -> str:
    """The URL name of ``model``'s resource; ``KeyError`` for a kind without one."""
    return RESOURCE_NAMES[model]


class ClientError(KubecoreError):
    """Base of the client's errors."""


class ApiError(ClientError):
    """The apiserver answered with an error; ``status`` is its decoded ``Status``."""

    def __init__(self, status: Status) -> None:
        self.status = status
        super().__init__(self._describe())

    @property
    def code(self) -> int:
        return self.status.code

    @property
    def reason(self) -> str:
        return self.status.reason

    @property
    def message(self) -> str:
        return self.status.message

    @property
    def causes(self) -> list[StatusCause]:
        return list(self.status.details.causes) if self.status.details else []

    def _describe(self) -> str:
        text = self.status.message or self.status.reason or f"HTTP {self.status.code}"
        if self.status.reason == "Invalid" and self.causes:
            # The message repeats the causes on one line; list them one per line instead.
            head = text.split(" is invalid:", 1)[0]
            lines = [f"{head} is invalid:" if " is invalid:" in text else text]
            lines += [f"  {c.field}: {c.message}" if c.field else f"  {c.message}"
                      for c in self.causes]
            return "\n".join(lines)
        return text


class ApiConnectionError(ClientError):
    """The apiserver could not be reached (or the connection broke)."""


@dataclass(frozen=True)
class ObjectList(Generic[T]):
    """The items of a list and the store revision it was read at."""

    items: list[T]
    resource_version: int


WatchType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class WatchEvent(Generic[T]):
    """One change: ``type`` ADDED, MODIFIED or DELETED, and the object."""

    type: WatchType
    object: T


class ApiWatch(Protocol[T]):
    """What :meth:`ApiClient.watch` returns: an async context manager (entering opens
    the watch) and an async iterator of :class:`WatchEvent`, ending when the stream
    does; an ERROR event raises :class:`ApiError`."""

    async def __aenter__(self) -> ApiWatch[T]: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    def __aiter__(self) -> ApiWatch[T]: ...

    async def __anext__(self) -> WatchEvent[T]: ...

    async def aclose(self) -> None: ...


class ApiClient(Protocol):
    """The apiserver as components see it: :class:`AsyncClient` over HTTP, or
    :class:`~kubecore.apiserver.local.LocalClient` inside the apiserver's own process.
    Both answer the same objects and raise the same errors.

    Objects from :meth:`list` and :meth:`watch` are read-only: in-process they are shared
    with every other reader of the same stored value. To change one, change a copy
    (``model_copy(update=...)``, or ``model_copy(deep=True)`` for nested parts). What
    :meth:`get`, :meth:`create` and :meth:`update` answer is the caller's own."""

    base_url: str
    in_process: bool
    """Whether calls go straight to an apiserver in this process (no HTTP)."""

    async def __aenter__(self) -> ApiClient: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def aclose(self) -> None: ...

    async def list(self, model: type[T], *, namespace: str | None = None,
                   labels: SelectorArg = None, fields: SelectorArg = None) -> ObjectList[T]: ...

    async def get(self, model: type[T], id: str, *, namespace: str | None = None) -> T: ...

    async def create(self, obj: T, *, namespace: str | None = None) -> T: ...

    async def update(self, obj: T, *, namespace: str | None = None) -> T: ...

    async def delete(self, model: type[TypeMeta], id: str, *,
                     namespace: str | None = None) -> Status: ...

    async def bind(self, pod_id: str, host: str, *, namespace: str | None = None) -> Status: ...

    def watch(self, model: type[T], resource_version: int = 0, *,
              namespace: str | None = None, labels: SelectorArg = None,
              fields: SelectorArg = None) -> ApiWatch[T]: ...


# -- shared request and response handling ---------------------------------------------


def selector_text(selector: SelectorArg) -> str:
    """``selector`` as the text of a ``labels`` or ``fields`` query parameter."""
    if selector is None:
        return ""
    if isinstance(selector, str):
        return selector
    if isinstance(selector, Selector):
        return str(selector)
    return str(Selector.from_set(selector))


def _params(
    namespace: str | None, labels: SelectorArg = None, fields: SelectorArg = None
) -> dict[str, str]:
    params: dict[str, str] = {}
    if namespace:
        params["namespace"] = namespace
    if text := selector_text(labels):
        params["labels"] = text
    if text := selector_text(fields):
        params["fields"] = text
    return params


def _error_status(response: httpx.Response) -> Status:
    """The Status of an error answer (synthesized when the body is not one)."""
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        try:
            status = Status.model_validate(data)
        except ValidationError:
            pass
        else:
            if not status.code:
                status.code = response.status_code
            return status
    text = response.text.strip() or response.reason_phrase
    reason = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 409: "Conflict",
              422: "Invalid"}.get(response.status_code, "")
    return Status(kind="Status", api_version=API_VERSION, status=STATUS_FAILURE,
                  message=text, reason=reason, code=response.status_code)


def _check(response: httpx.Response) -> None:
    if not response.is_success:
        raise ApiError(_error_status(response))


def _decode(response: httpx.Response, model: type[T]) -> T:
    _check(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ClientError(f"the apiserver answered an invalid {model.KIND}: "
                          f"{str(exc).splitlines()[0]}") from None


def _decode_list(response: httpx.Response, model: type[T]) -> ObjectList[T]:
    _check(response)
    try:
        data = json.loads(response.content)
        # Text without a null needs no search for nulls, item by item.
        validate = (model.model_validate if b"null" in response.content
                    else model.model_validate_null_free)
        items = [validate(item) for item in data.get("items") or []]
        version = data.get("resourceVersion", 0)
    except (ValueError, AttributeError, ValidationError) as exc:
        raise ClientError(f"the apiserver answered an invalid {model.KIND} list: "
                          f"{str(exc).splitlines()[0]}") from None
    return ObjectList(items, version if isinstance(version, int) else 0)


def _item(model: type[TypeMeta], id: str) -> str:
    """``<resource>/<id>``, the id escaped so that any text stays one path segment."""
    return f"{resource_name(model)}/{quote(id, safe='')}"


def _body(obj: TypeMeta) -> bytes:
    return encode_json(with_kind(obj))


def _connection_error(base_url: str, exc: Exception) -> ApiConnectionError:
    return ApiConnectionError(f"cannot reach the apiserver at {base_url}: {exc}")


Verify = bool | str | ssl.SSLContext
"""TLS verification: on/off, a CA bundle file (for a self-signed server), or a context."""


def _verify(verify: Verify) -> bool | ssl.SSLContext:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _parse_event(line: str, model: type[T]) -> WatchEvent[T]:
    try:
        data = json.loads(line)
        kind, obj = data["type"], data["object"]
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"malformed watch event: {line[:200]!r}") from None
    if kind == "ERROR":
        try:
            status = Status.model_validate(obj)
        except ValidationError:
            status = Status(kind="Status", status=STATUS_FAILURE, message=str(obj)[:200])
        raise ApiError(status)
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        raise ClientError(f"unknown watch event type {kind!r}")
    validate = model.model_validate if "null" in line else model.model_validate_null_free
    try:
        return WatchEvent(kind, validate(obj))
    except ValidationError as exc:
        raise ClientError(f"invalid object in a watch event: "
                          f"{str(exc).splitlines()[0]}") from None


# -- async ----------------------------------------------------------------------------


class AsyncClient:
    """An async client of one apiserver (``base_url`` like ``http://127.0.0.1:8080``).

    ``token`` is sent as a bearer token; ``verify`` checks the server's certificate
    (``False``, a CA file for a self-signed server, or an ``ssl.SSLContext``). Use as
    ``async with`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: Verify = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.in_process = False
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(token), verify=_verify(verify),
            timeout=timeout,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, f"/api/v1beta1/{path}", **kwargs)
        except httpx.TransportError as exc:
            raise _connection_error(self.base_url, exc) from None

    async def list(
        self,
        model: type[T],
        *,
        namespace: str | None = None,
        labels: SelectorArg = None,
        fields: SelectorArg = None,
    ) -> ObjectList[T]:
        """Objects of ``model``'s resource; ``namespace`` None = every namespace."""
        response = await self._request("GET", resource_name(model),
                                       params=_params(namespace, labels, fields))
        return _decode_list(response, model)

    async def get(self, model: type[T], id: str, *, namespace: str | None = None) -> T:
        response = await self._request("GET", _item(model, id),
                                       params=_params(namespace))
        return _decode(response, model)

    async def create(self, obj: T, *, namespace: str | None = None) -> T:
        """Create ``obj`` (its resource follows from its type); returns it as stored."""
        response = await self._request("POST", resource_name(type(obj)), content=_body(obj),
                                       params=_params(namespace))
        return _decode(response, type(obj))

    async def update(self, obj: T, *, namespace: str | None = None) -> T:
        """Replace ``obj`` at its ``resource_version`` (409 ApiError when stale)."""
        response = await self._request("PUT", _item(type(obj), obj.id),
                                       content=_body(obj), params=_params(namespace))
        return _decode(response, type(obj))

    async def delete(self, model: type[TypeMeta], id: str, *,
                     namespace: str | None = None) -> Status:
        response = await self._request("DELETE", _item(model, id),
                                       params=_params(namespace))
        return _decode(response, Status)

    async def bind(self, pod_id: str, host: str, *, namespace: str | None = None) -> Status:
        """Assign pod ``pod_id`` to ``host`` (409 ApiError if it already has one)."""
        binding = Binding(pod_id=pod_id, host=host)
        response = await self._request("POST", "bindings", content=_body(binding),
                                       params=_params(namespace))
        return _decode(response, Status)

    def watch(
        self,
        model: type[T],
        resource_version: int = 0,
        *,
        namespace: str | None = None,
        labels: SelectorArg = None,
        fields: SelectorArg = None,
    ) -> AsyncWatch[T]:
        """Changes to ``model``'s resource after ``resource_version`` (0: every existing
        object first, as ADDED). See the module docstring."""
        params = _params(namespace, labels, fields)
        params["resourceVersion"] = str(resource_version)
        return AsyncWatch(self, model, f"watch/{resource_name(model)}", params)


class AsyncWatch(Generic[T]):
    """An open watch: an async iterator of :class:`WatchEvent` and an async context
    manager that closes the stream. Opening happens on entry (or the first ``anext``);
    an error answer raises :class:`ApiError` then."""

    def __init__(
        self, client: AsyncClient, model: type[T], path: str, params: dict[str, str]
    ) -> None:
        self._client = client
        self._model = model
        self._path = path
        self._params = params
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._closed = False

    async def _open(self) -> AsyncIterator[str]:
        if self._lines is not None:
            return self._lines
        http = self._client._http
        request = http.build_request(
            "GET", f"/api/v1beta1/{self._path}", params=self._params,
            # A quiet watch may send nothing for a long time.
            timeout=httpx.Timeout(self._client._timeout, read=None),
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _connection_error(self._client.base_url, exc) from None
        if not response.is_success:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise ApiError(_error_status(response))
        self._response = response
        self._lines = response.aiter_lines()
        return self._lines

    async def __aenter__(self) -> AsyncWatch[T]:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncWatch[T]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        if self._closed:
            raise StopAsyncIteration
        lines = await self._open()
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                await self.aclose()
                raise
            except httpx.TransportError as exc:
                await self.aclose()
                raise _connection_error(self._client.base_url, exc) from None
            if line.strip():
                try:
                    return _parse_event(line, self._model)
                except ClientError:
                    await self.aclose()  # an ERROR event is the stream's last
                    raise

    async def aclose(self) -> None:
        """Close the stream; further iteration ends at once. Idempotent."""
        self._closed = True
        lines, self._lines = self._lines, None
        response, self._response = self._response, None
        if lines is not None:
            aclose = getattr(lines, "aclose", None)
            if aclose is not None:
                await aclose()
        if response is not None:
            await response.aclose()


# -- sync -----------------------------------------------------------------------------


class Client:
    """The synchronous client for the CLI; the same operations as :class:`AsyncClient`
    but watch. Use as ``with`` or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: Verify = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(token), verify=_verify(verify),
            timeout=timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, f"/api/v1beta1/{path}", **kwargs)
        except httpx.TransportError as exc:
            raise _connection_error(self.base_url, exc) from None

    def list(
        self,
        model: type[T],
        *,
        namespace: str | None = None,
        labels: SelectorArg = None,
        fields: SelectorArg = None,
    ) -> ObjectList[T]:
        response = self._request("GET", resource_name(model),
                                 params=_params(namespace, labels, fields))
        return _decode_list(response, model)

    def get(self, model: type[T], id: str, *, namespace: str | None = None) -> T:
        response = self._request("GET", _item(model, id),
                                 params=_params(namespace))
        return _decode(response, model)

    def create(self, obj: T, *, namespace: str | None = None) -> T:
        response = self._request("POST", resource_name(type(obj)), content=_body(obj),
                                 params=_params(namespace))
        return _decode(response, type(obj))

    def update(self, obj: T, *, namespace: str | None = None) -> T:
        response = self._request("PUT", _item(type(obj), obj.id),
                                 content=_body(obj), params=_params(namespace))
        return _decode(response, type(obj))

    def delete(self, model: type[TypeMeta], id: str, *, namespace: str | None = None) -> Status:
        response = self._request("DELETE", _item(model, id),
                                 params=_params(namespace))
        return _decode(response, Status)

    def bind(self, pod_id: str, host: str, *, namespace: str | None = None) -> Status:
        binding = Binding(pod_id=pod_id, host=host)
        response = self._request("POST", "bindings", content=_body(binding),
                                 params=_params(namespace))
        return _decode(response, Status)
