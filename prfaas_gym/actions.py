"""The routing action space shared by the env, learned policies and the runtime's router.

``Discrete(3)``: 0 = prefill in the local PD cluster, 1 = prefill in the remote PrfaaS
cluster, 2 = reject at arrival. The instance inside a cluster is the one with the minimum
estimated TTFT, counting a copy of the request's prefix from the instance that holds the most
of it when that copy lowers the estimate (:func:`prfaas_gym.estimate.best_per_cluster_with_copy`,
Mooncake's Conductor's rule, so the space contains that heuristic's decisions); the decode
instance is left to the decode-side balancer. A cluster with no available instance is masked;
an infeasible choice falls back to the other cluster (and to reject if neither has an
instance).
"""

from __future__ import annotations

import math
from typing import Final, SupportsInt

import numpy as np

from prfaas_gym.contract import Decision, Placement

ACTIONS: Final[tuple[str, ...]] = ("local", "remote", "reject")
LOCAL: Final = 0
REMOTE: Final = 1
REJECT_ACTION: Final = 2
# compiled, Final names are C statics; ``Placement.REMOTE`` would be two dict lookups a use
_AT_LOCAL: Final = Placement.LOCAL
_AT_REMOTE: Final = Placement.REMOTE
_REJECT: Final = Placement.REJECT

#: (best local, its est. TTFT, best remote, its est. TTFT, the local choice's prefix-copy
#: source, the remote choice's; -1: no copy)
Best = tuple[int, float, int, float, int, int]
NO_CHOICE: Final[Best] = (-1, math.inf, -1, math.inf, -1, -1)  # no instance in either cluster


def action_masks(best: Best) -> np.ndarray:
    """Feasible actions [local, remote, reject] given the best instance per cluster."""
    return np.array([best[0] >= 0, best[2] >= 0, True], dtype=bool)


def action_to_decision(action: SupportsInt, best: Best) -> Decision:
    """The :class:`Decision` an action stands for."""
    bl, _, br, _, cl, cr = best
    a = int(action)
    if not 0 <= a < len(ACTIONS):
        raise ValueError(f"action {a} is outside Discrete({len(ACTIONS)}) {ACTIONS}")
    if a == REJECT_ACTION:
        return Decision(_REJECT)
    if (a == REMOTE and br >= 0) or (a == LOCAL and bl < 0 and br >= 0):
        return Decision(_AT_REMOTE, prefill_instance=br, copy_prefix_from=cr if cr >= 0 else None)
    if bl >= 0:
        return Decision(_AT_LOCAL, prefill_instance=bl, copy_prefix_from=cl if cl >= 0 else None)
    return Decision(_REJECT)
