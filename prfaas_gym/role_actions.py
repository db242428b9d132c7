"""The role action space of ``PrfaasRoles-v0`` and of learned role policies.

``Discrete(3)``, decided every ``interval_s`` seconds of simulated time:

| action | meaning |
|---|---|
| 0 | hold: change no role |
| 1 | one local node prefill -> decode: the available prefill node with the least estimated wait (it drains first) |
| 2 | one local node decode -> prefill: the available decode node running the fewest requests |

A change drains the node's work, then takes the deployment's ``switch_delay_s`` (the
simulator's :meth:`~prfaas_gym.simulator.Simulator.request_role_change`). Actions 1 and 2
are masked while any local node is draining or switching (one change at a time, as
``prfaas-dual`` and the look-ahead of ``benchmarks/lookahead_ceiling.py`` do) and where the
role would keep no available node; hold is always feasible.
"""

from __future__ import annotations

from typing import Final, SupportsInt

import numpy as np

from prfaas_gym.contract import ClusterView, Role, RoleChange
from prfaas_gym.profile import is_finite_number

#: The shortest interval between a role policy's decisions, in seconds: the default telemetry
#: interval (``SimConfig``); more often, every decision would see the same view.
MIN_INTERVAL_S: Final = 1.0


def is_decision_interval(v: object) -> bool:
    """Whether ``v`` is a finite number of seconds, not a bool, of at least
    :data:`MIN_INTERVAL_S`: a role policy's interval between decisions."""
    return is_finite_number(v) and v >= MIN_INTERVAL_S  # type: ignore[operator]

ROLE_ACTIONS: Final[tuple[str, ...]] = ("hold", "prefill_to_decode", "decode_to_prefill")
HOLD: Final = 0
TO_DECODE: Final = 1
TO_PREFILL: Final = 2


def role_candidates(view: ClusterView) -> list[RoleChange | None]:
    """The change each role action stands for in ``view``, by action index; None where the
    action is hold or infeasible."""
    R, nodes = view.n_remote, view.n_local_nodes
    prefill = [j for j in range(nodes) if view.prefill_available[R + j]]
    decode = [j for j in range(nodes) if view.decode_available[j]]
    out: list[RoleChange | None] = [None, None, None]
    if len(prefill) + len(decode) < nodes:  # a node is draining or switching
        return out
    if len(prefill) > 1:
        out[TO_DECODE] = RoleChange(min(prefill, key=lambda j: view.prefill_wait_s[R + j]),
                                    Role.DECODE)
    if len(decode) > 1:
        out[TO_PREFILL] = RoleChange(min(decode, key=lambda j: view.decode_running[j]),
                                     Role.PREFILL)
    return out


def role_masks(view: ClusterView) -> np.ndarray:
    """Feasible role actions [hold, prefill_to_decode, decode_to_prefill] in ``view``."""
    return np.array([True] + [c is not None for c in role_candidates(view)[1:]], dtype=bool)


def role_action(action: SupportsInt) -> int:
    """``action`` as an index of :data:`ROLE_ACTIONS`; ValueError outside ``Discrete(3)``."""
    a = int(action)
    if not 0 <= a < len(ROLE_ACTIONS):
        raise ValueError(f"role action {a} is outside Discrete({len(ROLE_ACTIONS)}) "
                         f"{ROLE_ACTIONS}")
    return a


def action_to_changes(action: SupportsInt, view: ClusterView) -> list[RoleChange]:
    """The role changes (none or one) an action stands for in ``view``; an infeasible action
    holds. Raises ValueError outside ``Discrete(3)``."""
    change = role_candidates(view)[role_action(action)]
    return [] if change is None else [change]
