"""Errors of the object model: invalid objects (with every cause) and invalid selectors.

Decoding, validation and the CLI report problems only through these types. An
:class:`InvalidObject` carries one :class:`Cause` per problem, each with the JSON field
path it concerns (``desiredState.manifest.containers[0].image``), and turns into the
422 ``Status`` body the v0.5 apiserver returns for invalid objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from kubecore.errors import KubecoreError

if TYPE_CHECKING:  # types.py does not import this module; the import is for annotations only
    from kubecore.api.types import Status


class Reason(StrEnum):
    """Machine-readable cause reasons, the ``details.causes[].reason`` values of v0.5.

    ``FieldValueTypeInvalid`` is kubecore's: v0.5 failed the whole decode on a JSON value
    of the wrong type; kubecore reports it as a cause like any other.
    """

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TYPE_INVALID = "FieldValueTypeInvalid"


@dataclass(frozen=True, slots=True)
class Cause:
    """One problem with one field.

    ``field`` is a path in JSON names (``desiredState.manifest.containers[0].image``);
    it is empty when the problem concerns the whole input (e.g. undecodable bytes).
    ``message`` is a sentence fragment for people, without the field path.
    """

    reason: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidObject(KubecoreError):
    """An object (or input that should have been one) is invalid.

    ``kind`` and ``id`` name the object as far as they are known ("" otherwise);
    ``causes`` is never empty and lists every problem found, in the order found;
    ``source`` optionally names where the input came from (a file name, a URL).
    ``str()`` is one line per cause, ``field: message``. Being a KubecoreError, it ends
    a CLI command with its message rather than a traceback.
    """

    def __init__(
        self,
        kind: str,
        id: str,  # the v1beta1 name of the field
        causes: Iterable[Cause],
        *,
        source: str | None = None,
    ) -> None:
        self.kind = kind
        self.id = id
        self.causes: list[Cause] = list(causes) or [
            Cause(Reason.INVALID, "invalid object (no cause given)")
        ]
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(cause) for cause in self.causes)

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle their args; keep the keyword-only source too.
        return (_rebuild_invalid, (self.kind, self.id, self.causes, self.source))

    def describe(self) -> str:
        """A one-line summary: ``Pod "web" is invalid: 2 problems``."""
        what = f'{self.kind or "object"} "{self.id}"' if self.id else (self.kind or "input")
        count = len(self.causes)
        noun = "problem" if count == 1 else "problems"
        return f"{what} is invalid: {count} {noun}"

    def to_status(self) -> Status:
        """The ``Status`` an apiserver answers with: code 422, reason ``Invalid``.

        ``message`` reads like v0.5's (``Pod "web" is invalid: field: message; ...``);
        ``details.causes`` carries each cause's reason, message and field path.
        """
        from kubecore.api.types import Status, StatusCause, StatusDetails

        summary = "; ".join(str(cause) for cause in self.causes)
        label = f'{self.kind or "object"} "{self.id}"' if self.id else (self.kind or "object")
        return Status(
            kind="Status",
            api_version="v1beta1",
            status="Failure",
            message=f"{label} is invalid: {summary}",
            reason="Invalid",
            details=StatusDetails(
                id=self.id,
                kind=self.kind,
                causes=[
                    StatusCause(reason=c.reason, message=c.message, field=c.field)
                    for c in self.causes
                ],
            ),
            code=422,
        )


def _rebuild_invalid(
    kind: str, id: str, causes: list[Cause], source: str | None
) -> InvalidObject:
    return InvalidObject(kind, id, causes, source=source)


class InvalidSelector(KubecoreError, ValueError):
    """A label or field selector string that does not parse.

    ``selector`` is the whole text given, ``term`` the comma-separated piece that is
    not ``key=value``, ``key==value`` or ``key!=value``.
    """

    def __init__(self, selector: str, term: str) -> None:
        self.selector = selector
        self.term = term
        super().__init__(
            f"invalid selector {selector!r}: cannot understand {term!r} "
            "(expected key=value, key==value or key!=value)"
        )
