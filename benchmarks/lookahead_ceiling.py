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
keeps those misses rare (on bursty seed 0's first 1500 eval requests, before the eval
split had its own links, the TTFT-only and both-SLO counts were equal: 1342 for the
conductor, 1397 for this planner), and the
reported goodput counts both.

This is one step of policy iteration on the conductor (a rollout) with a clairvoyant model.
No router that sees only the present knows what it knows, so the gain it finds is an
optimistic reference for what this action space can add to the conductor by better
per-request choices, not a bound: several steps of improvement could add more.

``--levers roles`` looks ahead over the other lever a scheduler has, dynamic prefill/decode
role switching, instead: every ``--roles-every`` seconds of simulated time (at the first
arrival past the mark) and while no local node is draining or switching, it forks once per
role change {none, the least-waiting prefill node -> decode, the least-busy decode node ->
prefill} (the simulator refuses a change that would leave a role empty), lets the conductor
route the next ``--roles-horizon`` seconds (a switch takes the deployment's
``switch_delay_s`` to land, so this horizon is longer) plus ``--drain``, scores the same way,
and requests the winning change on the real run. Routing stays the conductor's. ``--levers
both`` does both look-aheads.

    python benchmarks/lookahead_ceiling.py --scenario bursty-fluctuating --seeds 5
    python benchmarks/lookahead_ceiling.py --scenario mooncake-conversation --seeds 5 \\
        --requests 1000
    python benchmarks/lookahead_ceiling.py --scenario bursty-fluctuating --seeds 5 --levers both
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import NamedTuple

import numpy as np

from agents.compare import add_eval_arguments, ci95, fmt_ci, given_sources
from agents.heuristics import Conductor
from prfaas_gym.actions import ACTIONS, action_masks, action_to_decision
from prfaas_gym.cli import non_negative_float, positive_float, run_script, scenario_from_args
from prfaas_gym.contract import REJECT, ClusterView, Decision, RoleChange
from prfaas_gym.estimate import best_per_cluster_with_copy
from prfaas_gym.request import Request
from prfaas_gym.role_actions import role_candidates as action_changes
from prfaas_gym.scenario import Scenario
from prfaas_gym.simulator import Job, JobState, Simulator

_RESOLVED = (JobState.DONE, JobState.REJECTED, JobState.FAILED)


def _met(jobs: list[Job], slo_s: float) -> int:
    return sum(1 for j in jobs if j.t_first_token - j.request.arrival_s <= slo_s)


class Run(NamedTuple):
    """One eval run: its result dict, the contested requests looked ahead on and how many
    of them the look-ahead changed, and the role look-aheads and the changes they made."""

    result: dict
    examined: int
    changed: int
    role_looks: int = 0
    role_changes: int = 0


def run(sc: Scenario, seed: int, n: int | None, plan: bool, horizon_s: float, drain_s: float,
        contested: float, roles_every_s: float = 0.0, roles_horizon_s: float = 120.0) -> Run:
    """One eval run. ``plan`` turns on the per-request look-ahead and ``roles_every_s > 0``
    the role look-ahead; with neither it is the plain conductor on the same workload and
    link."""
    w = sc.workload(seed, n=n, split="eval")
    sim = Simulator(sc.profile, w, sc.bandwidth(seed, "eval"), sc.sim)
    p = sc.profile
    slo = p.slo.ttft_s
    conductor = Conductor()
    conductor.reset(p, seed)
    examined = changed = role_looks = role_changes = 0
    next_roles = -math.inf
    open_from = 0  # every job before this index is resolved or has its first token

    def first_open() -> int:
        jobs = sim.jobs
        k = open_from
        while k < len(jobs) and (jobs[k].state in _RESOLVED
                                 or not math.isnan(jobs[k].t_first_token)):
            k += 1
        return k

    while (r := sim.next_request()) is not None:
        if roles_every_s > 0 and r.arrival_s >= next_roles:
            next_roles = r.arrival_s + roles_every_s
            changes = role_candidates(sim.view(r))
            if len(changes) > 1:
                open_from = first_open()
                role_looks += 1
                scores = [_lookahead(sim, r, None, conductor, roles_horizon_s, drain_s,
                                     open_from, slo, c) for c in changes]
                best_change = changes[int(np.argmax(scores))]  # a tie keeps "none"
                if best_change is not None and sim.request_role_change(best_change):
                    role_changes += 1
        info, view = sim.request_info(r), sim.view(r)
        chosen = conductor.decide(info, view)
        best = best_per_cluster_with_copy(p, info, view)
        if plan and min(best[1], best[3]) > contested * slo:
            open_from = first_open()
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
    return Run(sim.result(), examined, changed, role_looks, role_changes)


