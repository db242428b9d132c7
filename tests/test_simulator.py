"""Simulator invariants: conservation, determinism, role switching, admission control."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agents.compare import run_policy
from agents.registry import HEURISTICS, make_heuristic, policy_factory
from prfaas_gym.contract import Decision, Placement, Policy, Role, RoleChange
from prfaas_gym.profile import load_profile
from prfaas_gym.request import Request, Workload
from prfaas_gym.scenario import load_scenario
from prfaas_gym.simulator import JobState, NodeState, SimConfig, Simulator


@pytest.fixture(scope="module")
def bursty():
    return load_scenario("bursty-fluctuating")


@pytest.mark.parametrize("policy", sorted(HEURISTICS))
def test_every_heuristic_conserves_requests(bursty, policy):
    result, sim = run_policy(bursty, policy_factory(policy, bursty)(), seed=1, n=400)
    c = sim.counts()
    assert c["arrived"] == 400
    assert c["completed"] + c["rejected"] + c["failed"] + c["in_flight"] == c["arrived"]
    assert result["completed"] == c["completed"]


def test_stopped_run_conserves_in_flight(bursty):
    w = bursty.workload(3, n=300)
    sim = Simulator(bursty.profile, w, bursty.bandwidth(3), SimConfig(max_drain_s=0.0))
    pol = make_heuristic("prfaas-threshold", threshold_tokens=bursty.threshold_tokens)
    sim.run(pol)
    c = sim.counts()
    assert c["in_flight"] > 0
    assert c["completed"] + c["rejected"] + c["failed"] + c["in_flight"] == 300


def test_the_timeseries_link_throughput_never_exceeds_what_the_link_could_deliver(bursty):
    """timeseries.png plots measured / deliverable link throughput per telemetry interval;
    the capacity at the tick alone would read above 1 whenever the link fell during it."""
    _, sim = run_policy(bursty, policy_factory("conductor", bursty)(), seed=0, n=1000)
    ts = sim.timeseries
    sent, deliverable = np.asarray(ts["link_gbps"]), np.asarray(ts["link_deliverable_gbps"])
    assert sent.size == deliverable.size > 100
    assert np.all(sent <= deliverable * (1 + 1e-9) + 1e-12)
    assert np.any(sent > 0.99 * deliverable)  # the link does fill at times: a real bound
    assert np.any(sent > 1.01 * np.asarray(ts["link_capacity_gbps"]))  # and the tick's would not


def test_same_seed_same_result(bursty):
    a, _ = run_policy(bursty, policy_factory("prfaas-dual", bursty)(), seed=5, n=300)
    b, _ = run_policy(bursty, policy_factory("prfaas-dual", bursty)(), seed=5, n=300)
    c, _ = run_policy(bursty, policy_factory("prfaas-dual", bursty)(), seed=6, n=300)
    for k in ("goodput_rps", "ttft_s", "tpot_s", "link_bytes", "prefix_hit_rate"):
        assert a[k] == b[k]
    assert a["ttft_s"] != c["ttft_s"]


def _route(sim: Simulator, policy, stop_after: int | None = None) -> None:
    """Route with ``policy`` until ``stop_after`` more requests (None: to the end, drained)."""
    k = 0
    while (r := sim.next_request()) is not None:
        sim.apply(r, policy.decide(sim.request_info(r), sim.view(r)))
        k += 1
        if k == stop_after:
            return
    sim.finish()


def _result(sim: Simulator) -> dict:
    out = sim.result()
    out.pop("wall_s", None)
    return out


def _small_cache(sc):
    """``sc``'s profile with prefix caches small enough to evict within a few hundred
    requests."""
    return dataclasses.replace(sc.profile, deployment=dataclasses.replace(
        sc.profile.deployment, prefix_cache_blocks=600))


def test_fork_continues_identically_and_leaves_the_original_alone(bursty):
    profile = _small_cache(bursty)

    def sim_and_policy():
        sim = Simulator(profile, bursty.workload(2, n=500, split="eval"), bursty.bandwidth(2),
                        bursty.sim)
        pol = make_heuristic("conductor")
        pol.reset(profile, 2)
        return sim, pol

    ref, pol = sim_and_policy()
    _route(ref, pol)
    sim, pol = sim_and_policy()
    _route(sim, pol, stop_after=250)
    r = sim.next_request()  # fork with a request pending: it is carried over
    assert r is not None
    assert max(sim.cache.held_blocks(i) for i in range(sim.cache.n)) == 600  # evicting
    other, same = sim.fork(), sim.fork()
    assert sim.completed and other.completed[0] is sim.completed[0]  # history is shared
    other.apply(r, Decision(Placement.REMOTE))
    remote_all = make_heuristic("remote-all")
    remote_all.reset(profile, 2)
    _route(other, remote_all)  # a different future on the fork...
    for s in (sim, same):  # ...changes nothing in the original or in a sibling fork
        s.apply(r, pol.decide(s.request_info(r), s.view(r)))
        _route(s, pol)
        assert _result(s) == _result(ref)
    assert _result(other)["goodput_rps"] != _result(ref)["goodput_rps"]


def test_fork_ticks_call_the_handler_it_is_given(bursty):
    def sim_with_ticks():
        sim = Simulator(bursty.profile, bursty.workload(1, n=200), bursty.bandwidth(1), bursty.sim)
        calls: list[str] = []
        sim.set_tick_handler(lambda view: calls.append("original") or [], 5.0)
        return sim, calls

    pol = make_heuristic("conductor")
    pol.reset(bursty.profile, 1)
    sim, calls = sim_with_ticks()
    _route(sim, pol, stop_after=100)
    n = len(calls)
    _route(sim.fork(), pol)  # by default a fork's ticks call the same handler
    assert len(calls) > n
    n, mine = len(calls), []
    _route(sim.fork(tick_handler=lambda view: mine.append("fork") or []), pol)
    assert mine and len(calls) == n  # the original's handler is left alone
    plain = Simulator(bursty.profile, bursty.workload(1, n=20), bursty.bandwidth(1), bursty.sim)
    with pytest.raises(ValueError, match="no tick schedule"):
        plain.fork(tick_handler=lambda view: [])


def test_run_ticks_a_policy_whose_class_sets_the_interval(bursty):
    """The contract's ``tick_interval_s`` may be a class attribute of a Policy subclass, as
    ``name`` is. Compiled, ``Simulator.run`` read the base class's native slot (None), so
    such a policy's ``on_tick`` never ran and its role changes were silently dropped."""
    class EveryTenSeconds(Policy):
        tick_interval_s = 10.0

        def __init__(self) -> None:
            self.router = make_heuristic("conductor")
            self.ticks: list[float] = []

        def reset(self, profile, seed=None) -> None:
            super().reset(profile, seed)
            self.router.reset(profile, seed)

        def decide(self, request, view):
            return self.router.decide(request, view)

        def on_tick(self, view):
            self.ticks.append(view.time_s)
            return []

    pol = EveryTenSeconds()
    sim = Simulator(bursty.profile, bursty.workload(1, n=200), bursty.bandwidth(1), bursty.sim)
    sim.run(pol, 1)
    assert pol.ticks[:3] == [10.0, 20.0, 30.0]


