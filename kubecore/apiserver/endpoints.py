"""Endpoints: written by the endpoints controller as upserts, deleted with their service."""

from __future__ import annotations

from kubecore.api import TypeMeta
from kubecore.apiserver import errors
from kubecore.apiserver.resources import ENDPOINTS
from kubecore.apiserver.strategy import Strategy


class EndpointsStrategy(Strategy):
    """POST and PUT create or replace (a resourceVersion, if given, must be current);
    selectors are refused (400); a DELETE is refused as in v0.5 (400): endpoints go away
    with their service."""

    resource = ENDPOINTS
    upsert = True

    def check_delete(self, obj: TypeMeta) -> None:
        raise errors.bad_request(
            f'endpoints "{obj.id}" are read-only: they are deleted with their service'
        )
