"""Tests of the steady-state planner against the PrfaaS paper's Table 6 (case study)."""

from __future__ import annotations

import dataclasses
import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.planner import (
    PAPER_WORKLOAD,
    PlanResult,
    best_threshold,
    incremental_lengths,
    lambda_curve,
    paper_lengths,
    plan,
    plan_for_paper,
    prefill_time_vec,
    throughput,
    truncated_lognormal_quantiles,
)
from prfaas_gym.profile import DecodeCost, load_profile
from prfaas_gym.request import Request, Workload

# Table 6 of the paper: (Λ_max, mean TTFT, P90 TTFT)
TABLE6 = {
    "prfaas": (3.24, 2.22, 3.51),
    "homogeneous": (2.11, 4.44, 9.73),
    "naive": (2.45, 1.74, 3.51),
}
PAPER_T = 19_400.0
# Λ(t) at split 3/5 (derived from the paper's figure); K = 1000 tokens.
CURVE_T = [5_000, 10_000, 15_000, 19_400, 25_000, 30_000, 40_000]
CURVE_L = [2.57, 2.75, 2.95, 3.18, 2.35, 1.90, 1.43]


@pytest.fixture(scope="module")
def profile():
    return load_profile("paper-case-study")


@pytest.fixture(scope="module")
def lengths():
    return paper_lengths()


@pytest.fixture(scope="module")
def result(profile):
    return plan_for_paper(profile)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------------------ Table 6

@pytest.mark.parametrize("config", ["prfaas", "homogeneous", "naive"])
def test_table6_lambda_max(result, config):
    assert rel(result[config].lambda_max, TABLE6[config][0]) <= 0.03


def test_table6_ratio_to_homogeneous(result):
    ratio = result["prfaas"].lambda_max / result["homogeneous"].lambda_max
    assert 1.45 <= ratio <= 1.60  # paper: 1.54x
    assert result["naive"].lambda_max > result["homogeneous"].lambda_max


def test_table6_threshold(result):
    t = result["prfaas"].threshold_tokens
    assert t is not None
    assert rel(t, PAPER_T) <= 0.10
    # the model lands between 19.4K (K = 1000) and 19.4K (K = 1024) = 19,866 tokens
    assert 19_000 <= t <= 20_300
    # about half the requests are offloaded, E[L | L > t] about 44K (paper: 49.6%, ~44K)
    assert abs(result["prfaas"].offload_fraction - 0.496) <= 0.02
    assert rel(result["prfaas"].l_long, 44_000) <= 0.05


def test_table6_splits(result):
    r = result["prfaas"]
    assert (r.n_prfaas, r.n_prefill, r.n_decode) == (4, 3, 5)
    r = result["homogeneous"]
    assert (r.n_prfaas, r.n_prefill, r.n_decode) == (0, 9, 3)
    assert r.threshold_tokens is None and r.theta_prfaas is None
    r = result["naive"]
    assert (r.n_prfaas, r.n_prefill, r.n_decode) == (4, 0, 8)
    assert r.threshold_tokens is None and r.theta_pdp is None
    assert r.offload_fraction == 1.0


def test_table6_thetas(result):
    r = result["prfaas"]
    assert rel(r.theta_prfaas, 1.61) <= 0.03
    assert rel(r.theta_pdp, 1.64) <= 0.03
    assert r.theta_pdd == pytest.approx(5 * 20 / (0.025 * 1024))  # 3.906 (paper 3.91)
    assert rel(result["homogeneous"].theta_pdd, 2.35) <= 0.01
    assert result["naive"].theta_pdd == pytest.approx(6.25)
    # at the optimum the two producers saturate together
    p = r.offload_fraction
    assert rel(r.theta_prfaas / p, r.theta_pdp / (1 - p)) <= 0.02


@pytest.mark.parametrize("config", ["prfaas", "homogeneous", "naive"])
def test_table6_ttft(result, config):
    _, mean, p90 = TABLE6[config]
    assert rel(result[config].ttft_mean_s, mean) <= 0.05
    assert rel(result[config].ttft_p90_s, p90) <= 0.05


def test_link_is_not_the_bottleneck_in_the_case_study(result):
    r = result["prfaas"]
    assert r.bottleneck == "prfaas-compute"
    assert 8.0 <= r.link_gbps_at_lambda_max <= 16.0  # paper: about 13 Gbps of 100
    assert result["homogeneous"].link_gbps_at_lambda_max == 0.0


# ------------------------------------------------------------------------------------ Λ(t)

def test_lambda_curve_matches_paper(profile, lengths):
    got = lambda_curve(profile, lengths, None, 1024.0, CURVE_T, 3, 5)
    assert got.shape == (len(CURVE_T),)
    for g, want in zip(got, CURVE_L, strict=True):
        assert rel(g, want) <= 0.10


