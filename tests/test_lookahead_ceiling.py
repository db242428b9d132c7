"""benchmarks/lookahead_ceiling.py: the planner departs from the conductor only where it
looks ahead and its choice wins there, and a look-ahead scores what the fork's future
really gives."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from agents.compare import run_policy
from agents.heuristics import Conductor
from prfaas_gym.contract import REJECT, Role
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
    out = lookahead.run(sc, 0, 300, True, 20.0, 30.0, math.inf)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 300)
    assert (out.examined, out.changed) == (0, 0)
    assert _strip(out.result) == _strip(conductor)


def test_look_ahead_counts_the_requests_that_meet_the_slo_in_the_fork():
    sc = load_scenario("bursty-fluctuating")
    sim = Simulator(sc.profile, sc.workload(0, n=300, split="eval"), sc.bandwidth(0, "eval"), sc.sim)
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
    planned, examined, changed, _, _ = lookahead.run(sc, 0, 600, True, 20.0, 30.0, 0.5)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 600)
    assert examined > changed > 0
    assert planned["slo_met"] != conductor["slo_met"]


def test_role_candidates_offer_one_switch_each_way_and_none_while_a_node_switches():
    sc = load_scenario("bursty-fluctuating")
    sim = Simulator(sc.profile, sc.workload(0, n=300, split="eval"), sc.bandwidth(0, "eval"), sc.sim)
    r = sim.next_request()
    dep = sc.profile.deployment
    changes = lookahead.role_candidates(sim.view(r))
    assert changes[0] is None
    assert [c.role for c in changes[1:]] == [Role.DECODE, Role.PREFILL]
    assert changes[1].node < dep.n_prefill <= changes[2].node  # local nodes: prefill first
    assert sim.request_role_change(changes[1])
    assert lookahead.role_candidates(sim.view(r)) == [None]


def test_a_role_look_ahead_that_sees_no_difference_changes_nothing():
    sc = load_scenario("bursty-fluctuating")
    # a zero horizon and drain end each fork before any switch lands: every score ties
    out = lookahead.run(sc, 0, 600, False, 20.0, 0.0, math.inf, roles_every_s=30.0,
                        roles_horizon_s=0.0)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 600)
    assert out.role_looks > 0 and out.role_changes == 0
    assert _strip(out.result) == _strip(conductor)


def test_where_the_role_look_ahead_switches_the_run_switches():
    sc = load_scenario("bursty-fluctuating")
    out = lookahead.run(sc, 0, 1500, False, 20.0, 30.0, math.inf, roles_every_s=30.0)
    conductor, _ = run_policy(sc, Conductor(), 0, "eval", 1500)
    assert out.role_looks > out.role_changes > 0
    assert conductor["role_switches"] == 0
    assert out.result["role_switches"] == out.role_changes  # each switch landed
    assert out.result["slo_met"] != conductor["slo_met"]
