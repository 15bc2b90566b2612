"""Minions: not namespaced; an update may change labels only."""

from __future__ import annotations

from typing import cast

from kubecore.api import Minion, TypeMeta, validate_minion, validate_minion_update
from kubecore.apiserver.resources import MINIONS
from kubecore.apiserver.strategy import Strategy, ensure, keep_identity, key_causes


class MinionStrategy(Strategy):
    """Created as given (plus uid and creation time); updates keep ``hostIP`` and
    ``resources`` (422 if they differ) and may change labels."""

    resource = MINIONS

    async def prepare_update(self, old: TypeMeta, new: TypeMeta) -> TypeMeta:
        before, minion = cast(Minion, old), cast(Minion, new)
        keep_identity(before, minion)
        ensure(minion, [*validate_minion_update(before, minion), *validate_minion(minion),
                        *key_causes(minion)])
        return minion