def test_lambda_curve_is_sharp(profile, lengths, result):
    best = result["prfaas"]
    lam = lambda_curve(profile, lengths, None, 1024.0, [30_000, 40_000], 3, 5)
    assert lam[0] < 0.65 * best.lambda_max
    assert lam[1] < 0.50 * best.lambda_max
    fine = np.arange(0.0, 131_072.0 + 1, 64.0)
    curve = lambda_curve(profile, lengths, None, 1024.0, fine, 3, 5)
    assert curve.max() <= best.lambda_max * (1 + 1e-12)
    assert abs(fine[np.argmax(curve)] - best.threshold_tokens) <= 512


def test_best_threshold_agrees_with_plan(profile, lengths, result):
    t, lam = best_threshold(profile, lengths, None, 1024.0, 4, 3, 5)
    assert t == result["prfaas"].threshold_tokens
    assert lam == result["prfaas"].lambda_max


# ------------------------------------------------------------------------------------ sanity

def test_adding_prfaas_instances_never_lowers_lambda(profile, lengths):
    prev = -1.0
    for n in range(1, 10):
        lam = plan(profile.with_deployment(n_prfaas=n), lengths)["prfaas"].lambda_max
        assert lam >= prev - 1e-12
        prev = lam


def test_link_bound(profile, lengths):
    tiny = profile.with_link(capacity_gbps=1.0)
    b_out = 1.0e9 / 8
    out = throughput(tiny, lengths, None, 1024.0, PAPER_T, 4, 3, 5)
    assert out["bottleneck"] == "prfaas-link"
    assert out["theta_prfaas"] == pytest.approx(b_out / tiny.model.kv_bytes(out["l_long"]),
                                                rel=1e-12)
    assert out["theta_prfaas"] < out["theta_prfaas_compute"]
    assert out["lambda_max"] == pytest.approx(out["theta_prfaas"] / out["p"], rel=1e-12)
    r = plan(tiny, lengths)["prfaas"]
    assert r.theta_prfaas == pytest.approx(b_out / tiny.model.kv_bytes(r.l_long), rel=1e-12)
    # the optimum offloads less, and never uses more egress than the link has
    assert r.offload_fraction < 0.2
    assert r.link_gbps_at_lambda_max <= 1.0 * (1 + 1e-9)


def test_throughput_edges(profile, lengths):
    mean = float(np.mean(lengths))
    local = throughput(profile, lengths, None, 1024.0, math.inf, 4, 3, 5)
    assert local["p"] == 0.0 and local["l_long"] is None and local["theta_prfaas"] is None
    assert local["theta_pdp"] == pytest.approx(3 / profile.local_hw.prefill.time(mean))
    remote = throughput(profile, lengths, None, 1024.0, None, 4, 0, 8)
    assert remote["p"] == 1.0 and remote["l_short"] is None
    assert remote["lambda_max"] == pytest.approx(4 / profile.prfaas_hw.prefill.time(mean))
    assert remote["t_dec_s"] == 0.025
    homog = throughput(profile, lengths, None, 1024.0, None, 0, 9, 3)
    assert homog["p"] == 0.0
    with pytest.raises(PrfaasInputError):
        throughput(profile, lengths, None, 1024.0, None, 4, 3, 5)


def test_decode_context_term(profile, lengths):
    """T_dec is the full-batch step time at the mean context E[L] + L_out / 2."""
    hw = profile.local_hw
    dc = DecodeCost(step_base_s=0.02, step_per_seq_s=0.0001, step_per_ctx_token_s=1e-9,
                    max_batch=20)
    prof = dataclasses.replace(
        profile, hardware={**profile.hardware,
                           hw.name: dataclasses.replace(hw, decode=dc)})
    out = throughput(prof, lengths, None, 1024.0, PAPER_T, 4, 3, 5)
    ctx = 20 * (float(np.mean(lengths)) + 512.0)
    t_dec = 0.02 + 0.0001 * 20 + 1e-9 * ctx
    assert out["t_dec_s"] == pytest.approx(t_dec)
    assert out["theta_pdd"] == pytest.approx(5 * 20 / (t_dec * 1024.0))


def test_weights_equal_duplication(profile):
    rng = np.random.default_rng(0)
    base = rng.integers(200, 100_000, size=300).astype(float)
    w = rng.integers(1, 4, size=300).astype(float)
    a = plan(profile, base, w)
    b = plan(profile, np.repeat(base, w.astype(int)))
    for k in a:
        da, db = a[k].to_dict(), b[k].to_dict()
        for key in da:
            if isinstance(da[key], float):
                assert da[key] == pytest.approx(db[key], rel=1e-9), (k, key)
            else:
                assert da[key] == db[key], (k, key)


