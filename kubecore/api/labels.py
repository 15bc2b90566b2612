"""Label and field selectors (KUBERNETES-V05.md section 2).

Syntax, as v0.5's ``ParseSelector``: a comma-separated AND of terms ``key=value``,
``key==value`` (the same) and ``key!=value``. Nothing is trimmed (``a = b`` has key
``"a "``), empty terms are skipped, so the empty string selects everything. A term
counts as ``!=`` if splitting it on ``!=`` gives exactly two pieces, else as ``==`` if
splitting on ``==`` does, else as ``=`` if splitting on ``=`` does; otherwise it is
malformed and :class:`InvalidSelector` is raised. A label that is missing has the value
"" (so ``a!=x`` matches objects without ``a``, and ``a=`` matches them too).

Field selectors use the same syntax over a mapping of field names to values;
:func:`pod_fields` gives the fields v0.5 pods can be selected by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kubecore.api.errors import InvalidSelector

if TYPE_CHECKING:
    from kubecore.api.types import Pod

__all__ = ["InvalidSelector", "Selector", "Term", "pod_fields"]

Operator = Literal["=", "!="]


@dataclass(frozen=True, slots=True, order=True)
class Term:
    """``key=value`` (``op == "="``) or ``key!=value``."""

    key: str
    op: Operator
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term (a missing label is "")."""
        equal = labels.get(self.key, "") == self.value
        return equal if self.op == "=" else not equal

    def __str__(self) -> str:
        if self.op == "!=":
            return f"{self.key}!={self.value}"
        short = f"{self.key}={self.value}"
        # A value that starts with "=" or a key holding "!" only survives as "==".
        return short if _parse_term(short) == self else f"{self.key}=={self.value}"


def _split(term: str, op: str) -> tuple[str, str] | None:
    pieces = term.split(op)
    return (pieces[0], pieces[1]) if len(pieces) == 2 else None


def _parse_term(term: str) -> Term | None:
    if (pair := _split(term, "!=")) is not None:
        return Term(pair[0], "!=", pair[1])
    if (pair := _split(term, "==")) is not None or (pair := _split(term, "=")) is not None:
        return Term(pair[0], "=", pair[1])
    return None


@dataclass(frozen=True, slots=True)
class Selector:
    """An AND of terms; the empty selector matches everything.

    Terms are kept sorted and without repeats, so two selectors with the same terms in
    any order are equal, and ``str()`` is canonical: for a parsed selector,
    ``Selector.parse(str(s)) == s``.
    """

    terms: tuple[Term, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse selector text (see the module docstring); raises InvalidSelector."""
        terms = []
        for piece in text.split(","):
            if not piece:
                continue
            term = _parse_term(piece)
            if term is None:
                raise InvalidSelector(text, piece)
            terms.append(term)
        return cls(tuple(sorted(set(terms))))

    @classmethod
    def from_set(cls, labels: Mapping[str, str] | None) -> Selector:
        """The selector matching exactly ``labels`` (a service's or an RC's selector);
        an empty or missing mapping gives the empty selector."""
        return cls(tuple(sorted(Term(k, "=", v) for k, v in (labels or {}).items())))

    @classmethod
    def everything(cls) -> Selector:
        """The selector that matches every set of labels."""
        return cls()

    @property
    def empty(self) -> bool:
        """True if the selector does not restrict anything."""
        return not self.terms

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every term holds for ``labels`` (missing labels are "")."""
        return all(term.matches(labels) for term in self.terms)

    def requires_exact(self, key: str) -> str | None:
        """The value an ``=`` term demands for ``key``, or None if there is none
        (e.g. ``DesiredState.Host`` in a field selector, to look up one host's pods)."""
        for term in self.terms:
            if term.key == key and term.op == "=":
                return term.value
        return None

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def pod_fields(pod: Pod) -> dict[str, str]:
    """The fields a pod field selector can test: ``name`` (the pod id),
    ``DesiredState.Status`` and ``DesiredState.Host``."""
    return {
        "name": pod.id,
        "DesiredState.Status": pod.desired_state.status,
        "DesiredState.Host": pod.desired_state.host,
    }
