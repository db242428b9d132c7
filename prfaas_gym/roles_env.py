"""``PrfaasRoles-v0``: switch the roles of a PrfaaS deployment's local nodes while a router
routes each request."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prfaas_gym.contract import ClusterView, Policy, RoleChange
from prfaas_gym.env import PrfaasRouteEnv, check_integral
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.featurizer import CLIP
from prfaas_gym.role_actions import (
    MIN_INTERVAL_S,
    ROLE_ACTIONS,
    action_to_changes,
    is_decision_interval,
    role_action,
    role_masks,
)
from prfaas_gym.role_featurizer import N_ROLE_FEATURES, RoleFeaturizer, role_spec_hash
from prfaas_gym.scenario import Scenario, load_scenario
from prfaas_gym.simulator import Simulator

ROLES_ENV_ID = "PrfaasRoles-v0"
#: ``completion``: SLO-meeting completions; ``vs_router``: those less the router alone's on a
#: twin of the episode (see the class docstring)
ROLE_REWARDS = ("completion", "vs_router")
ROLES_ENV_VERSION = 1
#: a role episode is this many times the scenario's routing episode: a switch takes a minute
#: to land, and a routing episode of bursty-fluctuating lasts about one
ROLE_EPISODE_FACTOR = 8
DEFAULT_INTERVAL_S = 30.0


THRESHOLD_ROUTERS = ("prfaas-threshold",)  #: routers that take a planned threshold


def make_router(router: str | Policy, scenario: Scenario | None = None,
                threshold_tokens: float | None = None) -> Policy:
    """The routing policy of a role env or a loaded role policy: a heuristic's name or a
    :class:`Policy`. A threshold router routes by ``threshold_tokens`` if given, else by
    ``scenario``'s planned threshold (as ``prfaas compare`` gives it), else by the
    heuristic's default. A router with its own role ticks (``prfaas-dual``) is refused: its
    rebalancing would fight the role policy's."""
    if isinstance(router, str):
        from agents.registry import HEURISTICS, make_heuristic  # the heuristics live in agents/

        if router not in HEURISTICS:
            routers = [n for n in sorted(HEURISTICS)
                       if not getattr(make_heuristic(n), "tick_interval_s", None)]
            raise PrfaasInputError(f"unknown router {router!r}; choose a heuristic that only "
                                   f"routes: {routers}", "router")
        thr = None
        if router in THRESHOLD_ROUTERS:
            thr = threshold_tokens if threshold_tokens is not None else \
                scenario.threshold_tokens if scenario is not None else None
        router = make_heuristic(router, threshold_tokens=thr)
    elif not callable(getattr(router, "decide", None)):
        raise PrfaasInputError(f"must be a heuristic's name or a Policy, got {router!r}",
                               "router")
    if getattr(router, "tick_interval_s", None):
        raise PrfaasInputError(f"{getattr(router, 'name', router)!r} switches roles itself "
                               f"(on_tick every {router.tick_interval_s:g} s); a role policy "
                               "needs a router that only routes", "router")
    return router


def _no_changes(view: ClusterView) -> list[RoleChange]:
    """The tick handler of a role env's simulator: never called (the env pauses at each
    tick and decides), but a tick schedule with a handler keeps telemetry refreshing through
    the drain as a role policy's ``on_tick`` does in :meth:`Simulator.run`."""
    return []


