"""Seeded synthetic workloads: arrival processes, lengths, prefix sharing, spec parsing."""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from prfaas_gym import synthetic as syn
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.request import Workload
from prfaas_gym.workload import length_stats

REPO = Path(__file__).parents[1]
FIT = REPO / "traces" / "mooncake-conversation-fit.yaml"
VIDUR_ARXIV = (REPO.parent / "shared" / "traces" / "vidur-processed"
               / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")

PAPER: dict[str, Any] = {
    "arrivals": {"process": "uniform", "rate": 2.0},
    "prompt": {"dist": "lognormal", "mu": 9.90, "sigma": 1.0, "low": 128, "high": 131072},
    "output": {"dist": "constant", "value": 1024},
}
SHARED: dict[str, Any] = {
    "arrivals": {"process": "poisson", "rate": 5.0},
    "prompt": {"dist": "pareto", "alpha": 1.5, "low": 200, "high": 20000},
    "output": {"dist": "constant", "value": 300},
    "prefix": {
        "sessions": {"fraction": 0.6, "turns_mean": 4, "think_time_s": 30,
                     "user_tokens": {"dist": "constant", "value": 700}},
        "system_prompts": {"count": 4, "zipf_s": 1.1, "tokens": [1024, 1500, 2048, 700]},
    },
}


def rows(w: Workload) -> list[tuple]:
    return [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.block_hashes, r.session_id)
            for r in w]


def gaps_rate_cv(t: np.ndarray) -> tuple[float, float]:
    g = np.diff(t)
    return (t.size - 1) / (t[-1] - t[0]), float(g.std() / g.mean())


# --------------------------------------------------------------------------------------------
# determinism and speed

def test_same_seed_same_workload_different_seed_different() -> None:
    a, b, c = (syn.generate(SHARED, 2000, s) for s in (7, 7, 8))
    assert rows(a) == rows(b)
    assert rows(a) != rows(c)


def test_hundred_thousand_plain_requests_are_fast() -> None:
    start = time.perf_counter()
    w = syn.generate(PAPER, 100_000, 0)
    assert time.perf_counter() - start < 2.0  # ~0.2 s on a laptop-class core
    assert len(w) == 100_000
    assert all(r.block_hashes == () for r in w.requests[:100])


# --------------------------------------------------------------------------------------------
# arrival processes

def test_poisson_rate_and_cv() -> None:
    rate, cv = gaps_rate_cv(syn.poisson(np.random.default_rng(1), 200_000, 4.0))
    assert rate == pytest.approx(4.0, rel=0.01)
    assert cv == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_renewal_rate_and_cv(cv: float) -> None:
    rate, got = gaps_rate_cv(syn.gamma_renewal(np.random.default_rng(2), 200_000, 4.0, cv))
    assert rate == pytest.approx(4.0, rel=0.02)
    assert got == pytest.approx(cv, rel=0.03)


def test_uniform_is_evenly_spaced_from_zero() -> None:
    t = syn.uniform(np.random.default_rng(0), 5, 2.0)
    assert t.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_mmpp_mean_rate_and_burstiness() -> None:
    t = syn.mmpp(np.random.default_rng(3), 200_000, 10.0, 1.0, 20.0, 60.0)
    rate, cv = gaps_rate_cv(t)
    assert np.all(np.diff(t) >= 0) and t.size == 200_000
    assert rate == pytest.approx((10 * 20 + 1 * 60) / 80, rel=0.06)
    assert cv > 1.3


def test_diurnal_follows_the_sinusoid() -> None:
    t = syn.diurnal(np.random.default_rng(4), 100_000, 2.0, 0.8, 1000.0)
    phase = (t % 1000.0) / 1000.0
    high, low = np.count_nonzero(phase < 0.5), np.count_nonzero(phase >= 0.5)
    # expected share of the rising half: (1 + 2 * 0.8 / pi) / 2 ~ 0.755
    assert high / (high + low) == pytest.approx(0.5 + 0.8 / math.pi, abs=0.01)
    assert gaps_rate_cv(t)[0] == pytest.approx(2.0, rel=0.03)