_SHIFTED_RUN = r"""
import dataclasses, json, sys
from agents.registry import make_heuristic
from prfaas_gym.metrics import latencies
from prfaas_gym.request import Workload
from prfaas_gym.scenario import load_scenario
from prfaas_gym.simulator import Simulator
sc = load_scenario("mooncake-conversation")
w = sc.workload(0, n=200)
reqs = [dataclasses.replace(r, arrival_s=r.arrival_s + float(sys.argv[1])) for r in w.requests]
sim = Simulator(sc.profile, Workload.from_requests(reqs, name="shifted"), sc.bandwidth(0), sc.sim)
sim.run(make_heuristic("conductor"), 0)
print(json.dumps(latencies(sim.completed)[0].tolist()))
"""


@pytest.mark.parametrize("offset_s", [5e7, 1e9])
def test_a_workload_far_from_time_zero_runs_as_near_it(offset_s, shared_traces):
    # Far from 0 a double cannot resolve 1 ns: event times computed there must still move the
    # clock (a link flow and a decode step each used to re-fire forever). In a subprocess, so
    # that a hang in compiled code, which no signal interrupts, fails the test. The Mooncake
    # trace (shared_traces: skipped without it) is the workload that hung.
    import json
    import subprocess
    import sys

    import numpy as np

    def ttfts(offset: float) -> np.ndarray:
        try:
            p = subprocess.run([sys.executable, "-c", _SHIFTED_RUN, repr(offset)],
                               capture_output=True, text=True, timeout=120, check=True)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run shifted by {offset:g} s did not finish in 120 s")
        return np.asarray(json.loads(p.stdout))

    far, near = ttfts(offset_s), ttfts(0.0)
    assert len(far) == len(near) > 150
    np.testing.assert_allclose(far, near, rtol=0, atol=1e-5)


