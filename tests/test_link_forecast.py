"""benchmarks/link_forecast.py: the history forecast finds what a link's past says and only
that, and the forecasting conductor hands the conductor the capacity its docstring names."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agents.compare import run_policy
from agents.heuristics import Conductor
from prfaas_gym.bandwidth import BandwidthTrace, mean_reverting
from prfaas_gym.contract import LinkView
from prfaas_gym.scenario import load_scenario

_ROOT = Path(__file__).resolve().parents[1]
_PATH = _ROOT / "benchmarks" / "link_forecast.py"
_spec = importlib.util.spec_from_file_location("link_forecast", _PATH)
link_forecast = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(link_forecast)


def _removed(train: list[BandwidthTrace], held: list[BandwidthTrace], horizon: float = 10.0,
             history: float = 60.0) -> float:
    """The share of the *now* forecast's held-out error that the whole history removes."""
    fit, _ = link_forecast.split_samples(train, horizon, history, 1.0)
    test, _ = link_forecast.split_samples(held, horizon, history, 1.0)
    return link_forecast.report(fit, {"held": test})[1]["removed_history"]


def _square(half: float, first: float, periods: int = 20) -> BandwidthTrace:
    """High for ``half`` seconds, a tenth of it for the next ``half``, and so on, the first
    high stretch cut to ``first`` seconds (its phase)."""
    starts = np.concatenate(([0.0], first + half * np.arange(2 * periods - 1)))
    caps = np.where(np.arange(starts.size) % 2 == 0, 1e9, 1e8)
    return BandwidthTrace(starts, caps, first + half * (2 * periods - 1))


def _noise(rng: np.random.Generator, seconds: int) -> BandwidthTrace:
    """A memoryless link: an independent lognormal capacity each second."""
    return BandwidthTrace(np.arange(float(seconds)), rng.lognormal(20.0, 0.5, seconds),
                          float(seconds))


def test_a_markov_link_has_no_past_worth_knowing():
    # mean-reverting noise sampled each second: the present capacity is all there is to know
    rng = np.random.default_rng(0)
    links = [mean_reverting(rng, 3600.0, 25.0, 0.5, 30.0) for _ in range(4)]
    assert abs(_removed(links[:2], links[2:])) < 0.03


def test_normalising_by_a_traces_mean_does_not_leak_its_future():
    # a trace is divided by its own mean, which contains the forecast's target; on
    # memoryless noise the history must still remove next to nothing. Short traces, where
    # the mean would give the future away, are skipped.
    rng = np.random.default_rng(1)
    long = [_noise(rng, 280) for _ in range(120)]  # the shortest span allowed: 4 x (60 + 10)
    assert abs(_removed(long[:60], long[60:])) < 0.02
    samples, short = link_forecast.split_samples([_noise(rng, 279), long[0]], 10.0, 60.0, 1.0)
    assert short == 1 and samples.target.size == 211  # only the 280 s trace's decisions


def test_a_link_with_a_rhythm_is_forecast_from_its_past():
    # 40 s high, 40 s low: the level now says nothing of when it ends, the time since the
    # last change does; fitted on one phase, scored on another
    assert link_forecast.trace_samples(_square(40.0, 40.0), 10.0, 60.0, 1.0) is not None
    assert _removed([_square(40.0, 40.0)], [_square(40.0, 17.0)]) > 0.5


def test_samples_leave_history_before_and_horizon_after_without_wrapping():
    tr = _square(40.0, 40.0)  # 1600 s
    s = link_forecast.trace_samples(tr, 10.0, 60.0, 1.0)
    assert s.target.size == 1531  # decisions at 60, 61, ..., 1590 s
    assert s.design.shape == (1531, 16)
    # the last decision's target window is [1590, 1600]: in the trace's last low stretch
    assert s.target[-1] == pytest.approx(np.log(1e8 / tr.mean_bytes_per_s))
    assert link_forecast.trace_samples(BandwidthTrace.constant(10.0), 10.0, 60.0, 1.0) is None


def test_the_forecasting_conductor_passes_min_of_now_and_the_recent_snapshots(monkeypatch):
    seen = []

    def spy(self, request, view):
        seen.append(view.link.capacity_gbps)
        return "decision"

    monkeypatch.setattr(Conductor, "decide", spy)
    policy = link_forecast.ForecastConductor(15.0)
    views = [(0.0, 10.0), (1.0, 20.0), (1.0, 20.0), (20.0, 4.0), (21.0, 30.0)]
    for t, cap in views:
        link = LinkView(cap, 1.0, 0.5, 2.0, 3, 0.01)
        view = SimpleNamespace(link=link, snapshot_time_s=t)
        assert policy.decide(None, view) == "decision"
        assert view.link is link  # the caller's view is left as it was
    # min(20, mean(10, 20)); the same snapshot again counts once; at 20 s the snapshots of
    # 0 and 1 s are out of the 15 s window; then min(30, mean(4, 30))
    assert seen == [10.0, 15.0, 15.0, 4.0, 17.0]


def test_the_forecasting_conductor_is_the_conductor_on_a_constant_link():
    sc = load_scenario("bursty-fluctuating")
    flat = dataclasses.replace(sc, bandwidth_spec={"kind": "constant", "gbps": 25.0})
    a, _ = run_policy(flat, Conductor(), 0, "eval", 300)
    b, _ = run_policy(flat, link_forecast.ForecastConductor(15.0), 0, "eval", 300)
    timings = ("wall_s", "sim_requests_per_s")
    assert {k: v for k, v in a.items() if k not in timings} == \
        {k: v for k, v in b.items() if k not in timings}
    # on the scenario's fluctuating link its memory changes decisions (here: where the
    # prefix copies come from)
    c, _ = run_policy(sc, Conductor(), 0, "eval", 300)
    d, _ = run_policy(sc, link_forecast.ForecastConductor(15.0), 0, "eval", 300)
    assert c["cache_copy_bytes"] != d["cache_copy_bytes"]


def test_bad_options_are_one_line_errors():
    for argv, says in ((["--route-windows", "5,x"], "--route-windows: expected positive"),
                       (["--history", "5"], "--history: must be 15 to 600 s"),
                       (["--history", "1e308"], "--history: must be 15 to 600 s"),
                       (["--step", "1e-9"], "--step: must be at least 0.1 s"),
                       (["--bandwidth-gbps", "10"], "--bandwidth-gbps: applies to"),
                       (["--bandwidth-format", "csv"], "--bandwidth-format: applies to"),
                       (["--scenario", "paper-case-study"], "the link is constant")):
        p = subprocess.run([sys.executable, str(_PATH), *argv], capture_output=True,
                           text=True, cwd=_ROOT)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, argv
