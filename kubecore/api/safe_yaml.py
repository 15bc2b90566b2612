"""A bounded YAML loader: plain data only, limited depth and size, aliases never expanded.

PyYAML's composer recurses once per nesting level and its constructors build every
alias expansion; both make hostile input (10,000 nested brackets, a "billion laughs"
alias bomb) cost a crash or gigabytes. This loader reads the parser's event stream
(libyaml when present; its parser keeps explicit stacks) and builds the values with an
explicit stack, so that:

- nesting deeper than ``max_depth`` is an error, whatever the recursion limit;
- every node counts toward ``max_nodes``, and an alias counts the size of what it
  refers to, so an alias bomb is refused long before any expansion (aliased values are
  shared, never copied);
- only the standard scalar, sequence and mapping tags are accepted: ``!!python/...``
  and application tags are errors, never constructors;
- mapping keys are the text of scalars (``1: x`` has key ``"1"``), duplicates are
  errors, and ``<<`` merge keys work as in YAML 1.1;
- timestamps stay strings (the object model parses the fields that hold times).

Every problem raises :class:`kubecore.api.errors.InvalidObject` with a message naming
the line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from kubecore.api.errors import Cause, InvalidObject, Reason

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_TEXT_TAGS = {_STR, _TAG + "timestamp", _TAG + "value", _TAG + "merge", "!"}
_SCALAR_TAGS = {_INT, _FLOAT, _BOOL, _NULL} | _TEXT_TAGS
_SEQ_TAGS = {None, "!", _TAG + "seq"}
_MAP_TAGS = {None, "!", _TAG + "map"}

_SURROGATE = re.compile("[\ud800-\udfff]")

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_resolver = Resolver()
_constructor = SafeConstructor()


def _resolve(text: str) -> str:
    """The YAML 1.1 tag of a plain scalar (``12`` is an int, ``yes`` a bool...)."""
    tag: str = _resolver.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag
_CONSTRUCT = {
    _INT: _constructor.construct_yaml_int,
    _FLOAT: _constructor.construct_yaml_float,
    _BOOL: _constructor.construct_yaml_bool,
    _NULL: _constructor.construct_yaml_null,
}


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8 cannot hold) replaced by U+FFFD, as
    Go's decoders do."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


class YAMLSyntaxError(InvalidObject):
    """The text is not YAML at all (as opposed to YAML this loader refuses)."""


def _fail(message: str, mark: Any = None, *, syntax: bool = False) -> InvalidObject:
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    error = YAMLSyntaxError if syntax else InvalidObject
    return error("", "", [Cause(Reason.INVALID, f"YAML: {message}{where}")])


_NO_KEY = object()
_MERGE = object()


@dataclass
class _Frame:
    """A sequence or mapping being built."""

    container: list[Any] | dict[str, Any]
    anchor: str | None
    mark: Any
    size: int = 1
    height: int = 1
    key: Any = _NO_KEY  # mappings: the pending key, _MERGE, or _NO_KEY
    key_mark: Any = None
    merges: list[dict[str, Any]] = field(default_factory=list)


class _Composer:
    def __init__(self, max_depth: int, max_nodes: int) -> None:
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.nodes = 0
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.stack: list[_Frame] = []
        self.documents: list[Any] = []
        self.root: Any = None

    def count(self, size: int, mark: Any) -> None:
        self.nodes += size
        if self.nodes > self.max_nodes:
            raise _fail(f"more than {self.max_nodes} values (counting aliases)", mark)

    def handle(self, event: Any) -> None:
        mark = event.start_mark
        if isinstance(event, yaml.ScalarEvent):
            self.scalar(event)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            is_map = isinstance(event, yaml.MappingStartEvent)
            if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                raise _fail(f"unsupported tag {event.tag!r}", mark)
            if self.stack and self._wants_key():
                raise _fail("a mapping key must be a scalar", mark)
            if len(self.stack) >= self.max_depth:
                raise _fail(f"nesting deeper than {self.max_depth} levels", mark)
            self.count(1, mark)
            container: list[Any] | dict[str, Any] = {} if is_map else []
            self.stack.append(_Frame(container, event.anchor, mark))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = self.stack.pop()
            if isinstance(frame.container, dict):
                for source in frame.merges:
                    for key, value in source.items():
                        frame.container.setdefault(key, value)
            if frame.anchor is not None:
                self.anchors[frame.anchor] = (frame.container, frame.size, frame.height)
            self.add(frame.container, frame.size, frame.height, mark)
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.anchors = {}
            self.root = None
        elif isinstance(event, yaml.DocumentEndEvent):
            self.documents.append(self.root)

    def _wants_key(self) -> bool:
        top = self.stack[-1]
        return isinstance(top.container, dict) and top.key is _NO_KEY

    def scalar(self, event: Any) -> None:
        mark = event.start_mark
        tag = event.tag
        if tag is None:
            tag = _resolve(event.value) if event.implicit[0] else _STR
        if tag not in _SCALAR_TAGS:
            raise _fail(f"unsupported tag {tag!r}", mark)
        self.count(1, mark)
        if self.stack and self._wants_key():
            top = self.stack[-1]
            is_merge = event.tag is None and event.implicit[0] and event.value == "<<"
            top.key = _MERGE if is_merge else clean_text(event.value)
            top.key_mark = mark
            if event.anchor is not None:
                self.anchors[event.anchor] = (top.key, 1, 0)
            return
        if tag in _TEXT_TAGS:
            value: Any = clean_text(event.value)
        else:
            try:
                value = _CONSTRUCT[tag](ScalarNode(tag, event.value, mark, event.end_mark))
            except Exception as exc:  # a malformed !!int and the like
                raise _fail(f"invalid {tag.removeprefix(_TAG)} {event.value[:40]!r}: {exc}",
                            mark) from None
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1, 0)
        self.add(value, 1, 0, mark)

    def alias(self, event: Any) -> None:
        mark = event.start_mark
        try:
            value, size, height = self.anchors[event.anchor]
        except KeyError:
            raise _fail(f"unknown or recursive alias *{event.anchor}", mark) from None
        if len(self.stack) + height > self.max_depth:
            raise _fail(f"nesting deeper than {self.max_depth} levels", mark)
        self.count(size, mark)
        if self.stack and self._wants_key():
            if not isinstance(value, str):
                raise _fail("a mapping key must be a scalar", mark)
            self.stack[-1].key = value
            self.stack[-1].key_mark = mark
            return
        self.add(value, size, height, mark)

    def add(self, value: Any, size: int, height: int, mark: Any) -> None:
        """Place a finished value (already counted) in its parent, or make it the root."""
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if isinstance(top.container, list):
            top.container.append(value)
            return
        key, top.key = top.key, _NO_KEY
        if key is _MERGE:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                raise _fail("a << merge needs a mapping or a list of mappings", mark)
            top.merges.extend(sources)
        elif key in top.container:
            raise _fail(f"duplicate key {key!r}", top.key_mark)
        else:
            top.container[key] = value


def load_yaml(text: str, *, max_depth: int, max_nodes: int) -> list[Any]:
    """Every document of ``text`` as plain data (dict, list, str, int, float, bool, None).

    Raises :class:`YAMLSyntaxError` (an InvalidObject) for text that is not YAML, and
    :class:`InvalidObject` for YAML that exceeds a limit or uses what is not supported.
    """
    composer = _Composer(max_depth, max_nodes)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            composer.handle(event)
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "malformed YAML"
        raise _fail(problem, exc.problem_mark or exc.context_mark, syntax=True) from None
    except yaml.YAMLError as exc:
        raise _fail(" ".join(str(exc).split()), syntax=True) from None
    return composer.documents