def test_prefix_cache_hits_cut_prefill_time():
    prof = load_profile("single-host")
    shared = tuple(range(40))
    reqs = [Request(0, 0.0, 40 * 64, 2, shared, 64), Request(1, 5.0, 40 * 64 + 10, 2,
                                                            shared + (99,), 64)]
    sim = Simulator(prof, Workload(reqs, block_size=64), config=SimConfig(telemetry_interval_s=0))
    jobs = []
    while (r := sim.next_request()) is not None:
        v = sim.view(r)
        jobs.append(sim.apply(r, Decision(Placement.LOCAL, prefill_instance=1)))
    sim.finish()
    assert v.prefix_hit_tokens[1] == 40 * 64
    assert jobs[1].hit_tokens == 40 * 64 and jobs[1].new_tokens == 10
    assert jobs[1].t_prefill_end - jobs[1].t_prefill_start < \
        jobs[0].t_prefill_end - jobs[0].t_prefill_start


def test_cache_copy_crosses_the_uplink():
    prof = load_profile("single-host")
    shared = tuple(range(40))
    reqs = [Request(0, 0.0, 40 * 64, 2, shared, 64), Request(1, 5.0, 40 * 64 + 10, 2,
                                                            shared + (99,), 64)]
    sim = Simulator(prof, Workload(reqs, block_size=64), config=SimConfig(telemetry_interval_s=0))
    r = sim.next_request()
    sim.apply(r, Decision(Placement.LOCAL, prefill_instance=1))
    r = sim.next_request()
    job = sim.apply(r, Decision(Placement.REMOTE, prefill_instance=0, copy_prefix_from=1))
    sim.finish()
    assert sim.copy_bytes[1] == pytest.approx(prof.model.kv_bytes(40 * 64))
    assert job.hit_tokens == 40 * 64
    assert sim.counts()["completed"] == 2


def test_role_switch_drains_then_changes_role():
    prof = load_profile("single-host").with_deployment(n_prefill=1, n_decode=2, switch_delay_s=3.0)
    reqs = [Request(i, 0.1 * i, 1000, 50) for i in range(20)]
    sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0.5))
    pol = make_heuristic("local-only")
    pol.reset(prof, 0)
    switched = []
    while (r := sim.next_request()) is not None:
        if r.id == 5:
            switched.append(sim.request_role_change(RoleChange(2, Role.PREFILL)))
        sim.apply(r, pol.decide(sim.request_info(r), sim.view(r)))
    sim.finish()
    assert switched == [True]
    assert sim.node_role[2] == Role.PREFILL and sim.n_role_switches == 1
    assert sim.counts()["completed"] == 20
    # the last decode node is never switched away
    assert not sim.request_role_change(RoleChange(1, Role.PREFILL))


def test_the_result_says_when_each_role_switch_landed_and_which_landed_in_the_drain():
    """A switch landing after the last arrival is counted as a switch and as one in the
    drain, so a policy that switches once the arrivals are over is told apart."""
    prof = load_profile("single-host").with_deployment(switch_delay_s=3.0)
    sim = Simulator(prof, Workload([Request(0, 0.0, 1000, 2), Request(1, 100.0, 1000, 2)]),
                    config=SimConfig(telemetry_interval_s=0))
    r = sim.next_request()
    assert sim.request_role_change(RoleChange(1, Role.PREFILL))  # an idle decode node
    sim.apply(r, Decision(Placement.LOCAL, prefill_instance=1))
    sim.apply(sim.next_request(), Decision(Placement.LOCAL, prefill_instance=1))
    assert sim.request_role_change(RoleChange(1, Role.DECODE))  # after the last arrival
    sim.finish()
    result = sim.result()
    assert result["role_switch_times_s"] == [pytest.approx(3.0), pytest.approx(103.0)]
    assert result["role_switches"] == 2 and result["role_switches_in_drain"] == 1
    assert result["slo_met"] == 2


