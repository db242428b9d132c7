"""``prfaas capacity``: the rate a policy sustains at an SLO attainment goal."""

from __future__ import annotations

import json
import math

import pytest

from agents.capacity import (
    CapacityPoint,
    Sustained,
    check_goal,
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


@pytest.mark.parametrize("text,needle", [
    ("1:x:0.1", "'x' is not a number"),
    ("0:1:0.1", "must be a finite number > 0"),
    ("1:0.5:0.1", "HI must exceed LO"),
    ("1:2", "LO:HI:STEP"),
    ("1,1,2", "repeats"),
    ("1.0", "at least two"),
    ("0.1:100:0.01", "201 at most"),
    ("nan,1", "finite number > 0"),
])
def test_bad_scales_are_named(text, needle):
    with pytest.raises(PrfaasInputError, match="--scales") as e:
        parse_scales(text)
    assert needle in str(e.value)


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
    # the mean curve: 0.95, 0.85 at 1, 2 for base's seeds 0-1 and 0.95 on seed 2
    mean2 = (0.85 + 0.85 + 0.95) / 3
    assert summary["base"]["mean_curve"].rate == pytest.approx(1 + 0.05 / (0.95 - mean2))


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


def test_capacity_command_writes_table_csv_json_and_plot(tmp_path, capsys):
    out = tmp_path / "cap"
    assert main(["capacity", "--scenario", "bursty-fluctuating", "--split", "eval",
                 "--policies", "conductor,agents/policies/bursty-fluctuating.onnx",
                 "--seeds", "2", "--requests", "80", "--scales", "0.5,1,2",
                 "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "sustained req/s" in text and "/ conductor (paired)" in text
    doc = json.loads((out / "capacity.json").read_text())
    assert doc["best_heuristic"] == "conductor" and doc["goal"] == 0.9
    nominal = load_scenario("bursty-fluctuating").mean_rate("eval")
    assert doc["rates"] == pytest.approx([0.5 * nominal, nominal, 2 * nominal])
    learned = doc["results"]["bursty-fluctuating.onnx"]
    assert set(learned["per_seed"]) == {"0", "1"}
    assert len(learned["attainment"]) == 3
    assert len((out / "capacity.csv").read_text().splitlines()) == 1 + 2 * 2 * 3
    assert (out / "attainment.png").stat().st_size > 0


@pytest.mark.parametrize("extra,needle", [
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
