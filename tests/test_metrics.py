"""The result schema: latency summaries, and goodput, TPOT, SLO attainment and span by their
definitions on a run worked out by hand."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from prfaas_gym.bandwidth import BandwidthTrace
from prfaas_gym.contract import Decision, Placement
from prfaas_gym.metrics import distribution, latencies
from prfaas_gym.profile import Slo, load_profile
from prfaas_gym.request import Request, Workload
from prfaas_gym.simulator import SimConfig, Simulator


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 101, 256, 1000])
def test_percentiles_are_numpys_bit_for_bit(n):
    rng = np.random.default_rng(n)
    samples = [rng.lognormal(0.0, 2.0, n), rng.uniform(-5.0, 5.0, n),
               rng.integers(0, 4, n).astype(float), np.round(rng.exponential(3.0, n), 2)]
    for a in samples:
        d = distribution(a)
        assert [d["p50"], d["p90"], d["p99"]] == np.percentile(a, [50, 90, 99]).tolist()
        assert d["mean"] == float(np.mean(a))


def test_empty_and_nan_samples():
    assert distribution([]) == {"mean": None, "p50": None, "p90": None, "p99": None}
    d = distribution([1.0, float("nan"), 2.0])
    assert all(math.isnan(d[k]) for k in ("mean", "p50", "p90", "p99"))


# ---------------------------------------------------------------------------------------------
# The result schema's definitions (module docstring of prfaas_gym.metrics), checked against
# values worked out by hand on a tiny single-host run.

# single-host.yaml, local ("slow") hardware: prefill T(n) = 0.02 + 1.2e-4 n + 2e-9 n^2; decode
# step = 0.010 + 0.0003 b + 2e-8 C; RDMA 200 Gbps (25e9 B/s) + 0.1 ms; 32 layers; KV bytes of
# n tokens = (8 + 0.0625 n) MiB.
_MIB = 1024 * 1024
_RDMA_BPS = 200e9 / 8


def _local_ttft(prompt: int) -> float:
    """A lone local request's TTFT: its prefill, the last layer's KV over RDMA, the RDMA
    latency; it joins an idle decode batch at once (the first token)."""
    prefill = 0.02 + 1.2e-4 * prompt + 2e-9 * prompt ** 2
    return prefill + (8 + 0.0625 * prompt) * _MIB / 32 / _RDMA_BPS + 1e-4


def _lone_tpot(prompt: int, output: int) -> float:
    """A lone request's TPOT: ``output - 1`` decode steps of batch 1, context prompt + 1 + k
    at step k, averaged over the ``output - 1`` steps (not ``output``)."""
    steps = output - 1
    return sum(0.010 + 0.0003 + 2e-8 * (prompt + 1 + k) for k in range(steps)) / steps


# The TPOT SLO lies between the two completions' TPOTs (0.01032011 and 0.01038011 s): the first
# meets it, the second misses it (and would meet it with TPOT over ``output`` tokens).
_TPOT_SLO = 0.01035


def _hand_run() -> Simulator:
    """Four requests: two served locally one after the other (each alone on a decode
    instance, both within the TTFT SLO, only the first within the TPOT SLO), then two
    rejected, the last at t=10 s, long after the last completion (t~1.64 s)."""
    base = load_profile("single-host")
    prof = dataclasses.replace(base, slo=Slo(ttft_s=2.0, tpot_s=_TPOT_SLO))
    reqs = [Request(0, 0.0, 1000, 11), Request(1, 1.0, 4000, 11),
            Request(2, 2.0, 500, 5), Request(3, 10.0, 500, 5)]
    sim = Simulator(prof, Workload(reqs), BandwidthTrace.constant(10.0),
                    SimConfig(telemetry_interval_s=0))
    for d in (Decision(Placement.LOCAL, 1), Decision(Placement.LOCAL, 1),
              Decision(Placement.REJECT), Decision(Placement.REJECT)):
        r = sim.next_request()
        assert r is not None
        sim.apply(r, d)
    sim.finish()
    return sim


def test_hand_run_timeline_matches_the_documented_model() -> None:
    """The per-request times the metrics are computed from: TTFT = first token - arrival,
    TPOT = (last token - first token) / (output - 1)."""
    sim = _hand_run()
    done = sim.completed
    assert [j.request.id for j in done] == [0, 1]
    for j, arrival, prompt in zip(done, (0.0, 1.0), (1000, 4000)):
        assert j.t_first_token - arrival == pytest.approx(_local_ttft(prompt), rel=1e-12)
        assert (j.t_done - j.t_first_token) / 10 == pytest.approx(_lone_tpot(prompt, 11), rel=1e-12)
    assert _lone_tpot(1000, 11) == pytest.approx(0.01032011, rel=1e-12)
    assert _lone_tpot(4000, 11) == pytest.approx(0.01038011, rel=1e-12)


def test_summary_counts_goodput_attainment_and_span_by_definition() -> None:
    """The result dict a user reads: TPOT over ``output - 1`` steps; goodput counts only
    SLO-meeting completions per second of span; attainment = SLO-meeting completions / all
    requests (rejections are misses); the span runs from the first arrival to the later of the
    last arrival and the last completion."""
    res = _hand_run().result()
    assert (res["requests"], res["completed"], res["rejected"], res["failed"],
            res["in_flight"]) == (4, 2, 2, 0, 0)
    t0, t1 = _lone_tpot(1000, 11), _lone_tpot(4000, 11)
    assert res["tpot_s"]["mean"] == pytest.approx((t0 + t1) / 2, rel=1e-12)
    assert res["tpot_s"]["p50"] == pytest.approx((t0 + t1) / 2, rel=1e-12)
    assert res["tpot_s"]["p90"] == pytest.approx(t0 + 0.9 * (t1 - t0), rel=1e-12)
    ttft0, ttft1 = _local_ttft(1000), _local_ttft(4000)
    assert res["ttft_s"]["mean"] == pytest.approx((ttft0 + ttft1) / 2, rel=1e-12)
    assert res["slo_met"] == 1  # request 1 misses the TPOT SLO
    assert res["span_s"] == 10.0  # the last (rejected) arrival, not the last completion
    assert res["goodput_rps"] == 1 / 10.0
    assert res["throughput_rps"] == 2 / 10.0
    assert res["slo_attainment"] == 1 / 4
    assert res["output_tokens_per_s"] == 22 / 10.0


def test_simulator_counts_slo_misses_with_tpot_over_output_minus_one() -> None:
    """The simulator's own per-request TPOT (what the env's reward and the routers' recent
    ``tpot_mean_s`` telemetry read) is (last - first token) / (output - 1), as in metrics."""
    sim = _hand_run()
    assert sim.n_ttft_met == 2
    assert sim.n_slo_met == 1 == sim.result()["slo_met"]
    assert sim.n_tpot_missed == 1
    expected = sum((j.t_done - j.t_first_token) / (j.output_tokens - 1) for j in sim.completed) / 2
    assert expected == pytest.approx((_lone_tpot(1000, 11) + _lone_tpot(4000, 11)) / 2, rel=1e-12)
    assert sim.view(None).tpot_mean_s == pytest.approx(expected, rel=1e-12)


def test_latencies_of_hand_built_records() -> None:
    """``latencies`` on records built by hand: TTFT = first token - arrival; TPOT = (last -
    first token) / (output - 1), and 0 for a one-token output."""
    def job(arrival: float, first: float, done: float, output: int) -> SimpleNamespace:
        return SimpleNamespace(request=SimpleNamespace(arrival_s=arrival), t_first_token=first,
                               t_done=done, output_tokens=output)

    ttft, tpot = latencies([job(1.0, 1.5, 3.5, 5), job(2.0, 2.25, 2.25, 1),
                            job(0.0, 0.5, 1.5, 2)])
    assert ttft.tolist() == [0.5, 0.25, 0.5]
    assert tpot.tolist() == [0.5, 0.0, 1.0]


def test_local_kv_over_slow_rdma_lands_when_the_whole_stream_has_crossed() -> None:
    """When RDMA is slower than the prefill produces KV, a local request's first token waits
    for the whole KV stream (from the prefill's start), not for the prefill plus its last
    layer: TTFT = max(prefill + KV / layers / rate, KV / rate) + latency."""
    prof = load_profile("single-host").with_deployment(rdma_gbps=1.0)
    sim = Simulator(prof, Workload([Request(0, 0.0, 4000, 2)]), BandwidthTrace.constant(10.0),
                    SimConfig(telemetry_interval_s=0))
    r = sim.next_request()
    assert r is not None
    sim.apply(r, Decision(Placement.LOCAL, 0))
    sim.finish()
    kv_bytes = (8 + 0.0625 * 4000) * _MIB
    prefill = 0.02 + 1.2e-4 * 4000 + 2e-9 * 4000 ** 2
    stream = kv_bytes / (1e9 / 8)
    assert stream > prefill + kv_bytes / 32 / (1e9 / 8)  # the stream, not the prefill, binds
    [job] = sim.completed
    assert job.t_first_token == pytest.approx(stream + 1e-4, rel=1e-12)


def test_json_safe_makes_any_result_strict_json():
    from prfaas_gym.metrics import json_safe

    raw = {"a": float("nan"), "b": [np.float64("inf"), np.int64(3), (1.5, -np.inf)],
           "c": {"d": np.array([1.0, np.nan])}, "e": "text", "f": None}
    safe = json_safe(raw)
    assert safe == {"a": None, "b": [None, 3, [1.5, None]], "c": {"d": [1.0, None]},
                    "e": "text", "f": None}
    assert type(safe["b"][1]) is int
    json.dumps(safe, allow_nan=False)


def test_prefix_hit_rate_counts_only_requests_that_reached_a_prefill() -> None:
    """A rejected request looks no prefix up: its prompt must not dilute the hit rate (it
    did, so a policy that rejected more reported a lower hit rate for the same reuse)."""
    from agents.heuristics import Conductor
    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")
    sim = Simulator(sc.profile, sc.workload(0, n=1500), sc.bandwidth(0), sc.sim)
    sim.run(Conductor(), 0)
    res = sim.result()
    routed = [j for j in sim.jobs if j.prefill_idx >= 0]
    assert res["rejected"] > 0 and len(routed) < len(sim.jobs)
    hits = sum(j.hit_tokens for j in routed)
    assert hits > 0
    assert res["prefix_hit_rate"] == pytest.approx(
        hits / sum(j.request.prompt_tokens for j in routed), rel=1e-12)
