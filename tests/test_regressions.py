"""Regression tests for bugs found in review."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from prfaas_gym.contract import Decision, Placement
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import DecodeCost, load_profile
from prfaas_gym.request import Request, Workload
from prfaas_gym.simulator import SimConfig, Simulator


def _shared_prefix_workload(block: int) -> Workload:
    shared = tuple(range(8))
    reqs = [Request(0, 0.0, 8 * block, 2, shared, block),
            Request(1, 5.0, 8 * block + 10, 2, shared + (99,), block)]
    return Workload(reqs, block_size=block)


@pytest.mark.parametrize("block", [64, 512])
def test_cache_blocks_follow_the_workload_not_the_profile(block):
    """single-host's model block is 64 tokens; a 512-token-hash workload still hits fully."""
    prof = load_profile("single-host")
    sim = Simulator(prof, _shared_prefix_workload(block), config=SimConfig(telemetry_interval_s=0))
    jobs = []
    while (r := sim.next_request()) is not None:
        jobs.append(sim.apply(r, Decision(Placement.LOCAL, prefill_instance=1)))
    sim.finish()
    assert jobs[1].hit_tokens == 8 * block


def test_env_return_is_slo_fraction_when_the_split_is_shorter_than_an_episode(
        shared_traces, monkeypatch):
    from agents.evaluation import heuristic_chooser, run_episodes
    from agents.heuristics import Conductor
    from prfaas_gym.scenario import load_scenario

    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))
    sc = load_scenario("mooncake-conversation")
    n_eval = len(sc.split_trace("eval"))
    m = run_episodes(sc, heuristic_chooser(Conductor()), [0], split="eval",
                     episode_requests=n_eval + 1000)[0]
    assert m["requests"] == n_eval
    assert m["return"] == pytest.approx(m["slo_met"] / n_eval)


def test_decode_admits_a_request_needing_exactly_the_capacity_after_others_leave():
    from prfaas_gym.decode import DecodeInstance
    from prfaas_gym.simulator import Job

    def J(need, out):
        job = Job(Request(0, 0.0, 10, out))
        job.decode_kv_bytes = need
        return job

    inst = DecodeInstance(0, DecodeCost(step_base_s=0.01, max_batch=4), kv_capacity_bytes=0.4)
    a, b, c = J(0.1, 3), J(0.3, 5), J(0.4, 2)
    done, joined = [], []
    inst.arrive(a, 0.0)
    inst.arrive(b, 0.0)
    inst.reschedule(0.0)
    inst.on_boundary(0.0, done, joined)
    inst.arrive(c, 0.001)
    t = inst.reschedule(0.001)
    for _ in range(20):
        inst.on_boundary(t, done, joined)
        t = inst.reschedule(t)
        if c in done:
            break
    assert c in done and c.t_first_token == pytest.approx(0.04)


def test_view_does_not_reveal_output_lengths_of_running_requests():
    prof = load_profile("single-host")
    views = []
    for out in (100, 500):  # both still decoding when the second request arrives
        reqs = [Request(0, 0.0, 1000, out), Request(1, 0.3, 1000, 7)]
        sim = Simulator(prof, Workload(reqs), config=SimConfig(telemetry_interval_s=0))
        sim.apply(sim.next_request(), Decision(Placement.LOCAL))
        r = sim.next_request()
        views.append(sim.view(r))
    assert sum(views[0].decode_running) == 1
    assert views[0].decode_kv_used_bytes == views[1].decode_kv_used_bytes


def test_masked_argmax_never_picks_nan():
    from agents.learned import masked_argmax

    best = (0, 1.0, 1, 1.0, -1, -1)
    assert masked_argmax(np.array([1.0, 0.0, np.nan]), best) == 0
    assert masked_argmax(np.array([np.nan, np.nan, 0.0]), best) == 2


def test_randomised_cluster_without_a_prefill_or_decode_node_is_refused(tmp_path):
    from prfaas_gym.scenario import load_scenario, scenario_dir

    d = yaml.safe_load((scenario_dir() / "bursty-fluctuating.yaml").read_text())
    d["randomize"] = {"n_local": [1, 3]}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(PrfaasInputError, match="randomize.n_local"):
        load_scenario(p)


def test_invalid_activation_is_a_clear_error(tmp_path):
    from agents.train import load_hyperparams

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"PrfaasRoute-v0": {"policy_kwargs": {"activation_fn": "gelu"}}}))
    with pytest.raises(PrfaasInputError, match="activation_fn"):
        load_hyperparams("ppo", "bursty-fluctuating", bad)


def test_out_of_range_action_is_an_error():
    from prfaas_gym.actions import action_to_decision

    with pytest.raises(ValueError, match="Discrete"):
        action_to_decision(3, (0, 1.0, 1, 1.0, -1, -1))


def test_link_backlog_counts_only_produced_bytes():
    from prfaas_gym.bandwidth import BandwidthTrace
    from prfaas_gym.link import Link

    link = Link(BandwidthTrace.constant(80.0), rtt_s=0.0)  # 1e10 B/s, far above production
    link.add_flow(0.0, 1e9, "kv", cap=0.09e9, held_bytes=0.1e9)  # 0.9e9 body over 10 s
    link.advance(5.0)
    assert link.bytes_queued == pytest.approx(0.55e9)  # unsent body + held tail
    assert link.backlog_bytes() == pytest.approx(0.0, abs=1.0)  # the link keeps up
