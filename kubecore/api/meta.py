"""Wire-format building blocks shared by every v1beta1 object.

- :class:`WireModel`: the base of every struct. Python attributes are snake_case, JSON
  names camelCase (with the exceptions v1beta1 spells differently, see
  :data:`JSON_NAME_EXCEPTIONS`); either may be used to build an object. Unknown JSON
  fields are ignored, as Go's decoder did. Types are checked strictly (a JSON string is
  not an integer), except that an integer or a finite float given for a string field
  becomes its text: v0.5 decoded JSON and YAML with a YAML decoder that did the same,
  so ``command: [sleep, 10]`` works.
- A JSON ``null`` for a field that Go held by value (a string, a list, a nested struct)
  means that field's zero value, as in Go; fields Go held by pointer keep ``None``.
  ``model_validate`` and ``model_validate_json`` replace such nulls before validating
  (JSON text without ``null`` skips that step), so the validators themselves run in
  pydantic's core without a call into Python per struct or per string.
- The scalar types :data:`Str`, :data:`Int`, :data:`UInt64`, :data:`IntOrString` and
  :data:`Time` (an RFC 3339 timestamp, ``null`` when unset).
- :class:`TypeMeta`: the fields flattened into every top-level object.

Encoding keeps exactly the fields that were given (``exclude_unset``): decoding then
encoding returns the fields a person wrote, and defaults are applied only by
``kubecore.api.defaults.apply_defaults``.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache, partial
from operator import is_not
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    PlainValidator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, PydanticUndefined, core_schema

# snake_case attribute -> JSON name, where plain camel-casing is not what v1beta1 uses.
JSON_NAME_EXCEPTIONS: dict[str, str] = {
    "host_ip": "hostIP",
    "pod_ip": "podIP",
    "portal_ip": "portalIP",
    "public_ips": "publicIPs",
    "pod_id": "podID",
}


def json_name(attribute: str) -> str:
    """The v1beta1 JSON name of a snake_case attribute (``host_ip`` -> ``hostIP``)."""
    return JSON_NAME_EXCEPTIONS.get(attribute) or to_camel(attribute)


def _text_from_scalar(value: Any) -> str:
    """A string field's value when the input is not a string: null is "" (Go's zero
    value), numbers become their text; anything else is not a string."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):  # "true" is ambiguous
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise PydanticCustomError("string_type", "Input should be a valid string")


class _StrSchema:
    """``Str``'s validation: a string is taken as it is by pydantic's core, and only
    other input (a number, null) goes to :func:`_text_from_scalar`."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.union_schema(
            [core_schema.str_schema(strict=True),
             core_schema.no_info_plain_validator_function(_text_from_scalar)],
            mode="left_to_right",
            custom_error_type="string_type",
            serialization=core_schema.to_string_ser_schema(),
        )


def _int_or_string(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PydanticCustomError("int_or_string_type", "expected an integer or a string")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise PydanticCustomError("int_range", "integer out of the 64-bit range")
    return value


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``2014-11-20T10:00:00Z``) as an aware datetime.

    ``None`` stays ``None``; an aware datetime passes through. Sub-microsecond digits are
    dropped (Python datetimes hold microseconds). Raises a pydantic error otherwise.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise PydanticCustomError("time_zone", "timestamp needs a time zone")
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("time_type", "expected an RFC 3339 timestamp string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "time_format", "expected an RFC 3339 timestamp like 2014-11-20T10:00:00Z"
        )
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        tz = UTC
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if offset >= timedelta(hours=24):
            raise PydanticCustomError("time_format", "time zone offset out of range")
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as exc:
        raise PydanticCustomError("time_format", "invalid date or time: {error}", {
            "error": str(exc)
        }) from None


def format_time(value: datetime | None) -> str | None:
    """The RFC 3339 text of a timestamp: ``Z`` for UTC, trailing zero fractions trimmed."""
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is None or offset.total_seconds() % 60:
        # naive (assumed UTC) or an offset RFC 3339 cannot express: write it in UTC
        value = value.replace(tzinfo=UTC) if offset is None else value.astimezone(UTC)
        offset = timedelta(0)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


Str = Annotated[str, _StrSchema]
"""A JSON string; numbers become their text and null becomes ""."""

Int = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""A JSON integer in Go's 64-bit ``int`` range (a float or a string is rejected)."""

UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
"""A non-negative JSON integer in Go's ``uint64`` range (``resourceVersion``)."""

IntOrString = Annotated[int | str, PlainValidator(_int_or_string)]
"""Go's ``util.IntOrString``: a JSON number stays an int, a JSON string a str."""

Time = Annotated[
    datetime | None,
    PlainValidator(parse_time),
    PlainSerializer(format_time, return_type=str | None, when_used="json"),
]
"""An RFC 3339 timestamp; ``null`` (``None``) when unset, as Go's ``util.Time``."""

Labels = dict[Str, Str]


@cache
def _zero_values(cls: type[WireModel]) -> dict[str, Any]:
    """Input key (JSON name and attribute name) -> a zero-value factory, for the fields
    whose type does not admit ``None``."""
    zeros: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if annotation is None or _admits_none(annotation):
            continue
        if info.default_factory is not None:
            factory = info.default_factory
        elif info.default is not PydanticUndefined:
            default = info.default
            factory = _constant(default)
        else:
            continue
        zeros[name] = factory
        zeros[json_name(name)] = factory
    return zeros


