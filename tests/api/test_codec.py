"""Decoding: format detection, kinds, several documents, and hostile input."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubecore.api import (
    KINDS,
    MAX_DEPTH,
    MAX_INPUT_BYTES,
    ContainerManifest,
    InvalidObject,
    Pod,
    Service,
    apply_defaults,
    decode,
    decode_documents,
    encode_json,
    load_documents,
    validate,
)

POD_JSON = '{"kind":"Pod","apiVersion":"v1beta1","id":"p"}'


def _only_invalid_object(data: Any, **kwargs: Any) -> None:
    """Decode ``data``: an object or InvalidObject are fine, anything else fails; an
    object that decodes can be defaulted, validated and encoded without an exception."""
    try:
        obj = decode(data, **kwargs)
    except InvalidObject as exc:
        assert exc.causes, "an InvalidObject always has causes"
        assert str(exc)
        return
    assert isinstance(validate(obj), list)
    assert isinstance(validate(apply_defaults(obj)), list)
    assert decode(encode_json(obj), kind=type(obj)) == obj


def _rejected(data: bytes | str, **kwargs: Any) -> InvalidObject:
    with pytest.raises(InvalidObject) as caught:
        decode(data, **kwargs)
    return caught.value


# ---------------------------------------------------------------------------- basics


def test_json_and_yaml_give_the_same_object() -> None:
    from_yaml = decode("kind: Pod\napiVersion: v1beta1\nid: p\n")
    assert from_yaml == decode(POD_JSON) == decode(POD_JSON.encode())
    assert isinstance(from_yaml, Pod)


def test_yaml_flow_mapping_that_is_not_json_is_read_as_yaml() -> None:
    assert decode("{kind: Pod, id: p}") == decode('{"kind":"Pod","id":"p"}')


def test_forced_format() -> None:
    assert decode(POD_JSON, fmt="json") == decode(POD_JSON, fmt="yaml")
    assert "JSON" in str(_rejected("kind: Pod", fmt="json"))


def test_utf8_bom_is_accepted() -> None:
    assert decode(b"\xef\xbb\xbf" + POD_JSON.encode()) == decode(POD_JSON)


def test_kind_selects_the_model() -> None:
    assert isinstance(decode('{"kind":"Service","id":"s"}'), Service)


@pytest.mark.parametrize(
    ("text", "reason"),
    [('{"id":"p"}', "FieldValueRequired"), ('{"kind":"Pods"}', "FieldValueNotSupported"),
     ('{"kind":7}', "FieldValueTypeInvalid")],
)
def test_missing_or_unknown_kind_is_invalid(text: str, reason: str) -> None:
    causes = _rejected(text).causes
    assert [(c.field, c.reason) for c in causes] == [("kind", reason)]


def test_given_type_accepts_a_missing_kind() -> None:
    manifest = decode('{"version":"v1beta1","id":"m","containers":[]}', kind=ContainerManifest)
    assert manifest.id == "m"


def test_given_type_rejects_another_kind() -> None:
    causes = _rejected('{"kind":"Service"}', kind=Pod).causes
    assert [(c.field, c.reason) for c in causes] == [("kind", "FieldValueInvalid")]


def test_unsupported_api_version_is_invalid() -> None:
    causes = _rejected('{"kind":"Pod","apiVersion":"v1"}').causes
    assert [(c.field, c.reason) for c in causes] == [("apiVersion", "FieldValueNotSupported")]
    assert decode('{"kind":"Pod","apiVersion":"v1beta2"}').api_version == "v1beta2"


def test_every_type_error_is_reported_with_its_path() -> None:
    exc = _rejected(json.dumps({
        "kind": "Pod", "id": "p",
        "desiredState": {"manifest": {"containers": [
            {"name": True, "ports": [{"containerPort": "80"}]}, 3]}},
        "labels": {"a": ["x"]},
    }))
    assert (exc.kind, exc.id) == ("Pod", "p")
    assert sorted((c.field, c.reason) for c in exc.causes) == [
        ("desiredState.manifest.containers[0].name", "FieldValueTypeInvalid"),
        ("desiredState.manifest.containers[0].ports[0].containerPort", "FieldValueTypeInvalid"),
        ("desiredState.manifest.containers[1]", "FieldValueTypeInvalid"),
        ("labels.a", "FieldValueTypeInvalid"),
    ]


@pytest.mark.parametrize("value", ["1.5", "true", '"80"', "9223372036854775808"])
def test_integer_fields_are_strict(value: str) -> None:
    causes = _rejected('{"kind":"Service","port":' + value + "}").causes
    assert [c.field for c in causes] == ["port"]


def test_source_is_recorded() -> None:
    assert _rejected("[", source="pods.json").source == "pods.json"


# ---------------------------------------------------------------------------- documents


def test_yaml_documents() -> None:
    objects = decode_documents("kind: Pod\nid: a\n---\n---\nkind: Service\nid: b\n", "f.yaml")
    assert [(type(o), o.id) for o in objects] == [(Pod, "a"), (Service, "b")]


def test_json_array_of_objects() -> None:
    objects = decode_documents('[{"kind":"Pod","id":"a"},{"kind":"Service","id":"b"}]', "f")
    assert [o.id for o in objects] == ["a", "b"]


def test_list_items_take_the_list_item_kind() -> None:
    objects = decode_documents('{"kind":"PodList","items":[{"id":"a"},{"id":"b"}]}', "f")
    assert all(isinstance(o, Pod) for o in objects)
    assert [o.id for o in objects] == ["a", "b"]
    minions = decode_documents('{"kind":"MinionList","minions":[{"id":"n"}]}', "f")
    assert [o.id for o in minions] == ["n"]


def test_documents_error_names_source_and_position() -> None:
    with pytest.raises(InvalidObject) as caught:
        decode_documents("kind: Pod\nid: a\n---\nkind: Nope\n", "f.yaml")
    assert caught.value.source == "f.yaml (document 2)"


def test_decode_refuses_several_documents_and_empty_input() -> None:
    assert "2 documents" in str(_rejected("kind: Pod\n---\nkind: Pod\n"))
    assert "empty" in str(_rejected(""))
    assert "empty" in str(_rejected("# only a comment\n"))


def test_documents_with_forced_kind() -> None:
    objects = decode_documents("version: v1beta1\n---\nversion: v1beta2\n", "m",
                               kind=ContainerManifest)
    assert [o.version for o in objects if isinstance(o, ContainerManifest)] == [
        "v1beta1", "v1beta2"]


# ---------------------------------------------------------------------------- hostile input

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "\n".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]"
    for i in range(9)
)

CORPUS: dict[str, bytes | str] = {
    "binary junk": bytes(range(256)) * 64,
    "invalid utf-8": b'{"kind":"Pod","id":"\xc3\x28"}',
    "utf-16": '{"kind":"Pod"}'.encode("utf-16"),
    "5 MB of letters": b"a" * (5 << 20),
    "5 MB of brackets": b"[" * (5 << 20),
    "5 MB of yaml dashes": b"- " * (5 << 19),
    "over the size limit": b" " * (MAX_INPUT_BYTES + 1),
    "billion laughs": BILLION_LAUGHS,
    "billion laughs in json clothing": "{" + BILLION_LAUGHS.replace("\n", ", ") + "}",
    "10000-deep json": "[" * 10000 + "]" * 10000,
    "just too deep json": '{"kind":"Pod","x":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
    "10000-deep json objects": '{"a":' * 10000 + "1" + "}" * 10000,
    "10000-deep yaml flow": "kind: " + "[" * 10000 + "]" * 10000,
    "deep yaml blocks": "".join(" " * i + "a:\n" for i in range(MAX_DEPTH + 5)),
    "python object tag": "!!python/object/apply:os.system ['true']",
    "python tag on a field": "kind: Pod\nid: !!python/object:os.system x\n",
    "python name tag": "kind: !!python/name:os.system Pod\n",
    "application tag": "kind: !Pod Pod\n",
    "binary tag": "kind: Pod\nid: !!binary aGVsbG8=\n",
    "set tag": "kind: Pod\nlabels: !!set {a, b}\n",
    "recursive alias": "&a [*a]",
    "undefined alias": "kind: *nothing\n",
    "top-level list": "[1, 2, 3]",
    "top-level string": '"Pod"',
    "top-level number": "12",
    "top-level null": "null",
    "huge integer": '{"kind":"Pod","resourceVersion":' + "9" * 5000 + "}",
    "large integer": '{"kind":"Pod","resourceVersion":' + "9" * 100 + "}",
    "negative resource version": '{"kind":"Pod","resourceVersion":-1}',
    "NaN": '{"kind":"Pod","resourceVersion":NaN}',
    "Infinity": '{"kind":"Pod","id":Infinity}',
    "overflowing float": '{"kind":"Pod","id":1e999}',
    "yaml .nan": "kind: Pod\nid: .nan\n",
    "duplicate json keys": '{"kind":"Pod","id":"a","id":"b"}',
    "duplicate yaml keys": "kind: Pod\nid: a\nid: b\n",
    "complex yaml key": "? [a, b]\n: c\n",
    "NUL byte": "kind: Pod\x00\n",
    "truncated json": '{"kind":"Pod","desiredState":{"manifest":',
    "tab indentation": "kind: Pod\n\tid: x\n",
    "kind mismatch on list item": '{"kind":"PodList","items":[{"kind":"Service"}]}',
    "list items not a list": '{"kind":"PodList","items":{"a":1}}',
}


# What the message must say, for the inputs that exercise a specific guard.
CORPUS_MESSAGES = {
    "binary junk": "UTF-8",
    "invalid utf-8": "UTF-8",
    "over the size limit": "larger than",
    "billion laughs": "values (counting aliases)",
    "billion laughs in json clothing": "values (counting aliases)",
    "10000-deep json": "nesting deeper",
    "10000-deep json objects": "nesting deeper",
    "just too deep json": "nesting deeper",
    "deep yaml blocks": "nesting deeper",
    "python object tag": "unsupported tag",
    "python tag on a field": "unsupported tag",
    "python name tag": "unsupported tag",
    "binary tag": "unsupported tag",
    "recursive alias": "alias",
    "huge integer": "too many digits",
    "NaN": "NaN",
    "duplicate json keys": "duplicate key",
    "duplicate yaml keys": "duplicate key",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_corpus_is_rejected_quickly(name: str) -> None:
    data = CORPUS[name]
    started = time.perf_counter()
    with pytest.raises(InvalidObject) as caught:
        if name.startswith(("kind mismatch", "list items")):
            decode_documents(data, name)
        else:
            decode(data)
    assert time.perf_counter() - started < 2.0
    assert caught.value.causes and str(caught.value)
    assert CORPUS_MESSAGES.get(name, "") in str(caught.value)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    pod = decode('{"kind":"Pod","x":' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}")
    assert isinstance(pod, Pod)
    yaml_pod = decode("kind: Pod\nx: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    assert isinstance(yaml_pod, Pod)


def test_surrogates_in_json_are_replaced() -> None:
    pod = decode('{"kind":"Pod","id":"a\\ud800b"}', kind=Pod)
    assert pod.id == "a\ufffdb"


def test_anchors_and_merge_keys_work_within_limits() -> None:
    text = (
        "kind: Pod\nid: p\ndesiredState:\n  manifest:\n    version: v1beta1\n"
        "    containers:\n    - &base {name: a, image: busybox, cpu: 100}\n"
        "    - <<: *base\n      name: b\n"
    )
    pod = decode(text, kind=Pod)
    assert [(c.name, c.image, c.cpu) for c in pod.desired_state.manifest.containers] == [
        ("a", "busybox", 100), ("b", "busybox", 100)]


def test_yaml_timestamps_stay_text() -> None:
    pod = decode("kind: Pod\nid: 2014-11-20\ncreationTimestamp: 2014-11-20T10:00:00Z\n",
                 kind=Pod)
    assert pod.id == "2014-11-20"
    assert pod.creation_timestamp is not None


# ---------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)

FIELD_NAMES = sorted({
    "kind", "id", "apiVersion", "namespace", "labels", "desiredState", "currentState",
    "manifest", "containers", "volumes", "ports", "containerPort", "name", "image", "env",
    "items", "minions", "selector", "port", "resourceVersion", "creationTimestamp", "source",
    "restartPolicy", "info", "state", "capacity", "resources", "podTemplate", "details",
})

object_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(sorted(KINDS)),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_invalid_object(data: bytes) -> None:
    _only_invalid_object(data)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_invalid_object(text: str) -> None:
    _only_invalid_object(text)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_arbitrary_json_raises_only_invalid_object(value: Any) -> None:
    _only_invalid_object(json.dumps(value))
    _only_invalid_object(yaml.safe_dump(value))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), object_like, max_size=6),
       st.sampled_from(sorted(KINDS)))
def test_object_shaped_junk_raises_only_invalid_object(value: dict[str, Any], kind: str) -> None:
    value["kind"] = kind
    _only_invalid_object(json.dumps(value))
    _only_invalid_object(yaml.safe_dump(value), fmt="yaml")
    _only_invalid_object(json.dumps(value), kind=KINDS[kind])
    with contextlib.suppress(InvalidObject):
        decode_documents(json.dumps(value), "junk")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="[]{}:,-&*!\"' \nab<>|", max_size=200))
def test_yaml_punctuation_raises_only_invalid_object(text: str) -> None:
    _only_invalid_object(text)
    with contextlib.suppress(InvalidObject):
        load_documents(text)