def test_admission_control_rejects_long_waits():
    prof = load_profile("single-host")
    reqs = [Request(i, 0.0, 60000, 4) for i in range(20)]
    sim = Simulator(prof, Workload(reqs), config=SimConfig(admission_max_wait_s=5.0))
    res = sim.run(make_heuristic("least-loaded"))
    assert 0 < res["rejected"] < 20
    assert res["completed"] + res["rejected"] == 20


def test_conductor_rejects_under_overload(bursty):
    res, _ = run_policy(bursty, policy_factory("conductor", bursty)(), seed=0, n=600,
                        rate=3 * bursty.mean_rate())
    assert res["rejected"] > 0


def test_event_queue_pops_in_heapq_order():
    """The simulator's own heap orders events exactly as heapq orders (time, seq, ...)."""
    import heapq
    import random

    from prfaas_gym.simulator import _heap_pop, _heap_push

    rng = random.Random(3)
    mine: list = []
    ref: list = []
    seq = 0
    for _ in range(5000):
        if ref and rng.random() < 0.45:
            assert _heap_pop(mine) == heapq.heappop(ref)
        else:
            seq += 1
            e = (float(rng.randint(0, 50)), seq, rng.randint(0, 9), None)  # many equal times
            _heap_push(mine, e)
            heapq.heappush(ref, e)
    while ref:
        assert _heap_pop(mine) == heapq.heappop(ref)
    assert not mine


def _routed(profile, reqs, decisions, bw, cfg):
    sim = Simulator(profile, Workload(reqs), bw, cfg)
    for d in decisions:
        r = sim.next_request()
        sim.apply(r, d)
    return sim


@pytest.mark.parametrize("how", ["drain cut", "failed"])
def test_link_utilization_stays_at_most_one_when_bytes_cross_after_the_span(how):
    # A short local request ends the span at ~0.6 s while a long remote prefill's KV crosses
    # a 0.5 Gbps link: still crossing when max_drain_s stops the run (this gave 11.8), or
    # landing for a decode it cannot fit (its output is too long) and failing (19.0). Bytes
    # sent after the span must be set against the capacity of the same period.
    from prfaas_gym.bandwidth import BandwidthTrace
    prof = load_profile("paper-case-study")
    cut = how == "drain cut"
    cfg = SimConfig(telemetry_interval_s=0.0, record_timeseries=False,
                    max_drain_s=20.0 if cut else math.inf)
    bw = BandwidthTrace.constant(0.5)
    long = Request(1, 0.0, 131072, 2) if cut else Request(1, 0.0, 32768, 100_000_000)
    sim = _routed(prof, [Request(0, 0.0, 1024, 2), long],
                  [Decision(Placement.LOCAL, 4), Decision(Placement.REMOTE, 0)], bw, cfg)
    sim.finish()
    res = sim.result()
    assert res["in_flight" if cut else "failed"] == 1 and res["span_s"] < 1.0
    link = sim.links[0]
    assert res["link_bytes"] > 0
    assert res["link_utilization"] == pytest.approx(link.bytes_sent / bw.integral(0.0, link.t))
    assert res["link_utilization"] <= 1.0 + 1e-12


def test_a_link_that_never_carries_anything_is_refused():
    # KV sent over it would stay in flight forever, and finish() (unbounded drain) with it.
    from prfaas_gym.bandwidth import BandwidthTrace
    from prfaas_gym.errors import PrfaasInputError
    prof = load_profile("paper-case-study")
    w = Workload([Request(0, 0.0, 1024, 2)])
    with pytest.raises(PrfaasInputError, match="link's capacity is zero throughout"):
        Simulator(prof, w, BandwidthTrace.constant(0.0))
    with pytest.raises(PrfaasInputError, match="uplink's capacity is zero throughout"):
        Simulator(prof, w, BandwidthTrace.constant(1.0), uplink_bandwidth=BandwidthTrace.constant(0.0))
    homogeneous = dataclasses.replace(
        prof, deployment=dataclasses.replace(prof.deployment, n_prfaas=0))
    Simulator(homogeneous, w, BandwidthTrace.constant(0.0)).run(make_heuristic("local-only"))