def test_spikes_add_load_inside_spike_windows() -> None:
    t = syn.spikes(np.random.default_rng(5), 20_000, 2.0, 6.0, 100.0, times=[1000.0, 5000.0])
    inside = np.count_nonzero((t >= 1000) & (t < 1100))
    outside = np.count_nonzero((t >= 2000) & (t < 2100))
    assert inside == pytest.approx(1200, rel=0.15)
    assert outside == pytest.approx(200, rel=0.3)


@pytest.mark.parametrize(("call", "needle"), [
    (lambda r: syn.poisson(r, 10, 0.0), "rate"),
    (lambda r: syn.gamma_renewal(r, 10, 1.0, -1.0), "cv"),
    (lambda r: syn.mmpp(r, 10, 1.0, 1.0, 0.0, 1.0), "mean_on_s"),
    (lambda r: syn.diurnal(r, 10, 1.0, 1.5, 10.0), "amplitude"),
    (lambda r: syn.spikes(r, 10, 1.0, 2.0, 5.0), "times"),
    (lambda r: syn.poisson(r, -1, 1.0), "n"),
    (lambda r: syn.truncated_lognormal(r, 10, 9.9, 1.0, 500, 100), "low < high"),
    (lambda r: syn.bounded_pareto(r, 10, 0.0, 1, 10), "alpha"),
    (lambda r: syn.empirical(r, 10, []), "empirical"),
    (lambda r: syn.constant(10, 0), "value"),
])
def test_samplers_validate_parameters(call: Any, needle: str) -> None:
    with pytest.raises(PrfaasInputError, match=needle):
        call(np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# lengths

def test_truncated_lognormal_paper_mean() -> None:
    x = syn.truncated_lognormal(np.random.default_rng(6), 200_000, 9.90, 1.0, 128, 131072)
    assert x.dtype == np.int64
    assert x.min() >= 128 and x.max() <= 131072
    assert x.mean() == pytest.approx(27_500, rel=0.02)


def test_other_length_samplers_respect_their_support() -> None:
    rng = np.random.default_rng(7)
    p = syn.bounded_pareto(rng, 50_000, 1.2, 100, 10_000)
    assert p.min() >= 100 and p.max() <= 10_000 and np.median(p) < 300
    e = syn.empirical(rng, 1000, [3, 5, 9])
    assert set(e.tolist()) == {3, 5, 9}
    q = syn.empirical_quantiles(rng, 50_000, [10, 20, 1000])
    assert q.min() >= 10 and q.max() <= 1000 and np.median(q) == pytest.approx(20, abs=2)
    assert syn.constant(3, 1024).tolist() == [1024, 1024, 1024]


def test_empirical_lengths_from_a_trace_without_timestamps() -> None:
    if not VIDUR_ARXIV.exists():
        pytest.skip("shared Vidur trace not available")
    spec = dict(PAPER, prompt={"dist": "empirical", "trace": str(VIDUR_ARXIV),
                               "format": "vidur"})
    w = syn.generate(spec, 1000, 0)
    assert max(r.prompt_tokens for r in w) <= 4054


# --------------------------------------------------------------------------------------------
# prefix sharing

def assert_mooncake_hashes(w: Workload) -> None:
    """len == ceil(prompt / B) and every id always stands for the same whole prefix."""
    prefix_of: dict[int, tuple[int, ...]] = {}
    for r in w:
        assert len(r.block_hashes) == math.ceil(r.prompt_tokens / w.block_size)
        for i, h in enumerate(r.block_hashes):
            assert prefix_of.setdefault(h, r.block_hashes[: i + 1]) == r.block_hashes[: i + 1]


def test_session_turns_extend_the_previous_turns_full_blocks() -> None:
    w = syn.generate(SHARED, 3000, 1)
    assert_mooncake_hashes(w)
    last: dict[int, Any] = {}
    pairs = 0
    seen: set[int] = set()
    for r in w:
        prev = last.get(r.session_id) if r.session_id is not None else None
        if prev is not None:
            full = prev.prompt_tokens // 512
            assert r.prompt_tokens == prev.prompt_tokens + prev.output_tokens + 700
            assert r.block_hashes[:full] == prev.block_hashes[:full]
            assert not seen & set(r.block_hashes[full:])  # the rest is new content
            pairs += 1
        if r.session_id is not None:
            last[r.session_id] = r
        seen.update(r.block_hashes)
    assert pairs > 1000
    stats = length_stats(w)
    assert stats["mean_rate"] == pytest.approx(5.0, rel=0.08)
    session_share = sum(r.session_id is not None for r in w) / len(w)
    assert session_share == pytest.approx(0.6, abs=0.05)


def test_system_prompts_share_leading_blocks_with_zipf_popularity() -> None:
    spec = copy.deepcopy(SHARED)
    del spec["prefix"]["sessions"]
    w = syn.generate(spec, 5000, 2)
    assert_mooncake_hashes(w)
    # system prompt lengths 1024, 1500, 2048, 700 -> 2, 2, 4, 1 shared full blocks
    heads = Counter(r.block_hashes[:1] for r in w)
    assert len(heads) == 4
    counts = [c for _, c in heads.most_common()]
    weights = syn.zipf_weights(4, 1.1)
    assert counts[0] / len(w) == pytest.approx(weights[0], abs=0.03)
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for r in w:
        groups.setdefault(r.block_hashes[:1], []).append(r.block_hashes)
    shared = sorted(common_prefix(g) for g in groups.values())
    assert shared == [1, 2, 2, 4]


def common_prefix(hashes: list[tuple[int, ...]]) -> int:
    k = 0
    while all(len(h) > k and h[k] == hashes[0][k] for h in hashes):
        k += 1
    return k


def test_composable_pieces_build_the_same_structure() -> None:
    rng = np.random.default_rng(3)
    d = syn.independent(syn.poisson(rng, 100, 1.0), syn.constant(100, 600),
                        syn.constant(100, 50))
    d = syn.with_sessions(rng, d, fraction=1.0, turns_mean=3, think_time_s=5.0,
                          user_tokens=lambda r, n: syn.constant(n, 100),
                          output_tokens=lambda r, n: syn.constant(n, 50))
    d = syn.with_system_prompts(rng, d, count=1, tokens=1024)
    w = syn.to_workload(d)
    assert_mooncake_hashes(w)
    assert all(r.block_hashes[:2] == w[0].block_hashes[:2] for r in w)
    assert len({r.session_id for r in w}) == 100
    assert max(r.prompt_tokens for r in w) > 1624


# --------------------------------------------------------------------------------------------
# spec parsing, rates

@pytest.mark.parametrize(("path", "value", "where"), [
    (("arrivals", "burst"), 3, "workload.arrivals.burst"),
    (("surprise",), 1, "workload.surprise"),
    (("prefix", "sessions", "turns"), 3, "workload.prefix.sessions.turns"),
    (("prompt", "mean"), 3, "workload.prompt.mean"),
    (("arrivals", "rate"), -1.0, "workload.arrivals.rate"),
    (("arrivals", "process"), "hawkes", "workload.arrivals.process"),
    (("output", "value"), 0, "workload.output.value"),
    (("prefix", "system_prompts", "zipf_s"), "x", "workload.prefix.system_prompts.zipf_s"),
])
def test_generate_rejects_bad_keys_with_their_path(path: tuple[str, ...], value: Any,
                                                   where: str) -> None:
    spec = copy.deepcopy(SHARED)
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PrfaasInputError) as e:
        syn.generate(spec, 10, 0)
    assert e.value.where == where


