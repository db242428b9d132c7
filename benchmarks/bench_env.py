"""Env step rate of PrfaasRoute-v0 with random actions, against Gymnasium's CartPole-v1
measured in the same run (both created with ``gymnasium.make``, both driven by the same
``rng.integers(n)`` action sampler; resets are counted in the time, and the default step
count is one cycle of the env's synthetic request pool (``POOL_REUSE`` episodes), so that
its regeneration is paid at its average rate; the two are measured in turn, ``--repeat``
times, and each keeps its best). ``--masked`` samples
PrfaasRoute's actions from ``action_masks()`` instead (numpy's ``choice`` adds ~8 us a step).
When the package is compiled, the same source run as plain Python (``PRFAAS_PURE_PYTHON=1``)
is measured too, in a subprocess, with its own CartPole figure.

Target (issue 2): PrfaasRoute-v0 >= 0.3x CartPole-v1's step rate.

    python benchmarks/bench_env.py [--steps N] [--scenario bursty-fluctuating] [--masked]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

from prfaas_gym import _compiled
from prfaas_gym.cli import positive_int, run_script

TARGET_RATIO = 0.3


def steps_per_s(env: gym.Env, steps: int, masked: bool) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    base = env.unwrapped
    n = env.action_space.n
    t0 = time.perf_counter()
    for _ in range(steps):
        if masked:
            m = base.action_masks()
            a = int(rng.choice(np.flatnonzero(m)))
        else:
            a = int(rng.integers(n))
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=positive_int, help="default: one pool cycle (32,768 steps for "
                    "bursty-fluctuating)")
    ap.add_argument("--scenario", default="bursty-fluctuating")
    ap.add_argument("--repeat", type=positive_int, default=3)
    ap.add_argument("--masked", action="store_true", help="sample from action_masks()")
    ap.add_argument("--ratio-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps is None:
        from prfaas_gym.env import POOL_REUSE
        from prfaas_gym.scenario import load_scenario

        args.steps = POOL_REUSE * load_scenario(args.scenario).episode_requests
    cart = gym.make("CartPole-v1")
    prf = gym.make("PrfaasRoute-v0", scenario=args.scenario)
    # interleaved, best of each: a slow spell of this shared machine hits both alike
    c = p = 0.0
    for _ in range(args.repeat):
        c = max(c, steps_per_s(cart, args.steps, False))
        p = max(p, steps_per_s(prf, args.steps, args.masked))
    ratio = p / c
    if args.ratio_only:
        print(ratio)
        return
    kind = "random masked" if args.masked else "random"
    print(f"prfaas_gym: {_compiled.describe()}")
    print(f"CartPole-v1 (random actions):            {c:,.0f} steps/s")
    print(f"PrfaasRoute-v0 {args.scenario} ({kind}): {p:,.0f} steps/s")
    print(f"ratio {ratio:.2f}x  (target >= {TARGET_RATIO}x: {'MET' if ratio >= TARGET_RATIO else 'NOT MET'})")
    if _compiled.compiled_modules():
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--scenario", args.scenario,
               "--repeat", str(args.repeat), "--ratio-only"] + (["--masked"] if args.masked else [])
        pure = float(subprocess.run(cmd, env={**os.environ, "PRFAAS_PURE_PYTHON": "1"},
                                    capture_output=True, text=True, check=True).stdout)
        print(f"same source as plain Python (PRFAAS_PURE_PYTHON=1): ratio {pure:.2f}x")


if __name__ == "__main__":
    sys.exit(run_script(main))
