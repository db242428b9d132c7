"""``prfaas capacity``: the rate a policy sustains at an SLO attainment goal."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import agents.capacity
from agents.capacity import (
    CapacityPoint,
    Sustained,
    best_heuristic,
    check_goal,
    for_scenario,
    paired_capacity,
    parse_scales,
    summarize_capacity,
    sustained_rate,
    sweep,
)
from agents.compare import run_policy
from agents.registry import policy_factory
from prfaas_gym.cli import main
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.scenario import load_scenario


def test_scales_parse_as_a_range_or_a_list():
    assert parse_scales("0.5:1.0:0.25") == [0.5, 0.75, 1.0]  # HI included
    assert parse_scales("0.6:1.6:0.1")[-1] == pytest.approx(1.6)
    assert len(parse_scales("0.6:1.6:0.1")) == 11
    assert parse_scales("1.2, 0.8,1") == [0.8, 1.0, 1.2]  # sorted
    assert parse_scales("1:2:0.3") == [1.0, 1.3, 1.6, 1.9]  # HI only where a step lands
    assert parse_scales("0.6:1.6:0.05")[6] == 0.9  # not 0.8999999999999999
    assert len(parse_scales("1e-12:2e-12:1e-13")) == 11  # tiny scales are not "repeats"


@pytest.mark.parametrize("text,needle", [
    ("1:x:0.1", "'x' is not a number"),
    ("0:1:0.1", "must be a finite number > 0"),
    ("1:0.5:0.1", "HI must exceed LO"),
    ("1:2", "LO:HI:STEP"),
    ("1,1,2", "repeats"),
    ("1.0", "at least two"),
    ("0.1:100:0.01", "more than 201"),
    ("1:2:1e-320", "more than 201"),  # the count overflows: still the option's error
    ("1:1e308:1e-300", "more than 201"),
    ("nan,1", "finite number > 0"),
])
def test_bad_scales_are_named(text, needle):
    with pytest.raises(PrfaasInputError, match="--scales") as e:
        parse_scales(text)
    assert needle in str(e.value)


@pytest.mark.parametrize("scales,needle", [("0.5,1e300", "requests per on/off cycle"),
                                           ("1e-12,1", "span")])
def test_a_scale_the_workload_cannot_take_is_blamed_on_scales_before_out_is_made(
        tmp_path, capsys, scales, needle):
    out = tmp_path / "cap"
    assert main(["capacity", "--scenario", "bursty-fluctuating", "--policies", "conductor",
                 "--requests", "50", "--seeds", "1", "--no-progress", "--scales", scales,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    scale = scales.split(",")[0 if needle == "span" else 1]
    assert f"--scales: {float(scale):g} x the split's" in err and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("goal", [0.0, 1.5, math.nan, -0.1])
def test_a_goal_outside_0_1_is_refused(goal):
    with pytest.raises(PrfaasInputError, match="--goal"):
        check_goal(goal)


def test_the_crossing_is_interpolated_between_the_grid_rates_around_it():
    # 0.95 at 2, 0.85 at 3: 0.9 is halfway
    s = sustained_rate([1, 2, 3, 4], [0.99, 0.95, 0.85, 0.8], 0.9)
    assert s.rate == pytest.approx(2.5) and s.censored is None
    # met exactly at 2 counts as met, and 2 is where the line reaches the goal
    assert sustained_rate([1, 2, 3], [0.95, 0.9, 0.7], 0.9) == Sustained(2.0)


def test_the_first_crossing_counts_even_where_attainment_recovers():
    assert sustained_rate([1, 2, 3, 4], [0.95, 0.85, 0.95, 0.8], 0.9).rate == pytest.approx(1.5)


def test_an_undefined_attainment_is_a_miss():
    assert sustained_rate([1, 2, 3], [0.95, math.nan, 0.99], 0.9) == Sustained(1.0)
    assert sustained_rate([1, 2], [math.nan, 0.99], 0.9) == Sustained(1.0, "below")


def test_a_goal_met_everywhere_or_nowhere_is_a_bound_and_says_so():
    assert sustained_rate([1, 2], [0.99, 0.95], 0.9) == Sustained(2.0, "above")
    assert sustained_rate([1, 2], [0.8, 0.7], 0.9) == Sustained(1.0, "below")
    with pytest.raises(ValueError, match="ascending"):
        sustained_rate([2, 1], [0.9, 0.8], 0.9)
    with pytest.raises(ValueError, match="one attainment per rate"):
        sustained_rate([1, 2], [0.9], 0.9)


def _points(policy: str, curves: dict[int, list[float]], rates=(1.0, 2.0, 3.0)):
    return [CapacityPoint(policy, s, r, a, 0.0, 0.0)
            for s, att in curves.items() for r, a in zip(rates, att)]


def test_ratios_pair_seeds_and_leave_out_censored_ones():
    pts = (_points("base", {0: [0.95, 0.85, 0.8], 1: [0.95, 0.85, 0.8], 2: [0.95, 0.95, 0.95]})
           + _points("new", {0: [0.95, 0.95, 0.85], 1: [0.99, 0.93, 0.8], 2: [0.95, 0.95, 0.7]}))
    summary = summarize_capacity(pts, 0.9)
    assert summary["base"]["censored"] == 1  # seed 2 never misses
    assert summary["new"]["per_seed"][0].rate == pytest.approx(2.5)
    assert summary["new"]["per_seed"][1].rate == pytest.approx(2 + 0.03 / 0.13)
    paired = paired_capacity(summary, "base")
    assert set(paired["new"]["ratios"]) == {0, 1}  # seed 2: the baseline's is a bound
    assert paired["new"]["ratios"][0] == pytest.approx(2.5 / 1.5)
    assert paired["base"]["ratio"][0] == 1.0
    # a seed missing the goal at the lowest rate is a bound too, and is not paired
    low = summarize_capacity(_points("low", {0: [0.8, 0.7, 0.6], 1: [0.95, 0.85, 0.8],
                                             2: [0.95, 0.95, 0.85]}) + pts, 0.9)
    assert low["low"]["per_seed"][0] == Sustained(1.0, "below")
    assert set(paired_capacity(low, "low")["new"]["ratios"]) == {1, 2}
    # the mean curve: 0.95, 0.85 at 1, 2 for base's seeds 0-1 and 0.95 on seed 2
    mean2 = (0.85 + 0.85 + 0.95) / 3
    assert summary["base"]["mean_curve"].rate == pytest.approx(1 + 0.05 / (0.95 - mean2))


def test_the_best_heuristic_is_the_one_that_sustains_the_most():
    pts = (_points("slow", {0: [0.95, 0.8, 0.7]}) + _points("fast", {0: [0.95, 0.95, 0.8]})
           + _points("learned", {0: [0.99, 0.99, 0.95]}))
    summary = summarize_capacity(pts, 0.9)
    specs = {"slow": "prfaas-threshold", "fast": "conductor", "learned": "x.onnx"}
    assert best_heuristic(summary, specs) == "fast"  # the learned one sustains more
    assert best_heuristic(summary, {**specs, "fast": "y.onnx", "slow": "z.onnx"}) is None


def test_a_sweep_is_the_runs_compare_would_make_at_each_rate_and_is_reproducible():
    sc = load_scenario("bursty-fluctuating")
    specs = {"conductor": "conductor", "prfaas-threshold": "prfaas-threshold"}
    rates = [2.0, 4.0]
    pts = sweep(sc, specs, rates, seeds=2, split="eval", n=80, progress=False)
    assert len(pts) == 2 * 2 * 2
    assert pts == sweep(sc, specs, rates, seeds=2, split="eval", n=80, progress=False)
    at4 = sc.with_rate(4.0)
    assert at4.threshold_tokens != sc.threshold_tokens  # the plan follows the load
    direct, _ = run_policy(at4, policy_factory("prfaas-threshold", at4)(), 1, "eval", 80)
    mine = next(p for p in pts if p.policy == "prfaas-threshold" and p.seed == 1
                and p.rate == 4.0)
    assert mine.slo_attainment == direct["slo_attainment"]
    assert mine.goodput_rps == direct["goodput_rps"]


def test_heuristics_are_built_for_each_rates_scenario(monkeypatch):
    """A threshold heuristic at rate r takes the threshold planned at r."""
    built = []
    real = agents.capacity.policy_factory

    def spy(spec, scenario, *a, **k):
        built.append((spec, scenario.run_rate, scenario.threshold_tokens))
        return real(spec, scenario, *a, **k)

    monkeypatch.setattr(agents.capacity, "policy_factory", spy)
    sc = load_scenario("bursty-fluctuating")
    sweep(sc, {"prfaas-threshold": "prfaas-threshold"}, [2.0, 4.0], seeds=1, split="eval",
          n=20, progress=False)
    assert built == [("prfaas-threshold", r, sc.with_rate(r).threshold_tokens)
                     for r in (2.0, 4.0)]


def test_a_role_checkpoint_routes_each_rate_with_that_rates_threshold(tmp_path):
    """A role policy whose recorded router is a threshold heuristic takes the threshold
    planned for the rate it serves, as ``compare --rate`` would load it."""
    from agents.learned import load_learned_policy

    src = Path(__file__).resolve().parents[1] / "agents" / "policies"
    onnx = tmp_path / "roles.onnx"
    shutil.copy(src / "bursty-fluctuating-roles.onnx", onnx)
    manifest = json.loads((src / "bursty-fluctuating-roles.manifest.json").read_text())
    manifest["router"] = "prfaas-threshold"
    (tmp_path / "roles.manifest.json").write_text(json.dumps(manifest))
    sc = load_scenario("bursty-fluctuating")
    loaded = load_learned_policy(onnx, sc)
    at4 = sc.with_rate(4.0)
    bound = for_scenario(loaded, at4)
    assert bound.route_policy.threshold_tokens == at4.threshold_tokens
    assert loaded.route_policy.threshold_tokens == sc.threshold_tokens != at4.threshold_tokens
    assert bound.router is loaded.router  # the ONNX session is shared


def test_capacity_command_writes_table_csv_json_and_plot(tmp_path, capsys):
    out = tmp_path / "cap"
    onnx = Path(__file__).resolve().parents[1] / "agents/policies/bursty-fluctuating.onnx"
    assert main(["capacity", "--scenario", "bursty-fluctuating",
                 "--policies", f"conductor,{onnx}",
                 "--seeds", "2", "--requests", "80", "--scales", "0.5,1,2",
                 "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "sustained req/s" in text and "/ conductor (paired)" in text
    doc = json.loads((out / "capacity.json").read_text())
    assert doc["best_heuristic"] == doc["baseline"] == "conductor" and doc["goal"] == 0.9
    assert doc["split"] == "eval"  # capacity's default
    nominal = load_scenario("bursty-fluctuating").mean_rate("eval")
    assert doc["rates"] == pytest.approx([0.5 * nominal, nominal, 2 * nominal])
    learned = doc["results"]["bursty-fluctuating.onnx"]
    assert set(learned["per_seed"]) == {"0", "1"}
    assert len(learned["attainment"]) == 3
    assert len((out / "capacity.csv").read_text().splitlines()) == 1 + 2 * 2 * 3
    assert (out / "attainment.png").stat().st_size > 0


def test_capacity_pairs_with_a_chosen_baseline_and_names_each_kind_of_bound(capsys):
    # at 0.05x-0.1x of the rate the conductor meets the goal on both seeds (a lower bound);
    # local-only meets it on one seed and misses it at the lowest rate on the other
    argv = ["capacity", "--scenario", "bursty-fluctuating", "--policies",
            "conductor,local-only", "--seeds", "2", "--requests", "40", "--no-progress"]
    assert main([*argv, "--scales", "0.05,0.1", "--baseline", "local-only"]) == 0
    out, err = capsys.readouterr()
    assert "/ local-only (paired)" in out
    assert "(2 of 2 seeds a bound)" in out
    assert "conductor: on 2 of 2 seeds the goal is met at every rate" in err
    assert "local-only: on 1 of 2 seeds the goal is met at every rate" in err
    assert "local-only: on 1 of 2 seeds the goal is missed at the lowest rate" in err


@pytest.mark.parametrize("extra,needle", [
    (["--baseline", "nosuch"], "--baseline: 'nosuch' is not one of --policies"),
    (["--scales", "1"], "--scales"),
    (["--goal", "2"], "--goal"),
    (["--policies", "conductor,nosuch"], "unknown policy 'nosuch'"),
])
def test_capacity_bad_input_is_named_and_creates_nothing(tmp_path, capsys, extra, needle):
    argv = ["capacity", "--scenario", "bursty-fluctuating", "--policies", "conductor",
            "--requests", "20", "--no-progress", "--out", str(tmp_path / "new"), *extra]
    assert main(argv) == 2  # a repeated option: argparse keeps the last
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_capacity_refuses_an_out_that_would_replace_an_input(tmp_path, capsys):
    out = tmp_path / "cap"
    out.mkdir()
    link = out / "capacity.csv"
    link.write_text("time_s,gbps\n0,25\n100,25\n")
    assert main(["capacity", "--scenario", "bursty-fluctuating", "--policies", "conductor",
                 "--bandwidth-trace", str(link), "--bandwidth-format", "csv", "--requests",
                 "20", "--no-progress", "--out", str(out)]) == 2
    assert "--out would replace an input of this run" in capsys.readouterr().err
    assert link.read_text().startswith("time_s,gbps")