def test_next_request_refuses_to_move_the_clock_back():
    prof = load_profile("paper-case-study")
    cfg = SimConfig(telemetry_interval_s=0.0, record_timeseries=False)
    sim = _routed(prof, [Request(0, 0.0, 131072, 2), Request(1, 1.0, 1024, 2)],
                  [Decision(Placement.REMOTE, 0)], None, cfg)
    sim.advance(50.0)
    assert sim.now == 50.0
    with pytest.raises(RuntimeError, match="request 1 arrives at t=1 s, before the simulator's clock"):
        sim.next_request()
    unsorted = Simulator(prof, Workload([Request(0, 2.0, 1024, 2), Request(1, 1.0, 1024, 2)]),
                         None, cfg)
    unsorted.apply(unsorted.next_request(), Decision(Placement.LOCAL, 4))
    with pytest.raises(RuntimeError, match="not sorted by arrival"):
        unsorted.next_request()


def _drive(sim: Simulator, decisions: dict[int, Decision]) -> list:
    """Route every request with ``decisions[id]``, drain, and return the jobs in order."""
    jobs = []
    while (r := sim.next_request()) is not None:
        jobs.append(sim.apply(r, decisions[r.id]))
    sim.finish()
    return jobs


def test_admission_control_measures_the_wait_not_the_busy_time() -> None:
    """A request is rejected only when its instance's queue wait (busy_until - now) exceeds
    admission_max_wait_s; a late arrival to an instance that was busy long ago is admitted."""
    prof = load_profile("single-host")
    cost = prof.local_hw.prefill
    long_s = cost.time(40000)  # 8.02 s on the local prefill instance (index 1)
    assert long_s == pytest.approx(8.02)
    reqs = [Request(0, 0.0, 40000, 2),  # starts at once: wait 0
            Request(1, 1.0, 1000, 2),  # wait 7.02 s > 5: rejected
            Request(2, 4.0, 1000, 2),  # wait 4.02 s <= 5: admitted, queued behind 0
            Request(3, 30.0, 1000, 2)]  # the instance is idle again: wait 0
    sim = Simulator(prof, Workload(reqs),
                    config=SimConfig(telemetry_interval_s=0, admission_max_wait_s=5.0))
    jobs = _drive(sim, {i: Decision(Placement.LOCAL, prefill_instance=1) for i in range(4)})
    assert [j.request.id for j in jobs if j.state == JobState.REJECTED] == [1]
    assert sim.counts()["completed"] == 3
    assert jobs[2].t_prefill_start == long_s  # queued FCFS behind request 0
    assert jobs[3].t_prefill_start == 30.0


def test_role_switch_waits_for_the_running_prefill_then_the_switch_delay() -> None:
    """A prefill node asked to become a decode node keeps running the prefill it has (it is
    unavailable to new prefills at once), starts switching when that prefill ends, and serves
    as a decode node exactly switch_delay_s later."""
    prof = load_profile("single-host").with_deployment(switch_delay_s=3.0)
    sim = Simulator(prof, Workload([Request(0, 0.0, 40000, 2)]),
                    config=SimConfig(telemetry_interval_s=0))
    job = sim.apply(sim.next_request(), Decision(Placement.LOCAL, prefill_instance=1))
    drain_end = job.t_prefill_end
    assert drain_end == pytest.approx(8.02)
    assert sim.request_role_change(RoleChange(0, Role.DECODE))
    assert sim.prefill_available == [True, False, False, False]  # remote, then nodes 0-2
    sim.advance(drain_end - 1e-6)
    assert sim.node_state[0] == NodeState.DRAINING
    sim.advance(drain_end)  # the running prefill ended: the switch starts
    assert sim.node_state[0] == NodeState.SWITCHING and sim.node_role[0] == Role.PREFILL
    sim.advance(drain_end + 3.0 - 1e-6)
    assert sim.node_state[0] == NodeState.SWITCHING and sim.n_role_switches == 0
    assert sim.decode_available == [False, True, True]
    sim.advance(drain_end + 3.0)
    assert sim.node_state[0] == NodeState.ACTIVE and sim.node_role[0] == Role.DECODE
    assert sim.n_role_switches == 1 and sim.decode_available == [True, True, True]
    sim.finish()
    assert sim.counts()["completed"] == 1