def test_missing_required_key_and_bad_mixture() -> None:
    with pytest.raises(PrfaasInputError) as e:
        syn.generate({"arrivals": {"process": "gamma", "rate": 1.0}, "prompt": PAPER["prompt"],
                      "output": PAPER["output"]}, 10, 0, where="scenario.workload")
    assert e.value.where == "scenario.workload.arrivals.cv"
    bad = dict(PAPER, prompt={"dist": "mixture", "components": [{"dist": "constant",
                                                                 "value": 5}]})
    with pytest.raises(PrfaasInputError) as e:
        syn.generate(bad, 10, 0)
    assert e.value.where == "workload.prompt.components[0].weight"


def test_mixture_weights() -> None:
    spec = dict(PAPER, prompt={"dist": "mixture", "components": [
        {"weight": 1, "dist": "constant", "value": 100},
        {"weight": 3, "dist": "constant", "value": 5000}]})
    w = syn.generate(spec, 20_000, 0)
    share = sum(r.prompt_tokens == 100 for r in w) / len(w)
    assert share == pytest.approx(0.25, abs=0.02)


def test_with_rate_and_spec_mean_rate() -> None:
    mm = dict(PAPER, arrivals={"process": "mmpp", "rate_on": 8.0, "rate_off": 2.0,
                               "mean_on_s": 10.0, "mean_off_s": 30.0})
    assert syn.spec_mean_rate(mm) == pytest.approx(3.5)
    faster = syn.with_rate(mm, 7.0)
    assert faster["arrivals"]["rate_on"] == pytest.approx(16.0)
    assert faster["arrivals"]["rate_off"] == pytest.approx(4.0)
    assert faster["arrivals"]["mean_on_s"] == 10.0
    assert mm["arrivals"]["rate_on"] == 8.0  # the input is not modified
    spk = dict(PAPER, arrivals={"process": "spikes", "rate": 1.0, "multiplier": 3.0,
                                "duration_s": 10.0, "mean_gap_s": 100.0})
    assert syn.spec_mean_rate(spk) == pytest.approx(1.2)
    assert syn.spec_mean_rate(syn.with_rate(spk, 2.4)) == pytest.approx(2.4)
    w = syn.generate(syn.with_rate(PAPER, 8.0), 1000, 0)
    assert w.mean_rate == pytest.approx(8.0)


