"""The paper's Table 6, three ways: printed in the paper, from our planner (Eqs. 3-8), and
measured in the simulator (completion rate at twice the planner's capacity; TTFT at light
load, 0.05 req/s). Each configuration runs with its natural policy.

    python benchmarks/paper_table.py [--requests 4000]
"""

from __future__ import annotations

import argparse
import sys

from agents.compare import run_policy
from agents.registry import policy_factory
from prfaas_gym.cli import positive_int, run_script
from prfaas_gym.planner import plan_for_paper
from prfaas_gym.scenario import load_scenario

PAPER = {"prfaas": (3.24, 2.22, 3.51), "homogeneous": (2.11, 4.44, 9.73),
         "naive": (2.45, 1.74, 3.51)}
SCENARIOS = {"prfaas": "paper-case-study", "homogeneous": "paper-homogeneous",
             "naive": "paper-naive"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=positive_int, default=4000)
    args = ap.parse_args()
    plans = plan_for_paper("paper-case-study")
    print(f"{'config':12s} | {'Λ paper':>7s} {'planner':>7s} {'sim':>7s} | "
          f"{'TTFT mean paper/sim':>20s} | {'TTFT P90 paper/sim':>19s}")
    sim_rate = {}
    for cfg, scen in SCENARIOS.items():
        sc = load_scenario(scen)
        lam = plans[cfg].lambda_max
        over, _ = run_policy(sc, policy_factory(sc.policy, sc)(), 0, n=args.requests, rate=2 * lam)
        light, _ = run_policy(sc, policy_factory(sc.policy, sc)(), 0, n=args.requests, rate=0.05)
        sim_rate[cfg] = over["throughput_rps"]
        p_lam, p_mean, p_p90 = PAPER[cfg]
        print(f"{cfg:12s} | {p_lam:7.2f} {lam:7.2f} {over['throughput_rps']:7.2f} | "
              f"{p_mean:9.2f} / {light['ttft_s']['mean']:6.2f}   | "
              f"{p_p90:8.2f} / {light['ttft_s']['p90']:6.2f}")
    print(f"PrfaaS / homogeneous throughput: paper 1.54x, planner "
          f"{plans['prfaas'].lambda_max / plans['homogeneous'].lambda_max:.2f}x, simulator "
          f"{sim_rate['prfaas'] / sim_rate['homogeneous']:.2f}x")
    p = plans["prfaas"]
    print(f"planner: threshold {p.threshold_tokens:.0f} tokens, split {p.n_prefill}/{p.n_decode}, "
          f"offload {p.offload_fraction:.3f}, link {p.link_gbps_at_lambda_max:.1f} Gbps at Λ_max")


if __name__ == "__main__":
    sys.exit(run_script(main))
