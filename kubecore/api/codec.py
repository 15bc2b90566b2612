"""Decoding v1beta1 objects from JSON or YAML, safely.

Contract: whatever bytes or text they are given, :func:`decode`,
:func:`decode_documents`, :func:`load_documents` and :func:`decode_value` either return
objects or raise :class:`kubecore.api.errors.InvalidObject`; nothing else escapes
(undecodable bytes, a 100 MiB body, 10,000 nested brackets, YAML alias bombs, YAML
tags, huge numbers, NaN and duplicate keys are all InvalidObject).

Inputs larger than :data:`MAX_INPUT_BYTES`, nested deeper than :data:`MAX_DEPTH` or
holding more than :data:`MAX_NODES` values are refused before any object is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from pydantic import ValidationError

from kubecore.api.errors import Cause, InvalidObject, Reason
from kubecore.api.meta import WireModel
from kubecore.api.safe_yaml import YAMLSyntaxError, clean_text, load_yaml
from kubecore.api.types import API_VERSIONS, KINDS, LIST_ITEM_KINDS, Object

MAX_INPUT_BYTES = 16 * 1024 * 1024
"""The largest input accepted (16 MiB)."""

MAX_DEPTH = 100
"""The deepest nesting of arrays and objects accepted (real objects need about 12)."""

MAX_NODES = 1_000_000
"""The most values (scalars, arrays, objects, YAML alias expansions) in one input."""

Format = Literal["json", "yaml"]
T = TypeVar("T", bound=WireModel)


def _invalid(message: str, field: str = "", reason: str = Reason.INVALID) -> InvalidObject:
    return InvalidObject("", "", [Cause(reason, message, field)])


# ---------------------------------------------------------------------------- text


def _to_text(data: bytes | bytearray | memoryview | str) -> str:
    if isinstance(data, str):
        if len(data) > MAX_INPUT_BYTES:
            raise _invalid(f"input larger than {MAX_INPUT_BYTES} bytes")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid(f"input is not valid Unicode at character {exc.start}") from None
        return data.removeprefix("\ufeff")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _invalid(f"input must be bytes or text, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > MAX_INPUT_BYTES:
        raise _invalid(f"input larger than {MAX_INPUT_BYTES} bytes")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _invalid(f"input is not valid UTF-8 (byte {exc.start})") from None


# ---------------------------------------------------------------------------- JSON


class _JSONProblem(ValueError):
    """Raised from json hooks; never leaves this module."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JSONProblem(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _JSONProblem(f"{name} is not a JSON number")


class _NotJSON(Exception):
    """The text is not JSON syntax (it may still be YAML)."""


