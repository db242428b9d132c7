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
import sys
import time
from typing import Any

import numpy as np

from agents.run_dir import read_run_json, run_json_path
from prfaas_gym.cli import positive_int, run_script
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import is_finite_number
from prfaas_gym.scenario import load_scenario

SHIPPED_TIMESTEPS = {"bursty-fluctuating": 400_000}  # agents/policies/README.md
TARGET_S = 30 * 60


def recorded_run(run_dir: str) -> str:
    """The report line for the finished training run in ``run_dir`` (or its run.json
    itself, as :func:`~agents.run_dir.read_run_json` takes it): the steps it trained,
    its wall time and its steps/s, as its ``run.json`` records them. Read before the
    benchmark runs, so that a bad ``--run`` is refused at once: :class:`PrfaasInputError`
    naming the file if the directory or its run.json is missing or not valid JSON
    (:func:`~agents.run_dir.read_run_json`), if the run has not finished (no ``wall_s``:
    still training, or failed), or if a figure the line reports is missing or not a
    number."""
    rec = read_run_json(run_dir)
    where = run_json_path(run_dir)
    if "wall_s" not in rec:
        why = ("the run failed; its key 'failed' says why" if "failed" in rec
               else "is the run still training?")
        raise PrfaasInputError(f"not a finished run: no key 'wall_s' ({why}); --run takes a "
                               "run that trained to the end or was interrupted", where)

    def number(key: str, whole: bool = False) -> Any:
        if key not in rec:
            raise PrfaasInputError(f"key {key!r} is missing", where)
        v = rec[key]
        if not (is_finite_number(v) and v >= 0 and (not whole or float(v).is_integer())):
            raise PrfaasInputError(f"key {key!r}: expected a finite "
                                   f"{'whole ' if whole else ''}number >= 0, found {v!r}",
                                   where)
        return v

    asked, wall, rate = number("timesteps", whole=True), number("wall_s"), number("steps_per_s")
    done = number("interrupted_at", whole=True) if "interrupted_at" in rec else asked
    return (f"recorded run {run_dir}: {int(done):,} steps in {wall / 60:.1f} min "
            f"({rate:.0f} steps/s, all in)"
            + (f"; interrupted, of {int(asked):,} asked for" if "interrupted_at" in rec else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", default="bursty-fluctuating")
    ap.add_argument("--steps", type=positive_int, default=20_000)
    ap.add_argument("--n-envs", type=positive_int, default=2)
    ap.add_argument("--run", help="a finished run directory whose wall time to report")
    args = ap.parse_args()
    if args.steps < args.n_envs:  # each env steps steps // n_envs times: none would
        ap.error(f"argument --steps: must be at least --n-envs ({args.n_envs}), got "
                 f"{args.steps}")
    # refused before the benchmark, not after it
    recorded = recorded_run(args.run) if args.run is not None else None
    sc = load_scenario(args.scenario)

    import torch
    from sb3_contrib import MaskablePPO

    from agents.train import _policy_kwargs, load_hyperparams, make_train_env

    torch.set_num_threads(1)
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
    if recorded is not None:
        print(recorded)


if __name__ == "__main__":
    sys.exit(run_script(main))