def role_candidates(view: ClusterView) -> list[RoleChange | None]:
    """None (no change), then the feasible changes of ``PrfaasRoles-v0``'s action space
    (:func:`prfaas_gym.role_actions.role_candidates`): one prefill node -> decode (the one
    with the least prefill wait, which drains first) and one decode node -> prefill (the one
    running the fewest requests) where the role keeps another node; only None while a node
    is switching."""
    return [None, *(c for c in action_changes(view)[1:] if c is not None)]


def _lookahead(sim: Simulator, r: Request, d: Decision | None, conductor: Conductor,
               horizon_s: float, drain_s: float, open_from: int, slo_s: float,
               change: RoleChange | None = None) -> int:
    """Requests meeting the TTFT SLO in a fork that requests ``change``, applies ``d`` to the
    pending request ``r`` (None: the conductor's choice) and lets the conductor route the
    next ``horizon_s`` seconds, then ``drain_s`` more."""
    fork = sim.fork()  # the pending request ``r`` is carried over
    if change is not None:
        fork.request_role_change(change)
    if d is None:
        d = conductor.decide(fork.request_info(r), fork.view(r))
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


def _p90(result: dict) -> str:
    """A run's P90 TTFT, ``-`` where it completed nothing."""
    p90 = result["ttft_s"]["p90"]
    return "-" if p90 is None else f"{p90:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(ap)
    ap.add_argument("--horizon", type=non_negative_float, default=20.0,
                    help="seconds of future arrivals each look-ahead routes (default 20)")
    ap.add_argument("--drain", type=non_negative_float, default=30.0,
                    help="seconds a look-ahead runs on after its horizon (default 30)")
    ap.add_argument("--contested", type=non_negative_float, default=0.5,
                    help="look ahead where the best estimated TTFT exceeds this x the SLO")
    ap.add_argument("--levers", choices=("request", "roles", "both"), default="request",
                    help="look ahead per contested request (default), over role switches, "
                         "or both")
    ap.add_argument("--roles-every", type=positive_float, default=30.0,
                    help="seconds between role look-aheads (default 30)")
    ap.add_argument("--roles-horizon", type=non_negative_float, default=120.0,
                    help="seconds of future arrivals each role look-ahead routes (default 120)")
    args = ap.parse_args()
    sc = scenario_from_args(args)
    plan = args.levers in ("request", "both")
    roles_every = args.roles_every if args.levers in ("roles", "both") else 0.0
    print(f"{sc.name}{given_sources(args)}, eval split, seeds 0..{args.seeds - 1}; levers: "
          f"{args.levers}; drain {args.drain:g} s" + (f"; request actions {list(ACTIONS)}, horizon "
                                 f"{args.horizon:g} s, contested > {args.contested:g} x SLO"
                                 if plan else "")
          + (f"; role changes every {roles_every:g} s, horizon {args.roles_horizon:g} s"
             if roles_every else ""))
    print("| seed | requests | conductor goodput | look-ahead goodput | ratio | SLO attainment "
          "(cond. / look-ahead) | P90 TTFT s (cond. / look-ahead) | contested | changed | "
          "role looks | role changes | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for s in range(args.seeds):
        base = run(sc, s, args.requests, False, args.horizon, args.drain, args.contested).result
        t0 = time.perf_counter()
        out = run(sc, s, args.requests, plan, args.horizon, args.drain, args.contested,
                  roles_every, args.roles_horizon)
        wall = time.perf_counter() - t0
        res = out.result
        # no ratio where the conductor served nothing within SLO (ci95 leaves NaN out)
        ratio = (res["goodput_rps"] / base["goodput_rps"] if base["goodput_rps"] > 0
                 else math.nan)
        ratios.append(ratio)
        print(f"| {s} | {res['requests']} | {base['goodput_rps']:.3f} | "
              f"{res['goodput_rps']:.3f} | {ratio:.3f} | {base['slo_attainment']:.3f} / "
              f"{res['slo_attainment']:.3f} | {_p90(base)} / {_p90(res)} | {out.examined} | "
              f"{out.changed} | {out.role_looks} | {out.role_changes} | {wall:.0f} |", flush=True)
    m, h = ci95(ratios)
    if math.isnan(m):
        print("\nno ratio: the conductor served nothing within SLO on any seed")
        return
    print(f"\nclairvoyant one-step look-ahead ({args.levers}) / conductor goodput: "
          f"{fmt_ci(m, h)} (mean ± 95% CI over seeds)")


if __name__ == "__main__":
    sys.exit(run_script(main))
