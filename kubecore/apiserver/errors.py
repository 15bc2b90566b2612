"""API errors: every failure the apiserver reports is a ``Status`` with an HTTP code.

:class:`StatusError` is what the registry raises; :func:`status_for` turns any
exception the request handlers meet into the ``Status`` body and code to answer with
(InvalidObject -> 422 with every cause, InvalidSelector -> 400, an unreachable store
-> 503, anything unexpected -> 500).
"""

from __future__ import annotations

from collections.abc import Iterable

from kubecore.api import (
    API_VERSION,
    STATUS_FAILURE,
    STATUS_SUCCESS,
    InvalidObject,
    InvalidSelector,
    Status,
    StatusCause,
    StatusDetails,
)
from kubecore.log import get_logger
from kubecore.store import StoreError, StoreUnavailable

log = get_logger("kubecore.apiserver")

# Reasons (``Status.reason``) of v0.5, plus the ones kubecore adds for codes v0.5 lacked.
NOT_FOUND = "NotFound"
ALREADY_EXISTS = "AlreadyExists"
CONFLICT = "Conflict"
INVALID = "Invalid"
BAD_REQUEST = "BadRequest"
GONE = "Gone"
UNAUTHORIZED = "Unauthorized"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
INTERNAL_ERROR = "InternalError"


class StatusError(Exception):
    """A request failed; ``code`` is the HTTP status, ``reason`` the machine-readable
    ``Status.reason``, ``message`` one sentence for people. ``kind``/``id`` name the
    object concerned (``details``), when there is one."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: str = "",
        id: str = "",
        causes: Iterable[StatusCause] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.id = id
        self.causes = list(causes)

    def to_status(self) -> Status:
        """The ``Status`` body; ``details`` (and its ``causes``) only when there are any,
        as v0.5 left empty ones out."""
        status = Status(
            kind="Status",
            api_version=API_VERSION,
            status=STATUS_FAILURE,
            message=self.message,
            reason=self.reason,
            code=self.code,
        )
        if self.kind or self.id or self.causes:
            details = StatusDetails(id=self.id, kind=self.kind)
            if self.causes:
                details.causes = self.causes
            status.details = details
        return status


def kind_name(kind: str) -> str:
    """How v0.5 names a kind in messages and details: ``Pod`` -> ``pod``,
    ``ReplicationController`` -> ``replicationController``."""
    return kind[:1].lower() + kind[1:]


def not_found(kind: str, id: str) -> StatusError:
    name = kind_name(kind)
    return StatusError(404, NOT_FOUND, f'{name} "{id}" not found', kind=name, id=id)


def already_exists(kind: str, id: str) -> StatusError:
    name = kind_name(kind)
    return StatusError(409, ALREADY_EXISTS, f'{name} "{id}" already exists', kind=name, id=id)


def conflict(kind: str, id: str, why: str) -> StatusError:
    name = kind_name(kind)
    return StatusError(409, CONFLICT, f'{name} "{id}" cannot be updated: {why}', kind=name, id=id)


def bad_request(message: str) -> StatusError:
    return StatusError(400, BAD_REQUEST, message)


def gone(message: str) -> StatusError:
    return StatusError(410, GONE, message)


def unauthorized() -> StatusError:
    return StatusError(401, UNAUTHORIZED, "a valid bearer token is required")


def success(kind: str = "", id: str = "") -> Status:
    """The body of a successful DELETE or binding."""
    details = StatusDetails(id=id, kind=kind_name(kind)) if kind or id else None
    return Status(kind="Status", api_version=API_VERSION, status=STATUS_SUCCESS,
                  details=details, code=200)


def status_for(exc: BaseException) -> Status:
    """The ``Status`` to answer with for ``exc`` (its ``code`` is the HTTP code)."""
    if isinstance(exc, StatusError):
        return exc.to_status()
    if isinstance(exc, InvalidObject):
        return exc.to_status()
    if isinstance(exc, InvalidSelector):
        return bad_request(str(exc)).to_status()
    if isinstance(exc, StoreUnavailable):
        return StatusError(503, SERVICE_UNAVAILABLE, f"the store is unavailable: {exc}"
                           ).to_status()
    if isinstance(exc, StoreError):
        return StatusError(500, INTERNAL_ERROR, f"store error: {exc}").to_status()
    return StatusError(500, INTERNAL_ERROR, f"internal error: {type(exc).__name__}").to_status()


# Failures a request may meet in the normal course of things (the rest are bugs).
EXPECTED = (StatusError, InvalidObject, InvalidSelector, StoreUnavailable)


def failed_request(exc: Exception, **request: object) -> Status:
    """The ``Status`` a request that raised ``exc`` answers with, logged once: a bug
    (anything unexpected, a failing store included) as an error with its traceback,
    an expected 5xx (an unavailable store) as a warning, the rest not at all.
    ``request`` names the request in the log line."""
    status = status_for(exc)
    if not isinstance(exc, EXPECTED):
        log.error("request failed", **request, error=repr(exc), exc_info=exc)
    elif status.code >= 500:
        log.warning("request failed", **request, error=status.message)
    return status
