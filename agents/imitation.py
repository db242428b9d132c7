"""Behaviour-cloning warm start: initialise an SB3 actor-critic from a heuristic.

Training from scratch spends most of its budget rediscovering what the best heuristic already
knows (reject what cannot meet its TTFT SLO, offload long prompts). A warm start clones the
heuristic's decisions into the policy's action logits (masked cross-entropy) and fits the
value head to the discounted returns of those demonstrations, so that PPO starts from the
heuristic's behaviour and a calibrated critic, and spends its budget improving on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prfaas_gym.actions import LOCAL, REJECT_ACTION, REMOTE
from prfaas_gym.contract import Decision, Placement
from prfaas_gym.env import PrfaasRouteEnv
from prfaas_gym.scenario import Scenario


def decision_to_action(d: Decision) -> int:
    if d.placement == Placement.REJECT:
        return REJECT_ACTION
    return REMOTE if d.placement == Placement.REMOTE else LOCAL


def collect_demonstrations(scenario: Scenario, policy_name: str, seeds: Sequence[int],
                           gamma: float, episode_requests: int | None = None,
                           progress: bool = False, reward: str = "completion"
                           ) -> dict[str, np.ndarray]:
    """Roll the heuristic on training episodes; observations, actions, masks and discounted
    returns (the env's ``reward``, as training pays it) per decision. ``progress`` shows a
    bar over the episodes."""
    from tqdm import tqdm

    from agents.registry import policy_factory

    obs, acts, masks, rets = [], [], [], []
    make = policy_factory(policy_name, scenario)
    for seed in tqdm(seeds, desc=f"warm start: {policy_name} on training episodes",
                     unit="episode", disable=not progress, leave=False):
        env = PrfaasRouteEnv(scenario, split="train", episode_requests=episode_requests,
                             reward=reward)
        env.reset(seed=int(seed))
        pol = make()
        pol.reset(env.profile, int(seed))
        if pol.tick_interval_s:  # the teacher's slow loop (prfaas-dual re-solves t) runs too
            env.sim.set_tick_handler(pol.on_tick, pol.tick_interval_s)
        rewards = []
        while env.request_info is not None:
            o = env._obs()
            m = env.action_masks()
            d = pol.decide(env.request_info, env.view)
            a = decision_to_action(d)
            if not m[a]:
                a = int(np.flatnonzero(m)[0])
            obs.append(o)
            acts.append(a)
            masks.append(m)
            _, r, _, _, _ = env.step(a)
            rewards.append(r)
        g = 0.0
        ep_ret = np.empty(len(rewards))
        for k in range(len(rewards) - 1, -1, -1):
            g = rewards[k] + gamma * g
            ep_ret[k] = g
        rets.append(ep_ret)
    return {"obs": np.asarray(obs, np.float32), "actions": np.asarray(acts, np.int64),
            "masks": np.asarray(masks, bool), "returns": np.concatenate(rets).astype(np.float32)}


def pretrain(model: Any, demos: dict[str, np.ndarray], epochs: int = 20, batch_size: int = 256,
             lr: float = 1e-3, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Fit ``model.policy`` (an SB3 actor-critic) to the demonstrations in place. Returns the
    final cross-entropy, action agreement and value loss. ``progress`` shows a bar over the
    passes."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    policy = model.policy
    device = policy.device
    obs = torch.as_tensor(demos["obs"], device=device)
    acts = torch.as_tensor(demos["actions"], device=device)
    masks = torch.as_tensor(demos["masks"], device=device)
    rets = torch.as_tensor(demos["returns"], device=device)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = obs.shape[0]
    policy.set_training_mode(True)
    ce = vl = 0.0
    for _ in tqdm(range(epochs), desc=f"warm start: fitting {n:,} decisions", unit="pass",
                  disable=not progress, leave=False):
        perm = torch.randperm(n, generator=gen).to(device)
        for k in range(0, n, batch_size):
            idx = perm[k:k + batch_size]
            features = policy.extract_features(obs[idx])
            latent_pi, latent_vf = policy.mlp_extractor(features)
            logits = policy.action_net(latent_pi).masked_fill(~masks[idx], -1e9)
            values = policy.value_net(latent_vf).squeeze(-1)
            loss_pi = F.cross_entropy(logits, acts[idx])
            loss_v = F.mse_loss(values, rets[idx])
            opt.zero_grad()
            (loss_pi + 0.5 * loss_v).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            ce, vl = float(loss_pi.detach()), float(loss_v.detach())
    policy.set_training_mode(False)
    with torch.no_grad():
        features = policy.extract_features(obs)
        latent_pi, _ = policy.mlp_extractor(features)
        pred = policy.action_net(latent_pi).masked_fill(~masks, -1e9).argmax(-1)
    return {"cross_entropy": ce, "value_mse": vl,
            "agreement": float((pred == acts).float().mean())}
