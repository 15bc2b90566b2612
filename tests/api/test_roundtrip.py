"""Properties over generated valid objects of every kind: round trips and validity."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubecore.api import (
    KINDS,
    apply_defaults,
    decode,
    decode_documents,
    encode_json,
    encode_yaml,
    to_dict,
    validate,
)
from tests.api.strategies import kind_strategies

STRATEGIES = kind_strategies()
PROPERTY_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_kind_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(KINDS)


def _round_trip_and_validate(kind: str, data: st.DataObject) -> None:
    wire = data.draw(STRATEGIES[kind])
    model = KINDS[kind]
    obj = model.model_validate(wire)

    encoded = encode_json(obj)
    assert decode(encoded, kind=model) == obj
    # encoding keeps what was given: the same fields come back
    assert to_dict(decode(encoded, kind=model)) == json.loads(encoded)
    if "kind" in wire:
        assert decode(encoded) == obj

    text = encode_yaml(obj)
    assert decode(text, kind=model) == obj
    assert yaml.safe_load(text) == to_dict(obj)

    defaulted = apply_defaults(obj)
    assert validate(defaulted) == []
    assert apply_defaults(defaulted) == defaulted  # defaulting is idempotent


# Lists and BoundPods hold several of the other objects: fewer examples keep it fast.
_COMPOUND = sorted(k for k in KINDS if k.endswith("List") or k == "BoundPods")
_SINGLE = sorted(set(KINDS) - set(_COMPOUND))


@pytest.mark.parametrize("kind", _SINGLE)
@settings(PROPERTY_SETTINGS, max_examples=25)
@given(data=st.data())
def test_single_objects_round_trip_and_are_valid(kind: str, data: st.DataObject) -> None:
    _round_trip_and_validate(kind, data)


@pytest.mark.parametrize("kind", _COMPOUND)
@settings(PROPERTY_SETTINGS, max_examples=10)
@given(data=st.data())
def test_lists_round_trip_and_are_valid(kind: str, data: st.DataObject) -> None:
    _round_trip_and_validate(kind, data)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(["Pod", "Service", "ReplicationController", "Minion"]),
                min_size=1, max_size=4).flatmap(
    lambda kinds: st.tuples(*[STRATEGIES[k] for k in kinds])))
def test_multi_document_yaml_round_trip(wires: tuple[dict[str, Any], ...]) -> None:
    objects = [KINDS[w["kind"]].model_validate(w) for w in wires if "kind" in w]
    text = "---\n".join(encode_yaml(o) for o in objects)
    assert decode_documents(text, "generated.yaml") == objects
