"""One episode of ``PrfaasRoute-v0``: the simulator stepped one routing decision at a time.

The env (:mod:`prfaas_gym.env`, plain Python: it subclasses ``gymnasium.Env``) keeps an
:class:`Episode` per episode and makes one call into it per step; the episode is compiled
with the simulator, so the step's own bookkeeping runs natively.
"""

from __future__ import annotations

from typing import Final, SupportsInt

import numpy as np
from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, restore_state
from prfaas_gym.actions import NO_CHOICE, Best, action_to_decision
from prfaas_gym.contract import ClusterView, Decision, RequestInfo
from prfaas_gym.featurizer import N_FEATURES, Featurizer
from prfaas_gym.request import Request
from prfaas_gym.simulator import Simulator

REWARDS: Final = ("completion", "first_token")
"""The env's reward kinds (:class:`Episode`); both pay the same undiscounted return."""


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Episode:
    """The request awaiting a decision, what the router sees of it, and the reward count.

    Contract: after construction and after every :meth:`step`, ``request`` is the pending
    request (``None`` once the last one is routed and the episode drained), and ``info``,
    ``view`` and ``best`` describe it.

    The reward of a step is the growth of a credit count since the previous step, divided
    by the episode's request count (see the env's docstring). ``reward="completion"``: the
    credit is the SLO-meeting completions. ``reward="first_token"``: it is the first tokens
    within the TTFT SLO, less those requests' completions that then missed the TPOT SLO,
    so a request is paid when its first token arrives rather than when its decode ends. At
    the last step both credits become the SLO-meeting completions (a request still decoding
    when the drain is cut off is taken back), so both kinds pay the same return.
    """

    def __init__(self, sim: Simulator, featurizer: Featurizer,
                 reward: str = "completion") -> None:
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; choose from {list(REWARDS)}")
        self.sim = sim
        self.featurizer = featurizer
        self.first_token = reward == "first_token"
        self.n_requests = max(len(sim.workload.requests), 1)
        self.paid = 0
        self.request: Request | None = None
        self.info: RequestInfo | None = None
        self.view: ClusterView | None = None
        self.best: Best = NO_CHOICE
        self.advance()

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def advance(self) -> None:
        """Run the simulation to the next arrival and describe it."""
        sim = self.sim
        r = sim.next_request()
        self.request = r
        if r is not None:
            info = sim.request_info(r)
            view = sim.view(r)
            self.info, self.view = info, view
            self.best = self.featurizer.best(info, view)

    def obs(self) -> np.ndarray:
        """The observation of the pending request (zeros after the last one)."""
        info, view = self.info, self.view
        if self.request is None or info is None or view is None:
            return np.zeros(N_FEATURES, dtype=np.float32)
        return self.featurizer(info, view, self.best)

    def decision(self, action: SupportsInt) -> Decision:
        """The :class:`Decision` an action stands for (:mod:`prfaas_gym.actions`)."""
        return action_to_decision(action, self.best)

    def step_action(self, action: SupportsInt) -> tuple[np.ndarray, float, bool]:
        """:meth:`step` with the decision of ``action``."""
        return self.step(self.decision(action))

    def step(self, decision: Decision) -> tuple[np.ndarray, float, bool]:
        """Apply ``decision`` to the pending request and advance: (obs, reward, ended).
        After the last request the episode drains (``sim.finish``) before the reward."""
        r = self.request
        if r is None:
            raise RuntimeError("step() after the episode ended; call reset()")
        sim = self.sim
        sim.apply(r, decision)
        self.advance()
        ended = self.request is None
        if ended:
            sim.finish()
        if self.first_token and not ended:
            credit = sim.n_ttft_met - sim.n_tpot_missed
        else:
            credit = sim.n_slo_met
        reward = (credit - self.paid) / self.n_requests
        self.paid = credit
        return self.obs(), reward, ended