def test_quantum_puts_arrivals_on_a_grid() -> None:
    spec = dict(PAPER, arrivals={"process": "poisson", "rate": 3.0, "quantum_s": 3.0})
    w = syn.generate(spec, 1000, 0)
    assert all(r.arrival_s % 3.0 == 0 for r in w)
    coarse = dict(PAPER, arrivals={"process": "poisson", "rate": 3.0, "quantum_s": 1e12})
    with pytest.raises(PrfaasInputError, match=r"arrivals\.quantum_s.*3600"):
        syn.generate(coarse, 100, 0)  # a typo: every arrival floored onto t = 0


# --------------------------------------------------------------------------------------------
# the fitted Mooncake stand-in

def test_mooncake_fit_generates_a_look_alike_without_external_files() -> None:
    spec = yaml.safe_load(FIT.read_text())
    w = syn.generate(spec, 12031, 0)
    assert_mooncake_hashes(w)
    s = length_stats(w)
    assert s["mean_rate"] == pytest.approx(3.40, rel=0.05)
    assert s["block_reuse_fraction"] == pytest.approx(0.366, abs=0.03)
    assert s["prompt_mean"] == pytest.approx(12035, rel=0.15)
    assert s["output_mean"] == pytest.approx(343, rel=0.05)
    assert {r.block_hashes[0] for r in w} == {w[0].block_hashes[0]}


def test_block_ids_from_the_shared_table_are_the_plain_ranges() -> None:
    from prfaas_gym import block_hashes as bh

    cap = bh._ID_TABLE_CAP
    for start, stop in [(0, 5), (3, 3), (100, 70_000), (70_000, 70_010), (cap - 2, cap + 3),
                        (cap + 5, cap + 9), (10, 20)]:
        assert bh._ids(start, stop) == tuple(range(start, stop))


# ---------------------------------------------------------------------------------------------
# Arrival processes: where they start and where their phase puts the peak


def test_mmpp_starts_in_the_on_state_with_its_stationary_probability() -> None:
    """On 10% of the time (mean on 10 s, off 90 s): about 10% of workloads open in a burst,
    so a short workload is not biased towards the state it starts in."""
    first = np.array([syn.mmpp(np.random.default_rng(s), 1, 100.0, 0.0, 10.0, 90.0)[0]
                      for s in range(400)])
    in_burst = np.count_nonzero(first < 0.5) / first.size
    assert in_burst == pytest.approx(0.10, abs=0.05)


def test_diurnal_phase_shifts_the_sinusoid_earlier() -> None:
    """Rate ``rate * (1 + a sin(2 pi (t + phase_s) / period_s))``: a phase of a quarter
    period puts the high half on ``[-P/4, P/4)``, not ``[P/4, 3P/4)``."""
    t = syn.diurnal(np.random.default_rng(4), 50_000, 2.0, 0.8, 1000.0, phase_s=250.0)
    u = t % 1000.0
    high = np.count_nonzero((u < 250.0) | (u >= 750.0)) / t.size
    assert high == pytest.approx(0.5 + 0.8 / np.pi, abs=0.015)
