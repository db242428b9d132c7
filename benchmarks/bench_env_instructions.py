"""Instructions per env step of PrfaasRoute-v0 and CartPole-v1, counted by valgrind's
cachegrind: the noise-free cross-check of ``bench_env.py`` on a shared machine.

Each env runs ``--steps`` random steps (the same ``rng.integers`` sampler as
``bench_env.py``) and once with 0 steps; the difference divided by the step count is the
cost of a step, resets and the synthetic request pool's regeneration included: the default
step count is one pool cycle (``POOL_REUSE`` episodes of the scenario's length; 32,768 for
bursty-fluctuating), whose last reset regenerates the pool once. OpenBLAS is held to one thread
(its idle worker threads would otherwise be counted). Needs ``valgrind`` on the PATH; takes
a few minutes (cachegrind runs code ~50x slower).

    python benchmarks/bench_env_instructions.py [--steps N] [--scenario bursty-fluctuating]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

from prfaas_gym.cli import positive_int, run_script

DRIVER = """
import sys
import numpy as np, gymnasium as gym
import prfaas_gym  # noqa: F401 (registers PrfaasRoute-v0)
env_id, scenario, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = gym.make(env_id, scenario=scenario) if env_id == "PrfaasRoute-v0" else gym.make(env_id)
rng = np.random.default_rng(0)
env.reset(seed=0)
n = env.action_space.n
for _ in range(steps):
    _, _, term, trunc, _ = env.step(int(rng.integers(n)))
    if term or trunc:
        env.reset()
"""


def instructions(env_id: str, scenario: str, steps: int) -> int:
    """Instructions (cachegrind's I refs) of the driver running ``steps`` steps."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, "-W", "ignore", "-c", DRIVER, env_id, scenario, str(steps)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"cachegrind run of {env_id} failed:\n{out.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def pool_cycle(scenario: str) -> int:
    """Steps between two regenerations of the env's synthetic request pool."""
    from prfaas_gym.env import POOL_REUSE
    from prfaas_gym.scenario import load_scenario

    return POOL_REUSE * load_scenario(scenario).episode_requests


def per_step(env_id: str, scenario: str, steps: int) -> float:
    return (instructions(env_id, scenario, steps) - instructions(env_id, scenario, 0)) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=positive_int, help="default: one pool cycle")
    ap.add_argument("--scenario", default="bursty-fluctuating")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed; this benchmark counts instructions with it")
    from prfaas_gym import _compiled

    print(f"prfaas_gym: {_compiled.describe()}")
    cart = per_step("CartPole-v1", "", 20_000)
    print(f"CartPole-v1:                            {cart:10,.0f} instructions per step")
    prf = per_step("PrfaasRoute-v0", args.scenario, args.steps or pool_cycle(args.scenario))
    print(f"PrfaasRoute-v0 {args.scenario}: {prf:10,.0f} instructions per step")
    print(f"ratio of step rates at equal instructions per second: {cart / prf:.2f}x "
          "(the wall-clock target of bench_env.py is 0.3x)")


if __name__ == "__main__":
    sys.exit(run_script(main))
