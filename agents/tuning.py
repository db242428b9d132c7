"""Grid search of the PrfaaS routing threshold on the training split, so that the static
threshold heuristic is compared at its best (not at the planner's steady-state optimum)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from agents.compare import run_policy
from agents.heuristics import PrfaasThreshold
from prfaas_gym.scenario import Scenario, load_scenario

#: thresholds tried, as multiples of the planner's threshold
GRID = (0.25, 0.35, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0)
#: the training-split runs each threshold is scored on: these seeds, this many requests each
SEEDS = (0, 1, 2)
REQUESTS = 1000


def tune_threshold(scenario: Scenario, seeds: Sequence[int] = SEEDS, n: int = REQUESTS,
                   grid: Sequence[float] = GRID,
                   rate: float | None = None) -> tuple[float, dict[float, float]]:
    """(best threshold, mean goodput per threshold) over ``seeds`` on the training split,
    at mean arrival rate ``rate`` (default: the scenario's), the rate it will be compared at."""
    base = scenario.threshold_tokens
    table: dict[float, float] = {}
    for m in grid:
        t = float(round(base * m))
        g = [run_policy(scenario, PrfaasThreshold(t), s, split="train", n=n,
                        rate=rate)[0]["goodput_rps"] for s in seeds]
        table[t] = float(np.mean(g))
    best = max(table, key=lambda t: (table[t], -abs(np.log(t / base))))
    return best, table


@lru_cache(maxsize=16)
def tuned_threshold(scenario_name: str) -> float:
    """Cached :func:`tune_threshold` for a shipped scenario (by name)."""
    best, _ = tune_threshold(load_scenario(scenario_name))
    return best


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m agents.tuning SCENARIO``: print the grid's goodput per threshold as JSON."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m agents.tuning", description=__doc__)
    ap.add_argument("scenario", help="scenario name or YAML path")
    args = ap.parse_args(argv)
    sc = load_scenario(args.scenario)
    best, table = tune_threshold(sc)
    print(json.dumps({"scenario": sc.name, "planner": sc.threshold_tokens, "best": best,
                      "goodput": table}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    import sys

    from prfaas_gym.cli import run_script

    sys.exit(run_script(main, prog="python -m agents.tuning"))
