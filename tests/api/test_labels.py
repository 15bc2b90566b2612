"""Label and field selectors: v0.5 parsing and matching."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubecore.api import InvalidSelector, Pod, PodState, Selector, Term, pod_fields

LABELS = {"app": "web", "tier": "front", "empty": ""}


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("", ()),
        (",", ()),
        ("app=web", (Term("app", "=", "web"),)),
        ("app==web", (Term("app", "=", "web"),)),
        ("app!=web", (Term("app", "!=", "web"),)),
        ("tier=front,app=web", (Term("app", "=", "web"), Term("tier", "=", "front"))),
        ("app=web,,app=web", (Term("app", "=", "web"),)),
        ("a = b", (Term("a ", "=", " b"),)),  # nothing is trimmed
        ("app=", (Term("app", "=", ""),)),
        ("a===b", (Term("a", "=", "=b"),)),
        ("a!==b", (Term("a", "!=", "=b"),)),
        ("a!==b!=c", (Term("a!", "=", "b!=c"),)),
        ("DesiredState.Host=node-a", (Term("DesiredState.Host", "=", "node-a"),)),
    ],
)
def test_parse(text: str, terms: tuple[Term, ...]) -> None:
    assert Selector.parse(text).terms == terms


@pytest.mark.parametrize("text", ["app", "a=b=c", "app=web,tier", "a!=b!=c", "x,y=z", " "])
def test_malformed_selectors(text: str) -> None:
    with pytest.raises(InvalidSelector) as caught:
        Selector.parse(text)
    assert caught.value.selector == text
    assert caught.value.term in text.split(",")
    assert "cannot understand" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("missing=", True),  # a missing label is ""
        ("missing!=x", True),
        ("missing=x", False),
        ("empty=", True),
        ("empty!=", False),
    ],
)
def test_matches(text: str, matches: bool) -> None:
    assert Selector.parse(text).matches(LABELS) is matches


def test_empty_and_everything() -> None:
    assert Selector.parse("").empty
    assert Selector.everything().empty and Selector.everything().matches({})
    assert not Selector.parse("a=b").empty


def test_from_set() -> None:
    selector = Selector.from_set({"tier": "front", "app": "web"})
    assert selector == Selector.parse("app=web,tier=front")
    assert selector.matches(LABELS)
    assert not selector.matches({"app": "web"})
    assert Selector.from_set({}).empty and Selector.from_set(None).empty


def test_requires_exact() -> None:
    selector = Selector.parse("DesiredState.Host=node-a,name!=x")
    assert selector.requires_exact("DesiredState.Host") == "node-a"
    assert selector.requires_exact("name") is None
    assert selector.requires_exact("other") is None


def test_str_is_canonical() -> None:
    assert str(Selector.parse("tier==front,app!=db")) == "app!=db,tier=front"
    assert str(Selector.parse("a===b")) == "a===b"


def test_pod_fields() -> None:
    pod = Pod(id="web-1", desired_state=PodState(status="Running", host="node-a"))
    fields = pod_fields(pod)
    assert fields == {"name": "web-1", "DesiredState.Status": "Running",
                      "DesiredState.Host": "node-a"}
    assert Selector.parse("DesiredState.Host=node-a,name=web-1").matches(fields)
    assert not Selector.parse("DesiredState.Host=").matches(fields)


selector_texts = st.lists(
    st.tuples(st.text("ab=!.", max_size=4), st.sampled_from(["=", "==", "!="]),
              st.text("ab=!.", max_size=4)).map("".join),
    max_size=4,
).map(",".join)


@settings(max_examples=200, deadline=None)
@given(selector_texts)
def test_str_reparses_to_an_equal_selector(text: str) -> None:
    try:
        selector = Selector.parse(text)
    except InvalidSelector:
        return
    assert Selector.parse(str(selector)) == selector


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_parse_raises_only_invalid_selector(text: str) -> None:
    with contextlib.suppress(InvalidSelector):
        Selector.parse(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abc"), st.sampled_from(["", "x", "y"]), max_size=3),
       st.dictionaries(st.sampled_from("abc"), st.sampled_from(["", "x", "y"]), max_size=3))
def test_from_set_matches_exactly_supersets(selector: dict[str, str],
                                            labels: dict[str, str]) -> None:
    expected = all(labels.get(k, "") == v for k, v in selector.items())
    assert Selector.from_set(selector).matches(labels) is expected