class PrfaasRolesEnv(PrfaasRouteEnv):
    """Decide, every ``interval_s`` seconds, whether one local node changes role.

    ## Description
    The deployment, workload and link are :class:`~prfaas_gym.env.PrfaasRouteEnv`'s (the
    same scenario, splits, episode draws and domain randomisation). ``router`` (a
    :class:`~prfaas_gym.contract.Policy`, by default the conductor) routes every request;
    the agent holds the long-timescale lever a PrfaaS-PD scheduler has besides routing:
    which of the local cluster's nodes prefill and which decode.

    ## Action space
    ``Discrete(3)`` (:mod:`prfaas_gym.role_actions`): hold, one node prefill -> decode, one
    node decode -> prefill. :meth:`action_masks` marks a change infeasible while a node is
    draining or switching or where it would leave a role without an available node; an
    infeasible action holds.

    ## Observation space
    ``Box(-10, 10, (19,), float32)`` from :class:`~prfaas_gym.role_featurizer.RoleFeaturizer`
    (versioned; ``ROLE_FEATURES`` lists index, meaning, unit and normalisation): the
    telemetry view a tick sees, with no request in it.

    ## Decisions and reward
    A decision is due at every tick of the simulator's schedule: ``interval_s`` of simulated
    time, then every ``interval_s`` while requests are still to arrive or in flight (through
    the drain, up to ``max_drain_s`` after the last arrival). The simulation pauses at the
    tick (:meth:`Simulator.run_to_tick <prfaas_gym.simulator.Simulator.run_to_tick>`) with
    every event in the order :meth:`Simulator.run` gives it, so the agent sees exactly the
    view a policy's ``on_tick`` sees there, and an exported role policy decides in
    ``prfaas compare`` as it did in validation; between decisions the router routes the
    arrivals. The reward is the requests that completed within their SLO since the
    previous decision, divided by the episode's request count; the last step drains and
    pays those completions too, so the undiscounted return is the fraction of the episode's
    requests served within SLO. An episode that drains before its first tick (a few
    requests, a long interval) has one step, whose action changes nothing.

    ``reward="vs_router"`` pays the same count less that of a twin of the episode (the same
    requests and link from the same start) in which the router alone serves and no role
    ever changes: the return is then this episode's SLO attainment minus the router's. The
    twin's count does not depend on the actions, so the policy gradient is the same in
    expectation, but the workload's own luck (a burst, a link drop), which moves both counts
    alike, cancels out of the return: a role change worth 2% of goodput is otherwise lost in
    episodes whose returns differ by 20%. It costs a second simulation per episode.

    ## Episode end
    ``terminated=True`` once the last request of the window is routed and drained; the final
    ``info`` holds ``episode_metrics`` and ``counts`` as the routing env's does.

    ## Arguments
    ``gymnasium.make("PrfaasRoles-v0", scenario="bursty-fluctuating", split="train",
    episode_requests=None, router="conductor", interval_s=30.0, max_drain_s=None,
    reward="completion")``.
    ``episode_requests``: by default ``ROLE_EPISODE_FACTOR`` (8) times the scenario's.
    """

    env_id = ROLES_ENV_ID

    def __init__(self, scenario: str | Scenario = "bursty-fluctuating", split: str = "train",
                 episode_requests: int | None = None, router: str | Policy = "conductor",
                 interval_s: float = DEFAULT_INTERVAL_S,
                 max_drain_s: float | None = None, reward: str = "completion") -> None:
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if reward not in ROLE_REWARDS:
            raise PrfaasInputError(f"unknown reward {reward!r}; choose from "
                                   f"{list(ROLE_REWARDS)}", "reward")
        if not is_decision_interval(interval_s):
            raise PrfaasInputError(f"must be a finite number of seconds >= {MIN_INTERVAL_S:g}, "
                                   f"got {interval_s!r}", "interval_s")
        super().__init__(sc, split, ROLE_EPISODE_FACTOR * sc.episode_requests
                         if episode_requests is None else episode_requests, None, max_drain_s)
        self.router = make_router(router, sc)
        self.reward = reward
        # the twin's router: its own object, so a stateful router's two episodes stay apart
        self._twin_router = copy.deepcopy(self.router) if reward == "vs_router" else None
        self.interval_s = float(interval_s)
        self.role_featurizer = RoleFeaturizer(self.scales)
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(N_ROLE_FEATURES,),
                                            dtype=np.float32)
        self.action_space = spaces.Discrete(len(ROLE_ACTIONS))
        self.spec_hash = role_spec_hash()
        self._view: ClusterView | None = None
        self._last_obs = np.zeros(N_ROLE_FEATURES, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        self.sim = sim = self._new_simulator(seed)
        self.router.reset(self.profile, seed)
        self._twin: Simulator | None = None
        if self._twin_router is not None:
            self._twin = sim.fork()  # before the tick schedule: the router alone, no ticks
            self._twin_router.reset(self.profile, seed)
        sim.set_tick_handler(_no_changes, self.interval_s)
        self._routed = self._twin_routed = 0
        self._paid = 0
        self._n = max(len(sim.workload.requests), 1)
        self._over = False
        return self._observe(self._run_to_decision()), {}

    def _run_to_decision(self) -> bool:
        """Route arrivals with the router until the next tick (True: the episode drained
        first). Events run in :meth:`Simulator.run`'s order (:meth:`Simulator.run_to_tick`),
        so the decision sees what a policy's ``on_tick`` would."""
        sim, router = self.sim, self.router
        reqs = sim.workload.requests
        while True:
            k = self._routed
            if k < len(reqs):
                paused = sim.run_to_tick(reqs[k].arrival_s)
            else:
                last = reqs[-1].arrival_s if reqs else 0.0
                paused = sim.run_to_tick(last + sim.config.max_drain_s, True)
            if paused:
                self._run_twin(False)
                return False
            if k >= len(reqs):
                sim.finish()
                self._run_twin(True)
                return True
            r = sim.next_request()
            sim.apply(r, router.decide(sim.request_info(r), sim.view(r)))
            self._routed = k + 1

    def _run_twin(self, ended: bool) -> None:
        """Bring the twin to the main simulation's arrivals and time, or drain it."""
        twin = self._twin
        if twin is None:
            return
        router = self._twin_router
        while self._twin_routed < self._routed:
            r = twin.next_request()
            twin.apply(r, router.decide(twin.request_info(r), twin.view(r)))
            self._twin_routed += 1
        if ended:
            twin.finish()
        else:
            twin.advance(self.sim.now)

    def _observe(self, ended: bool) -> np.ndarray:
        """Take the view of now (None once ended) and return its observation."""
        if ended:
            self._view = None
            self._last_obs = np.zeros(N_ROLE_FEATURES, dtype=np.float32)
        else:
            self._view = self.sim.view(None)
            self._last_obs = self.role_featurizer(self._view)
        return self._last_obs

    def _obs(self) -> np.ndarray:
        """The observation of the pending decision (zeros once the episode ended)."""
        return self._last_obs

    def action_masks(self) -> np.ndarray:
        """Feasible role actions [hold, prefill_to_decode, decode_to_prefill] now (only hold
        before :meth:`reset` and after the episode ended)."""
        if self._view is None:
            return np.array([True, False, False])
        return role_masks(self._view)

    def step(self, action: int):
        if self.sim is None:
            raise RuntimeError("step() before reset()")
        if self._over:
            raise RuntimeError("step() after the episode ended; call reset()")
        check_integral(action)
        role_action(action)  # checked even where no tick is left to apply it to
        if self._view is None:  # the episode drained before its first tick: this step ends it
            ended = True
        else:
            self.sim.end_tick(action_to_changes(action, self._view))
            ended = self._run_to_decision()
        self._over = ended
        credit = self.sim.n_slo_met - (self._twin.n_slo_met if self._twin is not None else 0)
        reward = (credit - self._paid) / self._n
        self._paid = credit
        return self._observe(ended), reward, ended, False, self._final_info() if ended else {}

    def step_decision(self, decision: Any):
        raise NotImplementedError("PrfaasRoles-v0 takes role actions; the router decides "
                                  "requests")

    def decision(self, action: int):
        raise NotImplementedError("PrfaasRoles-v0 takes role actions; see action_to_changes")

    @property
    def request_info(self):
        """None: the router decides requests inside a step; the agent sees no request."""
        return None

    @property
    def view(self) -> ClusterView | None:
        """The telemetry view of the pending role decision (None once the episode ended)."""
        return self._view