def test_the_only_prefill_node_is_never_switched_away_without_a_remote_cluster() -> None:
    """Homogeneous PD (no PrfaaS instance): the single local prefill node must stay, or
    every later request would be rejected; with a remote instance the switch is allowed."""
    homogeneous = load_profile("single-host").with_deployment(n_prfaas=0)
    sim = Simulator(homogeneous, Workload([Request(0, 0.0, 1000, 2)]),
                    config=SimConfig(telemetry_interval_s=0))
    assert not sim.request_role_change(RoleChange(0, Role.DECODE))
    assert sim.node_state[0] == NodeState.ACTIVE
    assert sim.prefill_available == [True, False, False]  # nodes 1-2 are decode nodes
    with_remote = Simulator(load_profile("single-host"), Workload([Request(0, 0.0, 1000, 2)]),
                            config=SimConfig(telemetry_interval_s=0))
    assert with_remote.request_role_change(RoleChange(0, Role.DECODE))


def test_a_decision_naming_a_draining_prefill_node_is_redirected() -> None:
    """A router's stale pick of a local prefill node that has started switching role is
    replaced by the least-busy available node of the same cluster."""
    prof = load_profile("single-host").with_deployment(n_prefill=2, n_decode=2)
    reqs = [Request(0, 0.0, 40000, 2), Request(1, 1.0, 1000, 2)]
    sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0))
    first = sim.apply(sim.next_request(), Decision(Placement.LOCAL, prefill_instance=1))
    assert sim.request_role_change(RoleChange(0, Role.DECODE))  # node 0 = prefill index 1
    r = sim.next_request()
    job = sim.apply(r, Decision(Placement.LOCAL, prefill_instance=1))
    assert job.prefill_idx == 2 and job.placement == Placement.LOCAL
    assert job.t_prefill_start == 1.0  # not queued behind the draining node's prefill
    assert first.t_prefill_end == pytest.approx(8.02)
    sim.finish()
    assert sim.counts()["completed"] == 2


def test_kv_pinned_to_a_switching_decode_node_goes_to_the_least_loaded_one() -> None:
    """A decision's decode node that began switching to prefill before the KV landed is
    overridden: the KV joins an available decode node instead."""
    prof = load_profile("single-host")  # decode nodes 1 and 2
    sim = Simulator(prof, Workload([Request(0, 0.0, 1000, 2)]),
                    config=SimConfig(telemetry_interval_s=0))
    job = sim.apply(sim.next_request(), Decision(Placement.LOCAL, prefill_instance=1,
                                                 decode_instance=1))
    assert sim.request_role_change(RoleChange(1, Role.PREFILL))  # idle: switches at once
    assert sim.decode_available == [False, False, True]
    sim.finish()
    assert job.decode_idx == 2 and job.state == JobState.DONE
    assert sim.decode[1].tokens_out == 0


def test_the_decode_balancer_counts_waiting_requests() -> None:
    """With one batch slot per decode node, a node with a request waiting for its slot is
    busier than one without, even when its running request holds less KV."""
    prof = load_profile("single-host")
    slow = prof.hardware["slow"]
    one_slot = dataclasses.replace(slow, decode=dataclasses.replace(slow.decode, max_batch=1))
    prof = dataclasses.replace(prof, hardware={**prof.hardware, "slow": one_slot})
    reqs = [Request(0, 0.0, 1000, 1000),  # runs on node 1 (little KV)
            Request(1, 0.0, 8000, 1000),  # runs on node 2 (more KV)
            Request(2, 0.0, 1000, 2),  # waits on node 1 for its only slot
            Request(3, 0.0, 1000, 2)]  # the balancer's pick
    sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0))
    decode = {0: 1, 1: 2, 2: 1, 3: None}
    jobs = _drive(sim, {i: Decision(Placement.LOCAL, prefill_instance=1, decode_instance=d)
                        for i, d in decode.items()})
    assert jobs[3].t_kv_arrival < min(jobs[0].t_done, jobs[1].t_done)  # both still running
    assert jobs[2].t_first_token == jobs[0].t_done  # it did wait for node 1's slot
    assert [j.decode_idx for j in jobs] == [1, 2, 1, 2]