def test_tie_prefers_smaller_threshold(profile):
    lengths = np.array([1000.0, 1000.0, 50_000.0, 50_000.0])
    t, _ = best_threshold(profile, lengths, None, 1024.0, 4, 3, 5)
    # every t in [1000, 50000) gives the same partition: the smallest (a sample) is reported
    assert t == 1000.0


def test_prefill_time_vec_matches_scalar(profile):
    xs = np.array([0.0, 100.0, 1024.0, 5000.0, 8192.0, 20_000.0, 32_768.0, 131_072.0, 2e5])
    for hw in profile.hardware.values():
        got = prefill_time_vec(hw.prefill, xs)
        want = [hw.prefill.time(float(x)) for x in xs]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


# ------------------------------------------------------------------------------------ workload

def test_truncated_lognormal_quantiles():
    w = PAPER_WORKLOAD
    q = truncated_lognormal_quantiles(w["mu"], w["sigma"], w["low"], w["high"], n=20000)
    assert q.shape == (20000,)
    assert np.all(np.diff(q) >= 0)
    assert q.min() >= w["low"] and q.max() <= w["high"]
    again = truncated_lognormal_quantiles(w["mu"], w["sigma"], w["low"], w["high"], n=20000)
    assert np.array_equal(q, again)
    # analytic mean of the truncated log-normal
    nd = NormalDist()
    mu, s = w["mu"], w["sigma"]
    a, b = (math.log(w["low"]) - mu) / s, (math.log(w["high"]) - mu) / s
    mean = math.exp(mu + s * s / 2) * (nd.cdf(b - s) - nd.cdf(a - s)) / (nd.cdf(b) - nd.cdf(a))
    assert rel(float(q.mean()), mean) <= 2e-3
    assert rel(mean, 27_500) <= 0.01  # the paper: mean about 27.5K
    # median of the truncated distribution
    median = math.exp(mu + s * nd.inv_cdf((nd.cdf(a) + nd.cdf(b)) / 2))
    assert rel(float(np.median(q)), median) <= 1e-3


@pytest.mark.parametrize("args", [(9.9, 0.0, 128, 1000), (9.9, 1.0, 0, 1000),
                                  (9.9, 1.0, 1000, 128), (9.9, 1.0, 128, 1000, 0)])
def test_truncated_lognormal_rejects_bad_input(args):
    with pytest.raises(PrfaasInputError):
        truncated_lognormal_quantiles(*args)