def _constant(value: Any) -> Any:
    return lambda: value


def _admits_none(annotation: Any) -> bool:
    args = getattr(annotation, "__args__", ())
    return annotation is type(None) or any(arg is type(None) for arg in args)


Fixer = Callable[[Any], Any]


def _nested_fixer(annotation: Any) -> Fixer | None:
    """How to replace the nulls inside a value of type ``annotation`` (a struct, a list
    or mapping of structs, an optional struct); ``None`` when it holds no struct."""
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, WireModel):
        return partial(nulls_to_zero, annotation)
    if origin is Annotated:
        return _nested_fixer(args[0])
    if origin is list and args and (inner := _nested_fixer(args[0])) is not None:
        return partial(_fix_items, inner)
    if origin is dict and len(args) == 2 and (inner := _nested_fixer(args[1])) is not None:
        return partial(_fix_values, inner)
    if origin in (Union, types.UnionType):
        fixers = [f for arg in args if (f := _nested_fixer(arg)) is not None]
        return fixers[0] if len(fixers) == 1 else None
    return None


def _fix_items(fix: Fixer, value: Any) -> Any:
    """A list with each item fixed; ``value`` itself when no item changed."""
    if not isinstance(value, list):
        return value
    fixed = [fix(item) for item in value]
    return fixed if any(map(is_not, fixed, value)) else value


def _fix_values(fix: Fixer, value: Any) -> Any:
    """A mapping with each value fixed; ``value`` itself when no value changed."""
    if not isinstance(value, dict):
        return value
    fixed = {key: fix(item) for key, item in value.items()}
    return fixed if any(map(is_not, fixed.values(), value.values())) else value


@cache
def _null_plan(cls: type[WireModel]) -> dict[str, tuple[Callable[[], Any] | None, Fixer | None]]:
    """Input key (JSON name and attribute name) -> (what a null becomes, ``None`` for
    "stays null"; how to fix a nested value), for the fields that need either."""
    zeros = _zero_values(cls)
    plan: dict[str, tuple[Callable[[], Any] | None, Fixer | None]] = {}
    for name, info in cls.model_fields.items():
        entry = (zeros.get(name), _nested_fixer(info.annotation))
        if entry != (None, None):
            plan[name] = plan[json_name(name)] = entry
    return plan


def nulls_to_zero(cls: type[WireModel], data: Any) -> Any:
    """``data`` (plain JSON-like input for ``cls``) with every null that Go would read
    as a zero value replaced by it, at any depth; ``data`` itself when it has none
    (it is never changed in place)."""
    if not isinstance(data, dict):
        return data
    plan = _null_plan(cls)
    fixed: dict[Any, Any] | None = None
    for key, value in data.items():
        entry = plan.get(key)
        if entry is None:
            continue
        zero, fixer = entry
        if value is None:
            if zero is None:
                continue
            new = zero()
        elif fixer is not None:
            new = fixer(value)
            if new is value:  # every fixer hands back what had nothing to fix
                continue
        else:
            continue
        if fixed is None:
            fixed = dict(data)
        fixed[key] = new
    return data if fixed is None else fixed


class WireModel(BaseModel):
    """Base of every v1beta1 struct (see the module docstring for the conventions)."""

    model_config = ConfigDict(
        alias_generator=json_name,
        populate_by_name=True,
        strict=True,
        extra="ignore",
    )

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Validate plain data; a null Go held by value is its zero value (as Go
        decodes it)."""
        return super().model_validate(nulls_to_zero(cls, obj), **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Validate JSON text; a null Go held by value is its zero value. Text without
        ``null`` is validated in pydantic's core alone."""
        raw = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
        if b"null" in raw:
            try:
                data = json.loads(raw)
            except ValueError:
                pass  # pydantic reports undecodable JSON as its own error
            else:
                return cls.model_validate(data, **kwargs)
        return super().model_validate_json(json_data, **kwargs)

    @classmethod
    def model_validate_null_free(cls, obj: Any, **kwargs: Any) -> Self:
        """:meth:`model_validate` for data known to hold no null (decoded from JSON
        text without ``null``): no search for nulls."""
        return super().model_validate(obj, **kwargs)

    def _set_quietly(self, attribute: str, value: Any) -> None:
        """Set an attribute without marking it as given, so encoding leaves it out.

        Used to read deprecated spellings (``key`` for ``name``...) into the current
        attribute while still encoding back exactly what was written.
        """
        self.__dict__[attribute] = value


class TypeMeta(WireModel):
    """The metadata flattened into every top-level v1beta1 object.

    ``KIND`` is the ``kind`` string of the concrete class ("" for this base).
    """

    KIND: ClassVar[str] = ""

    kind: Str = ""
    api_version: Str = ""
    id: Str = ""
    uid: Str = ""
    creation_timestamp: Time = None
    self_link: Str = ""
    resource_version: UInt64 = 0
    namespace: Str = ""
    annotations: Labels = Field(default_factory=dict)
