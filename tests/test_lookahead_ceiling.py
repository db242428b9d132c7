"""benchmarks/lookahead_ceiling.py: the planner departs from the conductor only where it
looks ahead and its choice wins there, and a look-ahead scores what the fork's future
really gives."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from agents.compare import run_policy
from agents.heuristics import Conductor
from prfaas_gym.contract import REJECT
from prfaas_gym.scenario import load_scenario
from prfaas_gym.simulator import Simulator

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "lookahead_ceiling.py"
_spec = importlib.util.spec_from_file_location("lookahead_ceiling", _PATH)
lookahead = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lookahead)


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("wall_s", "sim_requests_per_s")}  # timings


def test_without_contested_requests_it_is_the_conductor():
    sc = load_scenario("bursty-fluctuating")
    planned, examined, changed = lookahead.run(sc, 0, 300, True, 20.0, 30.0, math.inf)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 300)
    assert (examined, changed) == (0, 0)
    assert _strip(planned) == _strip(conductor)


def test_look_ahead_counts_the_requests_that_meet_the_slo_in_the_fork():
    sc = load_scenario("bursty-fluctuating")
    sim = Simulator(sc.profile, sc.workload(0, n=300, split="eval"), sc.bandwidth(0), sc.sim)
    r = sim.next_request()
    assert r is not None
    # alone in an idle deployment: rejecting it loses exactly the one request it scores
    cond = Conductor()
    cond.reset(sc.profile, 0)
    accept = cond.decide(sim.request_info(r), sim.view(r))
    assert accept.placement != REJECT.placement
    served = lookahead._lookahead(sim, r, accept, cond, 0.0, 60.0, 0, sc.profile.slo.ttft_s)
    rejected = lookahead._lookahead(sim, r, REJECT, cond, 0.0, 60.0, 0, sc.profile.slo.ttft_s)
    assert (served, rejected) == (1, 0)
    assert sim.jobs == []  # the look-ahead ran on forks


def test_where_the_look_ahead_departs_the_run_follows_it():
    sc = load_scenario("bursty-fluctuating")
    planned, examined, changed = lookahead.run(sc, 0, 600, True, 20.0, 30.0, 0.5)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 600)
    assert examined > changed > 0
    assert planned["slo_met"] != conductor["slo_met"]