def _load_json(text: str) -> Any:
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise _invalid(f"JSON: nesting deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise _NotJSON(f"JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except _JSONProblem as exc:
        raise _invalid(f"JSON: {exc}") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise _invalid("JSON: a number has too many digits") from None
    return _checked(value)


def _checked(value: Any) -> Any:
    """``value`` after checking depth, size and numbers; lone surrogates replaced."""
    if isinstance(value, str):
        return clean_text(value)
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _invalid(f"more than {MAX_NODES} values")
        if isinstance(item, float) and not math.isfinite(item):
            raise _invalid("JSON: number out of range")
        if isinstance(item, (dict, list)) and depth > MAX_DEPTH:
            raise _invalid(f"JSON: nesting deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key in [k for k in item if isinstance(k, str) and clean_text(k) != k]:
                item[clean_text(key)] = item.pop(key)
            for key, child in item.items():
                if isinstance(child, str):
                    item[key] = clean_text(child)
                    nodes += 1
                else:
                    stack.append((child, depth + 1))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                if isinstance(child, str):
                    item[index] = clean_text(child)
                    nodes += 1
                else:
                    stack.append((child, depth + 1))
    return value


# ---------------------------------------------------------------------------- documents


def _looks_like_json(text: str) -> bool:
    return text.lstrip(" \t\r\n")[:1] in ("{", "[")


def load_documents(
    data: bytes | bytearray | memoryview | str, *, fmt: Format | None = None
) -> list[Any]:
    """The documents of ``data`` as plain data, empty YAML documents left out.

    ``fmt`` forces JSON or YAML; by default text starting with ``{`` or ``[`` is read
    as JSON, then as YAML (a superset) if it is not valid JSON, and anything else as
    YAML. A JSON input is always exactly one document.
    """
    try:
        text = _to_text(data)
        if fmt == "json" or (fmt is None and _looks_like_json(text)):
            try:
                return [_load_json(text)]
            except _NotJSON as not_json:
                if fmt == "json":
                    raise _invalid(str(not_json)) from None
                try:
                    documents = load_yaml(text, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
                except YAMLSyntaxError:
                    # It looked like JSON and is not YAML either: the JSON error helps more.
                    raise _invalid(str(not_json)) from None
        else:
            documents = load_yaml(text, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
        return [document for document in documents if document is not None]
    except InvalidObject:
        raise
    except Exception as exc:  # a guarantee: nothing but InvalidObject leaves decoding
        raise _invalid(f"undecodable input: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class RawObject:
    """One object-shaped value of an input, not yet typed.

    ``position`` says where it was ("document 2", "items[3]"; "" for a lone object);
    ``item_kind`` is the model of a ``*List``'s items when it was taken from one.
    """

    value: Any
    position: str
    item_kind: type[Object] | None = None


def split_objects(documents: list[Any]) -> Iterator[RawObject]:
    """The objects held by ``documents``: each document, each element of a top-level
    array, and each item of a ``*List`` object (``minions`` when a MinionList has no
    ``items``)."""
    several = len(documents) > 1
    for number, document in enumerate(documents, start=1):
        where = f"document {number}" if several else ""
        if isinstance(document, list):
            for index, element in enumerate(document):
                yield RawObject(element, _join(where, f"[{index}]"))
            continue
        kind = document.get("kind") if isinstance(document, dict) else None
        item_kind = LIST_ITEM_KINDS.get(kind) if isinstance(kind, str) else None
        if item_kind is None or not isinstance(document, dict):
            yield RawObject(document, where)
            continue
        name = "items"
        if kind == "MinionList" and not document.get("items") and document.get("minions"):
            name = "minions"
        items = document.get(name)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise _invalid(f"expected an array, got {_json_type(items)}", name,
                           Reason.TYPE_INVALID)
        for index, item in enumerate(items):
            yield RawObject(item, _join(where, f"{name}[{index}]"), item_kind)


def _join(prefix: str, part: str) -> str:
    return f"{prefix}, {part}" if prefix else part


# ---------------------------------------------------------------------------- typing


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _short_number(value: Any) -> str:
    try:
        text = str(value)
    except ValueError:  # an integer too long for Python to print
        return "a number"
    return text if len(text) <= 30 else text[:27] + "..."


def field_path(loc: tuple[str | int, ...], prefix: str = "") -> str:
    """A pydantic error location as a field path: ``('a', 0, 'b')`` -> ``a[0].b``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def causes_from_validation_error(error: ValidationError, prefix: str = "") -> list[Cause]:
    """One cause per pydantic error (all of them), with JSON field paths."""
    causes = []
    for detail in error.errors(include_url=False):
        kind = detail["type"]
        got = detail.get("input")
        if kind in _EXPECTED:
            reason, message = Reason.TYPE_INVALID, f"expected {_EXPECTED[kind]}"
            message += f", got {_json_type(got)}"
        elif kind.endswith("_type"):
            reason, message = Reason.TYPE_INVALID, f"{detail['msg']}, got {_json_type(got)}"
        elif kind in ("greater_than_equal", "less_than_equal", "int_range"):
            reason, message = Reason.INVALID, f"{_short_number(got)} is out of range"
        else:
            reason, message = Reason.INVALID, str(detail["msg"])
        causes.append(Cause(reason, message, field_path(tuple(detail["loc"]), prefix)))
    return causes


@overload
def decode_value(value: Any, *, kind: type[T], source: str | None = None) -> T: ...
@overload
def decode_value(value: Any, *, kind: None = None, source: str | None = None) -> Object: ...


def decode_value(
    value: Any, *, kind: type[WireModel] | None = None, source: str | None = None
) -> WireModel:
    """Type one plain-data object (from :func:`load_documents`).

    With ``kind``, the value is decoded as that model and a ``kind`` field, if present,
    must name it. Without, the ``kind`` field chooses the model among :data:`KINDS`; a
    missing or unknown kind is an error. An ``apiVersion``, if present, must be v1beta1
    or v1beta2. Every type error found is a cause.
    """
    try:
        return _decode_value(value, kind, source)
    except InvalidObject:
        raise
    except Exception as exc:  # a guarantee: nothing but InvalidObject leaves decoding
        raise InvalidObject("", "", [Cause(Reason.INVALID, f"undecodable object: "
                                       f"{type(exc).__name__}")], source=source) from None


def _decode_value(value: Any, kind: type[WireModel] | None, source: str | None) -> WireModel:
    expected = getattr(kind, "KIND", "") if kind is not None else ""
    if not isinstance(value, dict):
        cause = Cause(Reason.TYPE_INVALID, f"expected an object, got {_json_type(value)}")
        raise InvalidObject(expected, "", [cause], source=source)
    raw_kind = value.get("kind")
    raw_id = value.get("id")
    object_id = raw_id if isinstance(raw_id, str) else ""
    given = raw_kind if isinstance(raw_kind, str) else ""
    causes: list[Cause] = []
    if raw_kind is not None and not isinstance(raw_kind, str):
        causes.append(Cause(Reason.TYPE_INVALID,
                            f"expected a string, got {_json_type(raw_kind)}", "kind"))
    elif kind is not None:
        if given and given != expected:
            causes.append(Cause(Reason.INVALID, f"expected kind {expected!r}, got {given!r}",
                                "kind"))
    elif not given:
        causes.append(Cause(Reason.REQUIRED, "required value: the object's kind", "kind"))
    elif given not in KINDS:
        causes.append(Cause(Reason.NOT_SUPPORTED, f"unknown kind {given!r}", "kind"))
    else:
        kind = KINDS[given]
    version = value.get("apiVersion")
    if version not in (None, "", *API_VERSIONS):
        shown = version if isinstance(version, str) else _json_type(version)
        causes.append(Cause(Reason.NOT_SUPPORTED,
                            f"unsupported API version {shown!r} (use v1beta1)", "apiVersion"))
    if kind is None:
        raise InvalidObject(given or expected, object_id, causes, source=source)
    try:
        obj = kind.model_validate(value)
    except ValidationError as exc:
        causes.extend(causes_from_validation_error(exc))
        obj = None
    if causes or obj is None:
        raise InvalidObject(getattr(kind, "KIND", given), object_id, causes, source=source)
    return obj


@overload
def decode(
    data: bytes | str, *, kind: type[T], fmt: Format | None = None, source: str | None = None
) -> T: ...
@overload
def decode(
    data: bytes | str, *, kind: None = None, fmt: Format | None = None,
    source: str | None = None,
) -> Object: ...


def decode(
    data: bytes | str,
    *,
    kind: type[WireModel] | None = None,
    fmt: Format | None = None,
    source: str | None = None,
) -> WireModel:
    """Decode exactly one object from JSON or YAML ``data`` (see :func:`decode_value`
    for how it is typed). Raises :class:`InvalidObject` and nothing else."""
    try:
        documents = load_documents(data, fmt=fmt)
    except InvalidObject as exc:
        exc.source = source
        raise
    if len(documents) != 1:
        message = "empty input" if not documents else (
            f"expected one object, found {len(documents)} documents"
        )
        raise InvalidObject("", "", [Cause(Reason.INVALID, message)], source=source)
    return decode_value(documents[0], kind=kind, source=source)


def decode_documents(
    data: bytes | str,
    source_name: str,
    *,
    kind: type[WireModel] | None = None,
    fmt: Format | None = None,
) -> list[Object]:
    """Every object of an input holding several: YAML ``---`` documents, a top-level
    array, or a ``*List`` object's items (typed as the list's item kind).

    With ``kind``, every object is decoded as that model. The first invalid object
    raises :class:`InvalidObject` whose ``source`` is ``source_name`` plus the object's
    position; nothing else is raised.
    """
    try:
        documents = load_documents(data, fmt=fmt)
        raws = list(split_objects(documents))
    except InvalidObject as exc:
        exc.source = source_name
        raise
    objects: list[Object] = []
    for raw in raws:
        where = f"{source_name} ({raw.position})" if raw.position else source_name
        obj = decode_value(raw.value, kind=kind or raw.item_kind, source=where)
        objects.append(obj)  # type: ignore[arg-type]  # the kinds are all Object models
    return objects
