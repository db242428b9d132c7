"""What better per-request decisions could add on top of the conductor with perfect knowledge
of the future: a clairvoyant one-step look-ahead planner in the env's action space.

On the scenario's eval split (the held-out workloads of ``heldout.py``, seeds 0..K-1) the
planner routes like the conductor, except on *contested* requests: those whose best
estimated TTFT exceeds ``--contested`` x the TTFT SLO (the conductor's rejections among
them). For each of those it forks the simulator (:meth:`Simulator.fork`) once per feasible
action of the env's ``Discrete(3)`` (local, remote, reject), applies the action, lets the
conductor route every request arriving in the next ``--horizon`` seconds of the *actual*
workload on the *actual* link, runs ``--drain`` more seconds (from the later of the horizon's
end and the first arrival past it: the same for every action), and counts the requests whose
first token met the TTFT SLO among those in flight at the decision and those it routed. It
takes the action with the most; a tie keeps the conductor's. The score leaves out the TPOT
SLO, which would need every decode run to its end; the conductor's TPOT admission check
keeps those misses rare (on bursty seed 0's first 1500 eval requests the TTFT-only and
both-SLO counts are equal: 1342 for the conductor, 1397 for this planner), and the
reported goodput counts both.

This is one step of policy iteration on the conductor (a rollout) with a clairvoyant model.
No router that sees only the present knows what it knows, so the gain it finds is an
optimistic reference for what this action space can add to the conductor by better
per-request choices, not a bound: several steps of improvement could add more.

    python benchmarks/lookahead_ceiling.py --scenario bursty-fluctuating --seeds 5
    python benchmarks/lookahead_ceiling.py --scenario mooncake-conversation --seeds 5 \\
        --requests 1000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from agents.compare import add_eval_arguments, ci95
from agents.heuristics import Conductor
from prfaas_gym.actions import ACTIONS, action_masks, action_to_decision
from prfaas_gym.contract import REJECT, Decision
from prfaas_gym.estimate import best_per_cluster_with_copy
from prfaas_gym.request import Request
from prfaas_gym.scenario import Scenario, load_scenario
from prfaas_gym.simulator import Job, JobState, Simulator

_RESOLVED = (JobState.DONE, JobState.REJECTED, JobState.FAILED)


def _met(jobs: list[Job], slo_s: float) -> int:
    return sum(1 for j in jobs if j.t_first_token - j.request.arrival_s <= slo_s)


def run(sc: Scenario, seed: int, n: int | None, plan: bool, horizon_s: float, drain_s: float,
        contested: float) -> tuple[dict, int, int]:
    """(result, contested decisions, decisions the look-ahead changed) for one eval run;
    ``plan=False`` is the plain conductor on the same workload and link."""
    w = sc.workload(seed, n=n, split="eval")
    sim = Simulator(sc.profile, w, sc.bandwidth(seed), sc.sim)
    p = sc.profile
    slo = p.slo.ttft_s
    conductor = Conductor()
    conductor.reset(p, seed)
    examined = changed = 0
    open_from = 0  # every job before this index is resolved or has its first token
    while (r := sim.next_request()) is not None:
        info, view = sim.request_info(r), sim.view(r)
        chosen = conductor.decide(info, view)
        best = best_per_cluster_with_copy(p, info, view)
        if plan and min(best[1], best[3]) > contested * slo:
            jobs = sim.jobs
            while open_from < len(jobs) and (jobs[open_from].state in _RESOLVED
                                             or not math.isnan(jobs[open_from].t_first_token)):
                open_from += 1
            cands = [chosen]
            for a, ok in enumerate(action_masks(best)):
                d = action_to_decision(a, best)
                if ok and d not in cands:
                    cands.append(d)
            if len(cands) > 1:
                examined += 1
                scores = [_lookahead(sim, r, d, conductor, horizon_s, drain_s,
                                     open_from, slo) for d in cands]
                k = int(np.argmax(scores))  # the first maximum: the conductor's on a tie
                changed += k != 0
                chosen = cands[k]
        sim.apply(r, chosen)
    sim.finish()
    return sim.result(), examined, changed


def _lookahead(sim: Simulator, r: Request, d: Decision, conductor: Conductor, horizon_s: float,
               drain_s: float, open_from: int, slo_s: float) -> int:
    fork = sim.fork()  # the pending request ``r`` is carried over
    fork.apply(r, d)
    t = r.arrival_s
    while (nr := fork.next_request()) is not None:
        if nr.arrival_s > t + horizon_s:
            fork.apply(nr, REJECT)  # the look-ahead ends here
            break
        fork.apply(nr, conductor.decide(fork.request_info(nr), fork.view(nr)))
    fork.advance(t + horizon_s + drain_s)
    jobs = fork.jobs  # the original's jobs in the same order, then the look-ahead's
    if nr is not None:
        jobs = jobs[:-1]
    return _met(jobs[open_from:], slo_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(ap)
    ap.add_argument("--horizon", type=float, default=20.0,
                    help="seconds of future arrivals each look-ahead routes (default 20)")
    ap.add_argument("--drain", type=float, default=30.0,
                    help="seconds a look-ahead runs on after its horizon (default 30)")
    ap.add_argument("--contested", type=float, default=0.5,
                    help="look ahead where the best estimated TTFT exceeds this x the SLO")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    print(f"{sc.name}, eval split, seeds 0..{args.seeds - 1}; actions {list(ACTIONS)}; "
          f"horizon {args.horizon:g} s, drain {args.drain:g} s, contested > "
          f"{args.contested:g} x SLO")
    print("| seed | requests | conductor goodput | look-ahead goodput | ratio | SLO attainment "
          "(cond. / look-ahead) | P90 TTFT s (cond. / look-ahead) | contested | changed | "
          "wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for s in range(args.seeds):
        base, _, _ = run(sc, s, args.requests, False, args.horizon, args.drain, args.contested)
        t0 = time.perf_counter()
        res, examined, changed = run(sc, s, args.requests, True, args.horizon, args.drain,
                                     args.contested)
        wall = time.perf_counter() - t0
        ratio = res["goodput_rps"] / base["goodput_rps"]
        ratios.append(ratio)
        print(f"| {s} | {res['requests']} | {base['goodput_rps']:.3f} | "
              f"{res['goodput_rps']:.3f} | {ratio:.3f} | {base['slo_attainment']:.3f} / "
              f"{res['slo_attainment']:.3f} | {base['ttft_s']['p90']:.2f} / "
              f"{res['ttft_s']['p90']:.2f} | {examined} | {changed} | {wall:.0f} |", flush=True)
    m, h = ci95(ratios)
    print(f"\nclairvoyant one-step look-ahead / conductor goodput: {m:.3f} ± {h:.3f} "
          "(mean ± 95% CI over seeds)")


if __name__ == "__main__":
    main()
