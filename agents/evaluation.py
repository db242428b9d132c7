"""Evaluation on env episodes: learned policies and heuristics on identical windows.

Every chooser routes the same episodes (``PrfaasRouteEnv`` reset with the same seeds on the
same split), so goodputs are paired; role choosers likewise share ``PrfaasRolesEnv``
episodes. Validation during training uses the ``val`` split
and seeds from ``EVAL_SEED_BASE`` up; held-out reports use the ``eval`` split (trace
windows after the val split's; synthetic seeds offset differently), which training never
sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from prfaas_gym.contract import Decision, Policy
from prfaas_gym.env import PrfaasRouteEnv
from prfaas_gym.role_actions import HOLD
from prfaas_gym.roles_env import DEFAULT_INTERVAL_S, PrfaasRolesEnv
from prfaas_gym.scenario import Scenario

EVAL_SEED_BASE = 1_000_000

Chooser = Callable[[PrfaasRouteEnv], Decision]


def heuristic_chooser(policy: Policy) -> Callable[[PrfaasRouteEnv], Chooser]:
    """A chooser factory for a heuristic (reset per episode with the episode's profile)."""

    def make(env: PrfaasRouteEnv) -> Chooser:
        policy.reset(env.profile, 0)
        if policy.tick_interval_s:
            env.sim.set_tick_handler(policy.on_tick, policy.tick_interval_s)
        return lambda e: policy.decide(e.request_info, e.view)

    return make


def model_chooser(model: Any, algo: str) -> Callable[[PrfaasRouteEnv], Chooser]:
    """A chooser factory for an SB3 model of ``algo`` that decides as its export and
    :class:`~agents.learned.LearnedPolicy` do: the argmax of its logits (Q-values for DQN)
    over the feasible actions. (SB3's unmasked ``predict`` may pick an infeasible cluster,
    which the env would then replace by the other one; a deployed policy never does that, so
    validating that way would pick checkpoints by a rule that never runs.)"""
    import torch

    from agents.export import LogitsModule
    from agents.learned import masked_argmax

    module = LogitsModule(model, algo)  # shares the model's weights as they train

    def make(env: PrfaasRouteEnv) -> Chooser:
        def choose(e: PrfaasRouteEnv) -> Decision:
            with torch.no_grad():
                obs = torch.from_numpy(e._obs()[None]).to(model.device)
                logits = module(obs).cpu().numpy()[0]
            return e.decision(masked_argmax(logits, e._episode.best))
        return choose

    return make


def run_episodes(scenario: Scenario, make_chooser: Callable[[PrfaasRouteEnv], Chooser],
                 seeds: Sequence[int], split: str = "eval",
                 episode_requests: int | None = None) -> list[dict[str, Any]]:
    """Episode metrics (the simulator's result dict) per seed."""
    out = []
    for seed in seeds:
        env = PrfaasRouteEnv(scenario, split=split, episode_requests=episode_requests)
        env.reset(seed=int(seed))
        choose = make_chooser(env)
        ret = 0.0
        while env.request_info is not None:
            _, r, ended, _, info = env.step_decision(choose(env))
            ret += r
            if ended:
                m = dict(info["episode_metrics"])
                m["return"] = ret
                out.append(m)
    return out


RoleChooser = Callable[[PrfaasRolesEnv], int]


def hold(env: PrfaasRolesEnv) -> int:
    """The role chooser that never changes a role (the router alone)."""
    return HOLD


def role_model_chooser(model: Any, algo: str) -> RoleChooser:
    """A role chooser for an SB3 model of ``algo`` trained on ``PrfaasRoles-v0``: the argmax
    of its logits over the feasible role actions, as
    :class:`~agents.learned.LearnedRoles` decides."""
    import torch

    from agents.export import LogitsModule
    from agents.learned import masked_role_argmax

    module = LogitsModule(model, algo)

    def choose(env: PrfaasRolesEnv) -> int:
        with torch.no_grad():
            obs = torch.from_numpy(env._obs()[None]).to(model.device)
            logits = module(obs).cpu().numpy()[0]
        return masked_role_argmax(logits, env.action_masks())

    return choose


def run_role_episodes(scenario: Scenario, choose: RoleChooser, seeds: Sequence[int],
                      split: str = "eval", episode_requests: int | None = None,
                      router: str = "conductor", interval_s: float = DEFAULT_INTERVAL_S
                      ) -> list[dict[str, Any]]:
    """Episode metrics per seed of ``PrfaasRoles-v0`` episodes whose role actions ``choose``
    takes every ``interval_s`` while the heuristic ``router`` routes."""
    out = []
    for seed in seeds:
        env = PrfaasRolesEnv(scenario, split=split, episode_requests=episode_requests,
                             router=router, interval_s=interval_s)
        env.reset(seed=int(seed))
        ret, ended, info = 0.0, False, {}
        while not ended:
            _, r, ended, _, info = env.step(choose(env))
            ret += r
        m = dict(info["episode_metrics"])
        m["return"] = ret
        out.append(m)
    return out


def mean_goodput(metrics: list[dict[str, Any]]) -> float:
    return float(np.mean([m["goodput_rps"] for m in metrics])) if metrics else 0.0


def best_heuristic(scenario: Scenario, seeds: Sequence[int], split: str = "eval",
                   names: Sequence[str] | None = None, episode_requests: int | None = None,
                   progress: bool = False
                   ) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
    """(name, per-episode metrics, goodput by heuristic) of the heuristic with the highest
    mean goodput on these episodes; ``progress`` shows a bar over the heuristics."""
    from tqdm import tqdm

    from agents.registry import HEURISTICS, policy_factory

    names = list(names or [n for n in HEURISTICS if n != "random"])
    table: dict[str, float] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    episodes = f"{len(seeds)} {split} episode" + ("" if len(seeds) == 1 else "s")
    for name in tqdm(names, desc=f"baseline: heuristics on {episodes}",
                     unit="policy", disable=not progress, leave=False):
        pol = policy_factory(name, scenario)()
        results[name] = run_episodes(scenario, heuristic_chooser(pol), seeds, split,
                                     episode_requests)
        table[name] = mean_goodput(results[name])
    best = max(table, key=table.__getitem__)
    return best, results[best], table