def test_cross_cluster_prefix_copy_arrives_one_rtt_after_its_bytes() -> None:
    """A prefix copied local -> remote over the uplink lands bytes/rate + RTT after the
    decision; the remote prefill starts then, not earlier."""
    prof = load_profile("single-host").with_link(rtt_s=0.05)
    shared = tuple(range(40))
    reqs = [Request(0, 0.0, 40 * 64, 2, shared, 64),
            Request(1, 5.0, 40 * 64 + 10, 2, shared + (99,), 64)]
    sim = Simulator(prof, Workload(reqs, block_size=64), config=SimConfig(telemetry_interval_s=0))
    jobs = _drive(sim, {0: Decision(Placement.LOCAL, prefill_instance=1),
                        1: Decision(Placement.REMOTE, prefill_instance=0, copy_prefix_from=1)})
    copy_bytes = prof.model.kv_bytes(40 * 64)
    rate = 10.0 * 1e9 / 8  # the uplink is the 10 Gbps link
    assert sim.copy_bytes[1] == copy_bytes
    assert jobs[1].t_prefill_start == pytest.approx(5.0 + copy_bytes / rate + 0.05, rel=1e-12)
    assert jobs[1].hit_tokens == 40 * 64 and jobs[1].new_tokens == 10


def test_a_remote_prefill_stream_leaves_the_link_beyond_its_production_rate_to_others() -> None:
    """A long remote prefill's KV is produced layer by layer, so its stream is capped at
    body / prefill time; a concurrent short request's KV gets the rest of the link."""
    prof = load_profile("single-host").with_deployment(n_prfaas=2)
    reqs = [Request(0, 0.0, 60000, 2), Request(1, 0.0, 1000, 2)]
    sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0))
    jobs = _drive(sim, {0: Decision(Placement.REMOTE, prefill_instance=0),
                        1: Decision(Placement.REMOTE, prefill_instance=1)})
    rate = 10.0 * 1e9 / 8
    long_kv, short_kv = prof.model.kv_bytes(60000), prof.model.kv_bytes(1000)
    cap = long_kv * (1 - 1 / prof.model.layers) / prof.prfaas_hw.prefill.time(60000)
    assert cap < rate / 2  # the long stream is production-bound
    short_rate = rate - cap
    assert short_kv * (1 - 1 / prof.model.layers) / short_rate > jobs[1].t_prefill_end
    assert jobs[1].t_kv_arrival == pytest.approx(short_kv / short_rate + 0.01, rel=1e-12)


_ZERO_TIME_PREFILL_RUN = r"""
import dataclasses, json, sys
from prfaas_gym.contract import Decision, Placement
from prfaas_gym.profile import PrefillCost, load_profile
from prfaas_gym.request import Request, Workload
from prfaas_gym.simulator import SimConfig, Simulator
off = float(sys.argv[1])
prof = load_profile("single-host")
free = PrefillCost(tokens=(0.0, 1000.0, 2000.0), seconds=(0.0, 0.0, 1.0))  # 0 s up to 1000
fast = prof.hardware["fast"]
prof = dataclasses.replace(prof, hardware={**prof.hardware,
                                           "fast": dataclasses.replace(fast, prefill=free)})
reqs = [Request(0, off, 500, 2), Request(1, off + 1.0, 1500, 2),
        Request(2, off + 1.1, 500, 2), Request(3, off + 1.1, 1, 2)]
sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0))
jobs = []
while (r := sim.next_request()) is not None:
    jobs.append(sim.apply(r, Decision(Placement.REMOTE, prefill_instance=0)))
sim.finish()
assert sim.counts()["completed"] == 4, sim.counts()
print(json.dumps([[j.t_prefill_start - off, j.t_prefill_end - off, j.t_kv_arrival - off]
                  for j in jobs]))
"""