def test_bad_inputs(profile):
    with pytest.raises(PrfaasInputError):
        plan(profile, np.array([]))
    with pytest.raises(PrfaasInputError):
        plan(profile, np.array([1.0, -2.0]))
    with pytest.raises(PrfaasInputError):
        plan(profile, np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(PrfaasInputError):
        plan(profile, np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    with pytest.raises(PrfaasInputError):
        plan(profile, np.array([1.0, 2.0]), mean_output=0.0)
    with pytest.raises(PrfaasInputError):
        plan(profile.with_deployment(n_prfaas=0), np.array([1.0, 2.0]))
    with pytest.raises(PrfaasInputError):
        plan(profile.with_deployment(n_prefill=0, n_decode=1), np.array([1.0, 2.0]))


# ------------------------------------------------------------------------------------ API

def test_to_dict(result):
    required = {"lambda_max", "threshold_tokens", "n_prfaas", "n_prefill", "n_decode",
                "ttft_mean_s", "ttft_p90_s"}
    fields = {f.name for f in dataclasses.fields(PlanResult)}
    for config, r in result.items():
        d = r.to_dict()
        assert required <= set(d)
        assert set(d) == fields
        assert d["config"] == config
        back = json.loads(json.dumps(d, allow_nan=False))
        assert back == d


# ---------------------------------------------------------------------------------------------
# The planner's L on a workload with prefix reuse: incremental, not prompt, lengths


def _with_cache(blocks: int, interval: int = 1):
    prof = load_profile("single-host").with_deployment(prefix_cache_blocks=blocks)
    return dataclasses.replace(prof, model=dataclasses.replace(
        prof.model, snapshot_interval_blocks=interval))


def _conversation() -> Workload:
    """Block size 100: a 4-block prompt, then its follow-up extending it to 7 blocks + 50
    tokens, then an unrelated 3-block prompt, then a copy of the first prompt."""
    reqs = [Request(0, 0.0, 400, 8, (1, 2, 3, 4), 100),
            Request(1, 1.0, 750, 8, (1, 2, 3, 4, 5, 6, 7), 100),
            Request(2, 2.0, 300, 8, (9, 10, 11), 100),
            Request(3, 3.0, 400, 8, (1, 2, 3, 4), 100)]
    return Workload(reqs, block_size=100)


def test_incremental_lengths_subtract_the_prefix_an_earlier_request_cached() -> None:
    """L = prompt - the usable prefix earlier requests left in the cache: whole blocks, never
    the whole prompt (a repeated prompt recomputes its last block)."""
    got = incremental_lengths(_with_cache(1000), _conversation())
    assert got.tolist() == [400.0, 350.0, 300.0, 100.0]


def test_incremental_lengths_follow_the_snapshot_rule_and_the_cache_capacity() -> None:
    """Hits stop at the last snapshot boundary; a cache too small to keep the first prompt
    while the others are inserted loses it; without cache capacity L is the prompt."""
    w = _conversation()
    assert incremental_lengths(_with_cache(1000, interval=3), w).tolist() == [
        400.0, 450.0, 300.0, 100.0]
    # single-host has two prefill instances, so 2 blocks each pool to 4: the 7-block insert
    # keeps blocks 1-4 (the LRU evicts a prompt's tail first), request 2's three blocks then
    # evict 4, 3 and 2, and the repeated prompt finds one block
    assert incremental_lengths(_with_cache(2), w).tolist() == [400.0, 350.0, 300.0, 300.0]
    # 1 block each pools to 2: the follow-up finds 2 blocks, the repeat none
    assert incremental_lengths(_with_cache(1), w).tolist() == [400.0, 550.0, 300.0, 400.0]
    assert incremental_lengths(_with_cache(0), w).tolist() == [400.0, 750.0, 300.0, 400.0]


def test_scenario_plans_its_threshold_on_incremental_lengths() -> None:
    """The paper routes on the incremental length, so the scenario's planned threshold and
    Λ_max are solved on incremental lengths; with prefix reuse those are far shorter."""
    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")
    w = sc._planning_workload()
    dep = sc.profile.deployment
    prompts = np.array([r.prompt_tokens for r in w.requests], dtype=np.float64)
    inc = incremental_lengths(sc.profile, w)
    assert inc.mean() < 0.7 * prompts.mean()
    mean_out = float(np.mean([r.output_tokens for r in w.requests]))
    t_inc, _ = best_threshold(sc.profile, inc, None, mean_out, dep.n_prfaas, dep.n_prefill,
                              dep.n_decode)
    t_prompt, _ = best_threshold(sc.profile, prompts, None, mean_out, dep.n_prfaas,
                                 dep.n_prefill, dep.n_decode)
    assert sc.threshold_tokens == t_inc < 0.7 * t_prompt
    lam = throughput(sc.profile, inc, None, mean_out, t_inc, dep.n_prfaas, dep.n_prefill,
                     dep.n_decode)["lambda_max"]
    assert sc.planned_lambda == lam


# ---------------------------------------------------------------------------------------------
# The reported light-load TTFT follows the routing rule; the smallest local cluster plans


def test_light_load_ttft_routes_exactly_the_requests_longer_than_the_threshold() -> None:
    """The request whose length is the threshold stays local (``L > t`` goes to PrfaaS), so
    its TTFT is the local prefill time in the reported mean and P90."""
    profile = load_profile("paper-case-study")
    lengths = np.array([1000.0, 4000.0, 12_000.0, 30_000.0, 60_000.0, 90_000.0])
    res = plan(profile, lengths)["prfaas"]
    t = res.threshold_tokens
    assert t in lengths and t < lengths.max()  # the threshold is a request's length
    remote = lengths > t
    times = np.where(remote, prefill_time_vec(profile.prfaas_hw.prefill, lengths),
                     prefill_time_vec(profile.local_hw.prefill, lengths))
    assert res.ttft_mean_s == pytest.approx(float(times.mean()), rel=1e-12)
    assert res.offload_fraction == pytest.approx(remote.mean())


def test_two_local_nodes_plan_as_one_prefill_and_one_decode() -> None:
    """With two local instances the only split, 1 prefill + 1 decode, is searched."""
    profile = load_profile("paper-case-study").with_deployment(n_prfaas=1, n_prefill=1,
                                                               n_decode=1)
    res = plan(profile, np.array([2000.0, 8000.0, 40_000.0]))
    assert (res["prfaas"].n_prefill, res["prfaas"].n_decode) == (1, 1)
    assert res["prfaas"].lambda_max > 0
    assert (res["homogeneous"].n_prefill, res["homogeneous"].n_decode) in ((1, 2), (2, 1))
