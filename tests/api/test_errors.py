"""InvalidObject: readable text and the 422 Status it becomes."""

from __future__ import annotations

import json
import pickle

import pytest

from kubecore.api import Cause, InvalidObject, Reason, Status, decode, encode_json, to_dict


def _invalid() -> InvalidObject:
    return InvalidObject("Pod", "web-1", [
        Cause(Reason.REQUIRED, "required value", "desiredState.manifest.containers[0].image"),
        Cause(Reason.INVALID, "invalid value 'A': must be a DNS label",
              "desiredState.manifest.containers[1].name"),
    ])


def test_str_is_one_line_per_cause() -> None:
    assert str(_invalid()).splitlines() == [
        "desiredState.manifest.containers[0].image: required value",
        "desiredState.manifest.containers[1].name: invalid value 'A': must be a DNS label",
    ]


def test_describe() -> None:
    assert _invalid().describe() == 'Pod "web-1" is invalid: 2 problems'


def test_to_status_is_a_422_invalid_status() -> None:
    status = _invalid().to_status()
    assert isinstance(status, Status)
    wire = json.loads(encode_json(status))
    assert wire["kind"] == "Status" and wire["status"] == "Failure"
    assert (wire["code"], wire["reason"]) == (422, "Invalid")
    assert wire["message"].startswith('Pod "web-1" is invalid: desiredState')
    assert wire["details"] == {
        "id": "web-1",
        "kind": "Pod",
        "causes": [
            {"reason": "FieldValueRequired", "message": "required value",
             "field": "desiredState.manifest.containers[0].image"},
            {"reason": "FieldValueInvalid", "message": "invalid value 'A': must be a DNS label",
             "field": "desiredState.manifest.containers[1].name"},
        ],
    }
    assert decode(encode_json(status)) == status


def test_decode_errors_become_statuses_too() -> None:
    with pytest.raises(InvalidObject) as caught:
        decode('{"kind":"Service","port":"80"}')
    status = to_dict(caught.value.to_status())
    assert status["details"]["causes"] == [
        {"reason": "FieldValueTypeInvalid", "message": "expected an integer, got string",
         "field": "port"}]


def test_an_invalid_object_always_has_a_cause() -> None:
    assert InvalidObject("Pod", "", []).causes


def test_invalid_object_pickles() -> None:
    exc = pickle.loads(pickle.dumps(_invalid()))
    assert (exc.kind, exc.id, exc.causes) == ("Pod", "web-1", _invalid().causes)