@pytest.mark.parametrize("offset_s", [0.0, 5e7])
def test_zero_time_remote_prefills_deliver_their_kv_near_and_far_from_time_zero(
        offset_s: float) -> None:
    """A profile may give a prefill time of 0 (a table at 0 s): its KV stream is uncapped
    but holds its last layer until the prefill ends at the same instant. Such requests, alone,
    queued behind a longer prefill, or of one token, complete with the timeline the link
    gives, also far from time 0 (in a subprocess: a hang in compiled code ignores signals)."""
    import json
    import subprocess
    import sys

    try:
        p = subprocess.run([sys.executable, "-c", _ZERO_TIME_PREFILL_RUN, repr(offset_s)],
                           capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the zero-time prefills at t={offset_s:g} s did not finish in 60 s")
    timeline = json.loads(p.stdout)
    prof = load_profile("single-host")
    rate, layers = 10.0 * 1e9 / 8, prof.model.layers
    kv0, kv1, kv3 = (prof.model.kv_bytes(n) for n in (500, 1500, 1))
    tail1 = kv1 / layers  # request 1's last layer, held until its prefill ends at 1.5 s
    tol = 1e-5 if offset_s else 1e-12
    assert timeline[0] == pytest.approx([0.0, 0.0, kv0 / rate + 0.01], abs=tol)
    # at 1.5 s request 1's tail and requests 2 and 3 (0 s prefills queued behind it, all of
    # their KV) share the link three ways; the tail leaves first, then the one-token KV
    assert timeline[1] == pytest.approx([1.0, 1.5, 1.5 + 3 * tail1 / rate + 0.01], abs=tol)
    assert timeline[3] == pytest.approx([1.5, 1.5, 1.5 + (tail1 + 2 * kv3) / rate + 0.01],
                                        abs=tol)
    assert timeline[2] == pytest.approx([1.5, 1.5, 1.5 + (tail1 + kv3 + kv0) / rate + 0.01],
                                        abs=tol)


def test_a_dipping_prefill_table_is_refused() -> None:
    """A measured prefill table with a dip (2.0 s at 8192 tokens, 1.9 s at 16384) would make
    a prefill on top of a cached prefix take T(16384) - T(8192) + T(0) = -0.1 s: a remote one
    queued behind another then crashed the simulator (its prefill ended before it started).
    The table is refused when loaded, naming the dip."""
    from prfaas_gym.errors import PrfaasInputError
    from prfaas_gym.profile import PrefillCost

    with pytest.raises(PrfaasInputError, match=r"never decrease: 1\.9 s at 16384 tokens < 2 s"):
        PrefillCost(tokens=(0.0, 8192.0, 16384.0), seconds=(0.0, 2.0, 1.9))
    PrefillCost(tokens=(0.0, 8192.0, 16384.0), seconds=(0.0, 2.0, 2.0))  # flat is fine


def test_recent_latency_telemetry_is_what_its_names_say() -> None:
    """The view's recent-window figures a router (and the featurizer) reads: the P90 TTFT
    (nearest rank, over the last 64 first tokens), the mean TPOT and the SLO attainment of
    the last 64 completions. With fewer than 64 requests the window holds them all."""
    from agents.heuristics import Conductor

    sc = load_scenario("bursty-fluctuating")
    sim = Simulator(sc.profile, sc.workload(3, n=40), sc.bandwidth(3),
                    dataclasses.replace(sc.sim, telemetry_interval_s=0))
    pol = Conductor()
    pol.reset(sc.profile, 0)
    while (r := sim.next_request()) is not None:
        sim.apply(r, pol.decide(sim.request_info(r), sim.view(r)))
    sim.finish()
    done = sim.completed
    assert 20 <= len(done) < 64
    slo = sc.profile.slo
    ttft = sorted(j.t_first_token - j.request.arrival_s for j in done)
    tpot = [(j.t_done - j.t_first_token) / (j.output_tokens - 1) for j in done]
    met = [t0 <= slo.ttft_s and t1 <= slo.tpot_s
           for t0, t1 in zip((j.t_first_token - j.request.arrival_s for j in done), tpot)]
    v = sim.view(None)
    assert v.ttft_p90_s == ttft[(len(ttft) * 9) // 10]
    assert ttft[(len(ttft) * 9) // 10] > ttft[len(ttft) // 2]  # a P50 would read lower
    assert v.tpot_mean_s == pytest.approx(sum(tpot) / len(tpot), rel=1e-12)
    assert v.slo_attainment == pytest.approx(sum(met) / len(met), rel=1e-12)
