"""``PrfaasRoute-v0``: route each arriving request of a PrfaaS deployment."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prfaas_gym.actions import ACTIONS, NO_CHOICE, action_masks
from prfaas_gym.contract import Cluster, Decision, Policy, RequestInfo
from prfaas_gym.episode import REWARDS, Episode
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.featurizer import CLIP, N_FEATURES, FeatureScales, Featurizer, spec_hash
from prfaas_gym.request import Workload
from prfaas_gym.scenario import SPLITS, Scenario, check_randomize, load_scenario
from prfaas_gym.simulator import Simulator
from prfaas_gym.synthetic import MAX_REQUESTS
from prfaas_gym.workload import rebased

ENV_ID = "PrfaasRoute-v0"
ENV_VERSION = 1  # v1: a cluster's instance counts a prefix copy from the best holder
POOL_EPISODES = 32  # a synthetic pool holds this many episodes' worth of requests
# episodes drawn from one pool before it is regenerated: generation costs ~6 us a request,
# a fifth of a step's wall time when every request served one episode only
POOL_REUSE = 128
#: the env's rewards: the episode's own (:data:`prfaas_gym.episode.REWARDS`) and
#: ``vs_conductor``, completions less a twin episode's served by the conductor (see Reward)
ROUTE_REWARDS = (*REWARDS, "vs_conductor")


def _check_arguments(reward: Any, split: Any, episode_requests: Any, tick_policy: Any,
                     max_drain_s: Any) -> None:
    """Refuse a bad constructor argument by name, before anything is built."""
    if reward not in ROUTE_REWARDS:
        raise PrfaasInputError(f"unknown reward {reward!r}; choose from {list(ROUTE_REWARDS)}",
                               "reward")
    if reward == "vs_conductor" and tick_policy is not None:
        raise PrfaasInputError("vs_conductor's twin episode is the conductor alone, with no "
                               "role ticks; it cannot be paired with a tick_policy", "reward")
    if not isinstance(split, str) or split not in SPLITS:
        raise PrfaasInputError(f"must be one of {list(SPLITS)}, got {split!r}", "split")
    if episode_requests is not None and (
            isinstance(episode_requests, bool)
            or not isinstance(episode_requests, (int, np.integer)) or episode_requests < 1):
        raise PrfaasInputError(f"must be an integer >= 1 or None, got {episode_requests!r}",
                               "episode_requests")
    if max_drain_s is not None and not (
            isinstance(max_drain_s, (int, float, np.integer, np.floating))
            and not isinstance(max_drain_s, bool) and max_drain_s >= 0):  # NaN fails >= 0
        raise PrfaasInputError(f"must be a number of seconds >= 0 (inf: no limit) or None, "
                               f"got {max_drain_s!r}", "max_drain_s")
    if tick_policy is not None and not callable(getattr(tick_policy, "on_tick", None)):
        raise PrfaasInputError(
            f"must be a policy object with on_tick (e.g. agents.registry.make_heuristic("
            f"'prfaas-dual')) or None, got {tick_policy!r}", "tick_policy")


def check_integral(action: Any) -> None:
    """Refuse (ValueError) an action that is not an integer: 1.5 would truncate to 1."""
    if type(action) is not int and not isinstance(action, np.integer):  # SB3: numpy ints
        try:
            integral = int(action) == action
        except (OverflowError, ValueError, TypeError):  # inf, nan, not a number
            integral = False
        if not integral:
            raise ValueError(f"action {action!r} is not an integer")


class PrfaasRouteEnv(gym.Env):
    """Route requests in a Prefill-as-a-Service deployment.

    ## Description
    A remote PrfaaS cluster of prefill-only instances and a local prefill/decode cluster are
    joined by an inter-datacenter link whose bandwidth fluctuates. Requests arrive from a
    recorded or synthetic trace; for each one the agent decides where its prefill runs. KV
    caches of remote prefills cross the link layer by layer; decode always runs locally.
    The simulator is :class:`prfaas_gym.simulator.Simulator` (discrete-event, deterministic
    per seed).

    ## Action space
    ``Discrete(3)``:

    | action | meaning |
    |---|---|
    | 0 | prefill in the local PD cluster |
    | 1 | prefill in the remote PrfaaS cluster |
    | 2 | reject at arrival (HTTP 429) |

    The instance inside the chosen cluster is the one with the minimum estimated TTFT
    (:func:`prfaas_gym.estimate.estimate_ttft`: queue wait + prefill time with this
    instance's cached prefix + link transfer), where an instance may first copy the
    request's prefix from the instance holding the most of it if that lowers its estimate
    (:func:`prfaas_gym.estimate.best_per_cluster_with_copy`, Mooncake's Conductor's rule: the
    action space contains that heuristic's decisions); the decode instance is the least
    loaded when the KV arrives. :meth:`action_masks` marks a cluster with no available
    instance infeasible (reject is always feasible). An infeasible action falls back to the
    other cluster.

    ## Observation space
    ``Box(-10, 10, (32,), float32)`` built by :class:`prfaas_gym.featurizer.Featurizer`
    (versioned; ``prfaas_gym.featurizer.FEATURES`` lists index, meaning, unit and
    normalisation). It depends only on the request's prompt and prefix (never its output
    length) and a telemetry snapshot that may be stale by ``sim.telemetry_interval_s``.

    | index | feature | index | feature |
    |---|---|---|---|
    | 0 | ln(1+prompt), normalised | 16 | link utilisation |
    | 1-2 | local / remote cached fraction | 17 | link KV backlog (s / SLO) |
    | 3-4 | local / remote incremental tokens | 18 | link flows in flight |
    | 5-6 | est. TTFT best local / remote (/ SLO) | 19 | this KV's shipping time at capacity |
    | 7-8 | prefill time local / remote (/ SLO) | 20-22 | decode batch use, waiting, KV use |
    | 9-12 | mean / min wait local, remote | 23 | local nodes in prefill role |
    | 13-14 | queued tokens local / remote | 24-28 | recent rate, offload, P90 TTFT, TPOT, SLO |
    | 15 | link capacity / nominal | 29-31 | has remote, has local, ln(incr / threshold) |

    ## Reward
    After each decision the simulation runs to the next arrival; the reward is the number of
    requests that *completed within their SLO* (TTFT <= slo.ttft_s and TPOT <= slo.tpot_s)
    in that interval, divided by the episode's request count (``episode_requests``, or fewer
    when a trace split is shorter). At the last step the episode drains
    (up to ``max_drain_s``) and those completions are paid too. The undiscounted return is
    therefore the fraction of the episode's requests served within SLO, and
    ``goodput = return * episode_requests / span``: proportional to goodput where the span is
    fixed. The span ends at the last completion, which the return does not see, so a
    request served late within SLO raises the return and may lower goodput.

    ``reward="first_token"`` pays a request when its first token arrives within the TTFT
    SLO instead of when it completes, and takes the payment back if its completion then
    misses the TPOT SLO (or, at the last step, if the drain was cut off before it
    completed). The undiscounted return is the same, the credit arrives a decode earlier:
    a training option (``env_kwargs`` in the hyperparameter YAML) for credit assignment
    under discounting; policies and their evaluation do not depend on it.

    ``reward="vs_conductor"`` pays the completion reward less that of a twin of the episode
    (the same requests and link from the same start) that the conductor routes alone, step
    for step: after the agent's k-th decision the twin has routed the same k requests and
    reached the same arrival, and its SLO-meeting completions since the previous step are
    subtracted. The undiscounted return is the episode's SLO attainment minus the
    conductor's. The twin does not depend on the actions, so the policy gradient is the same
    in expectation, but the workload's luck (a burst, a link drop), which moves both
    counts alike, cancels: a policy that routes as the conductor does is paid exactly 0 at
    every step, and the return is what its departures gained or lost (a step pays the
    difference over that step, which reflects every earlier departure). Another training
    option; it costs a second simulation, and it cannot be combined with ``tick_policy``.

    ## Starting state and episodes
    ``reset(seed)`` draws (from ``self.np_random``) a window of ``episode_requests``
    consecutive requests of the trace's split (or of a pool of 32 episodes' worth of
    synthetic requests, regenerated every 128 episodes: a request recurs in about four
    episodes, each time under its own load scale, link and cluster draws), a bandwidth
    trace of the split with a random offset, and, on the ``train`` split, if the scenario has
    ``randomize``, a load scale, link mean and cluster sizes. ``val`` and ``eval`` episodes
    are the scenario as it is (its load, link and clusters), as a held-out report
    (:mod:`agents.compare`) runs it, so that validation estimates that report. The cluster
    starts empty.

    ## Episode end
    ``terminated=True`` after the last request of the window: its drain (up to
    ``max_drain_s``) has paid everything the episode will ever pay, so nothing is left to
    bootstrap (the final observation is all zeros and means nothing); ``truncated`` is
    always False. The final ``info`` holds
    ``episode_metrics`` (the simulator's result dict) and ``counts`` (conservation:
    arrived = completed + rejected + failed + in_flight).

    ## Arguments
    ``gymnasium.make("PrfaasRoute-v0", scenario="bursty-fluctuating", split="train",
    episode_requests=None, tick_policy=None, max_drain_s=None, reward="completion")``.
    ``split`` is ``train``, ``val`` or ``eval`` (disjoint trace windows and links; synthetic
    val and eval seeds are offset). ``reward``: ``completion``, ``first_token`` or
    ``vs_conductor`` (see Reward).
    ``tick_policy``: a heuristic whose ``on_tick`` runs role rebalancing (e.g.
    ``prfaas-dual``), or None.

    ## Version history
    * v0: initial version (featurizer v2: link backlog = produced-but-unsent KV bytes;
      decode KV = memory in use, never reservations that would reveal output lengths).
      The episode end was ``truncated`` until this release, so on-policy algorithms
      bootstrapped the value of the all-zero final observation; it is ``terminated`` now
      (training only: observations, actions and rewards are unchanged). The
      ``reward="first_token"`` option came later, and ``reward="vs_conductor"`` after it;
      the default reward is unchanged.
      Domain randomisation applied to every split until the release that added
      :meth:`set_randomize`; it applies to ``train`` only now (validation picked
      checkpoints on randomised episodes while held-out reports ran the scenario as it is).
    * v1: a cluster's instance counts a prefix copy from the best holder. Releases up to
      the one that added :meth:`set_randomize` drew every split's link from the same
      generated traces (or the whole recorded one); each split now has its own
      (:meth:`Scenario.bandwidth_sampler`). Train episodes on generated links are
      unchanged; on a recorded link they use its train part only.
    """

    metadata = {"render_modes": []}
    env_id = ENV_ID  #: the policy interface a checkpoint trained here records

    def __init__(self, scenario: str | Scenario = "bursty-fluctuating", split: str = "train",
                 episode_requests: int | None = None, tick_policy: Policy | None = None,
                 max_drain_s: float | None = None, reward: str = "completion") -> None:
        super().__init__()
        _check_arguments(reward, split, episode_requests, tick_policy, max_drain_s)
        self.reward = reward
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.split = split
        self.episode_requests = episode_requests or self.scenario.episode_requests
        self.max_drain_s = self.scenario.max_drain_s if max_drain_s is None else float(max_drain_s)
        self.tick_policy = tick_policy
        if not self.scenario.is_trace and self.episode_requests * POOL_EPISODES > MAX_REQUESTS:
            raise PrfaasInputError(
                f"must be <= {MAX_REQUESTS // POOL_EPISODES:,} for a synthetic workload (a pool "
                f"of {POOL_EPISODES} episodes, at most {MAX_REQUESTS:,} requests, is generated "
                f"at once), got {self.episode_requests:,}",
                "episode_requests" if episode_requests else
                f"{self.scenario.where or self.scenario.name} env.episode_requests")
        base = self.scenario.profile
        self.scales = FeatureScales.for_profile(base, self.scenario.planned_lambda,
                                                self.scenario.threshold_tokens)
        self.featurizer = Featurizer(base, self.scales)
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(N_FEATURES,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.spec_hash = spec_hash()
        #: the domain-randomisation ranges the next :meth:`reset` draws from (on ``train``
        #: the scenario's, unless :meth:`set_randomize` replaced some of them; else none)
        self.randomize: dict[str, tuple[float, float]] = \
            dict(self.scenario.randomize) if split == "train" else {}
        self.sim: Simulator | None = None
        self._twin: Simulator | None = None  #: the conductor's twin episode (vs_conductor)
        self._episode: Episode | None = None
        self._pool: Workload | None = None
        self._pool_uses = 0

    # -- episode set-up ---------------------------------------------------------------
    @cached_property
    def _base_rate(self) -> float:
        """The split's mean rate that load randomisation scales (a trace without ``rate:``
        would otherwise be re-split at every reset)."""
        return self.scenario.mean_rate(self.split)

    def set_randomize(self, ranges: dict[str, Any]) -> None:
        """Draw the following episodes from ``ranges`` (``{key: [lo, hi]}``) instead of the
        scenario's ``randomize`` ranges for those keys; the others keep the scenario's.

        A training curriculum widens them step by step. Only keys the scenario randomises
        may be given (an unrandomised quantity has no range to come back to); a bad key or
        range raises :class:`PrfaasInputError` naming it. The episode in progress is not
        changed. Only a ``train`` env randomises (:class:`PrfaasInputError` otherwise)."""
        if self.split != "train":
            raise PrfaasInputError(f"a {self.split!r} env runs the scenario as it is; domain "
                                   "randomisation applies to the train split only", "split")
        rnd = check_randomize(ranges, "randomize")
        missing = sorted(set(rnd) - set(self.scenario.randomize))
        if missing:
            raise PrfaasInputError(
                f"scenario {self.scenario.name!r} does not randomise {missing} (its randomize: "
                f"{sorted(self.scenario.randomize) or 'none'})", f"randomize.{missing[0]}")
        self.randomize = {**self.scenario.randomize, **rnd}

    def _episode_profile(self, rng: np.random.Generator):
        prof = self.scenario.profile
        rnd = self.randomize
        dep = prof.deployment
        changes: dict[str, int] = {}
        if "n_prfaas" in rnd:
            lo, hi = rnd["n_prfaas"]
            changes["n_prfaas"] = int(rng.integers(int(lo), int(hi) + 1))
        if "n_local" in rnd:
            lo, hi = rnd["n_local"]
            n_local = int(rng.integers(int(lo), int(hi) + 1))
            frac = dep.n_prefill / max(dep.n_prefill + dep.n_decode, 1)
            n_p = min(max(1, round(n_local * frac)), n_local - 1)
            changes["n_prefill"], changes["n_decode"] = n_p, n_local - n_p
        return prof.with_deployment(**changes) if changes else prof

    def _new_simulator(self, seed: int | None) -> Simulator:
        """The episode's simulator: its profile, workload window and link drawn from
        ``self.np_random`` (see Starting state); sets ``self.profile``."""
        rng = self.np_random
        sc = self.scenario
        profile = self._episode_profile(rng)
        rate = None
        if "rate_scale" in self.randomize:
            lo, hi = self.randomize["rate_scale"]
            rate = self._base_rate * float(rng.uniform(lo, hi))
        workload = self._episode_workload(rng, rate, reseeded=seed is not None)
        bw = sc.bandwidth(int(rng.integers(2**31)), self.split)
        if "link_gbps" in self.randomize:
            lo, hi = self.randomize["link_gbps"]
            bw = bw.scaled_to_mean(float(rng.uniform(lo, hi)))
        self.profile = profile
        return Simulator(profile, workload, bw, dataclasses.replace(
            sc.sim, max_drain_s=self.max_drain_s, record_timeseries=False))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.sim = self._new_simulator(seed)
        profile = self.profile
        self.featurizer = Featurizer(profile, self.scales)
        if self.tick_policy is not None:
            self.tick_policy.reset(profile, seed)
            self.sim.set_tick_handler(self.tick_policy.on_tick, self.tick_policy.tick_interval_s)
        self._twin = None
        if self.reward == "vs_conductor":
            from agents.registry import make_heuristic  # the heuristics live in agents/

            # forked before the episode takes its first arrival: the same start, no decision
            self._twin = twin = self.sim.fork()
            self._twin_router = make_heuristic("conductor")
            self._twin_router.reset(profile, seed)
            self._twin_request = twin.next_request()
            self._twin_paid = 0
        self._episode = ep = Episode(self.sim, self.featurizer,
                                     "completion" if self._twin is not None else self.reward)
        return ep.obs(), {"request_id": ep.request.id if ep.request else None}

    def _episode_workload(self, rng: np.random.Generator, rate: float | None,
                          reseeded: bool) -> Workload:
        """A window of ``episode_requests`` consecutive requests.

        Traces: a random window of the split. Synthetic workloads: a random window of a pool
        of ``POOL_EPISODES`` episodes' worth of requests generated from ``self.np_random``
        and regenerated every ``POOL_REUSE`` resets (and on every explicit seed), so that
        generation is not paid per episode. Load randomisation time-scales the window.
        """
        sc = self.scenario
        n = self.episode_requests
        if sc.is_trace:
            return sc.workload(int(rng.integers(2**31)), n=n, rate=rate, split=self.split)
        if reseeded or self._pool is None or self._pool_uses >= POOL_REUSE:
            self._pool = sc.workload(int(rng.integers(2**31)), n=n * POOL_EPISODES,
                                     split=self.split)
            self._pool_uses = 0
        self._pool_uses += 1
        start = int(rng.integers(0, len(self._pool) - n + 1))
        scale = 1.0 if rate is None else sc.mean_rate() / rate
        return rebased(self._pool, self._pool.requests[start:start + n],
                       f"episode window at {start}", time_scale=scale)

    # -- stepping -----------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        return self._episode.obs()

    def action_masks(self) -> np.ndarray:
        """Feasible actions for the current request: [local, remote, reject] (before
        :meth:`reset` and after the last request, only reject)."""
        ep = self._episode
        return action_masks(ep.best if ep is not None and ep.request is not None else NO_CHOICE)

    def decision(self, action: int) -> Decision:
        """The :class:`Decision` an action stands for in the current state."""
        return self._episode.decision(action)

    def step(self, action: int):
        ep = self._episode
        if ep is None:
            raise RuntimeError("step() before reset()")
        check_integral(action)
        obs, reward, ended = ep.step_action(action)
        if self._twin is not None:
            reward -= self._step_twin()
        return obs, reward, ended, False, self._final_info() if ended else {}

    def step_decision(self, decision: Decision):
        """Like :meth:`step`, with a full :class:`Decision` (e.g. from a heuristic
        :class:`Policy`) instead of an action; returns the same 5-tuple."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("step() before reset()")
        obs, reward, ended = ep.step(decision)
        if self._twin is not None:
            reward -= self._step_twin()
        return obs, reward, ended, False, self._final_info() if ended else {}

    def _step_twin(self) -> float:
        """Route the twin's pending request by the conductor and bring it to its next
        arrival (or drain it after the last), as the episode's step did; return the
        reward its completions since the previous step would have paid."""
        twin, r = self._twin, self._twin_request
        twin.apply(r, self._twin_router.decide(twin.request_info(r), twin.view(r)))
        self._twin_request = twin.next_request()
        if self._twin_request is None:
            twin.finish()
        done = twin.n_slo_met - self._twin_paid
        self._twin_paid = twin.n_slo_met
        return done / self._episode.n_requests

    def _final_info(self) -> dict[str, Any]:
        return {"episode_metrics": self.sim.result(), "counts": self.sim.counts()}

    @property
    def request_info(self) -> RequestInfo | None:
        """The request awaiting a decision (None after the last one)."""
        ep = self._episode
        return ep.info if ep is not None and ep.request is not None else None

    @property
    def view(self):
        """The router's view for the request awaiting a decision."""
        return self._episode.view

    # -- convenience --------------------------------------------------------------------
    def cluster_of(self, instance: int) -> Cluster:
        return Cluster(self.sim.prefill_cluster[instance])
