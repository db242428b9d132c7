"""Training throughput: env steps/s (raw, the vectorised training envs with random masked
actions) and training steps/s (MaskablePPO with the shipped hyperparameters, rollouts +
updates), both measured in the same run, and the projected wall time of the shipped
``bursty-fluctuating`` training command. If a finished run directory is given, its recorded
wall time is printed too.

Target (issue 3): training the shipped bursty-fluctuating policy takes <= 30 min on a
2-core CPU machine.

    python benchmarks/bench_training.py [--steps 20000] [--n-envs 2] [--run runs/bursty]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from prfaas_gym.cli import positive_int, run_script

SHIPPED_TIMESTEPS = {"bursty-fluctuating": 400_000}  # agents/policies/README.md
TARGET_S = 30 * 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="bursty-fluctuating")
    ap.add_argument("--steps", type=positive_int, default=20_000)
    ap.add_argument("--n-envs", type=positive_int, default=2)
    ap.add_argument("--run", help="a finished run directory whose wall time to report")
    args = ap.parse_args()

    import torch
    from sb3_contrib import MaskablePPO

    from agents.train import _policy_kwargs, load_hyperparams, make_train_env
    from prfaas_gym.scenario import load_scenario

    torch.set_num_threads(1)
    sc = load_scenario(args.scenario)
    env = make_train_env(sc, args.n_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    n = args.steps // args.n_envs
    t0 = time.perf_counter()
    for _ in range(n):
        masks = np.stack(env.env_method("action_masks"))
        acts = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        env.step(acts)
    env_rate = n * args.n_envs / (time.perf_counter() - t0)

    hp = load_hyperparams("maskable_ppo", sc.name)
    kwargs = {k: v for k, v in hp.items() if k not in ("policy", "policy_kwargs")}
    model = MaskablePPO("MlpPolicy", env, seed=0, device="cpu",
                        policy_kwargs=_policy_kwargs(hp.get("policy_kwargs") or {}), **kwargs)
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    train_rate = model.num_timesteps / (time.perf_counter() - t0)
    env.close()
    total = SHIPPED_TIMESTEPS.get(sc.name, 1_000_000)
    projected = total / train_rate
    from prfaas_gym import _compiled

    print(f"prfaas_gym: {_compiled.describe()}")
    print(f"{sc.name}, {args.n_envs} envs, torch threads 1")
    print(f"env steps/s (vectorised, random masked actions): {env_rate:,.0f}")
    print(f"training steps/s (MaskablePPO rollouts + updates): {train_rate:,.0f}")
    print(f"projected wall time for {total:,} steps: {projected / 60:.1f} min "
          f"(+ validation and warm start; target <= 30 min: "
          f"{'MET' if projected <= TARGET_S else 'NOT MET'})")
    if args.run:
        run = json.loads((Path(args.run) / "run.json").read_text())
        if "wall_s" in run:
            done = run.get("interrupted_at", run["timesteps"])
            print(f"recorded run {args.run}: {done:,} steps in {run['wall_s'] / 60:.1f} min "
                  f"({run['steps_per_s']:.0f} steps/s, all in)"
                  + (f"; interrupted, of {run['timesteps']:,} asked for"
                     if "interrupted_at" in run else ""))


if __name__ == "__main__":
    sys.exit(run_script(main))
