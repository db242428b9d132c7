"""benchmarks/link_forecast.py: the history forecast finds what a link's past says and only
that, and the forecasting conductor is the conductor where the link does not move."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from agents.compare import run_policy
from agents.heuristics import Conductor
from prfaas_gym.bandwidth import BandwidthTrace, mean_reverting
from prfaas_gym.scenario import load_scenario

_ROOT = Path(__file__).resolve().parents[1]
_PATH = _ROOT / "benchmarks" / "link_forecast.py"
_spec = importlib.util.spec_from_file_location("link_forecast", _PATH)
link_forecast = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(link_forecast)


def _removed(train: list[BandwidthTrace], held: list[BandwidthTrace], horizon: float = 10.0,
             history: float = 60.0) -> float:
    fit = link_forecast.split_samples(train, horizon, history, 1.0)
    test = link_forecast.split_samples(held, horizon, history, 1.0)
    return link_forecast.report(fit, {"held": test})[1]["error_removed"]


def _square(period: float, phase: float) -> BandwidthTrace:
    """High for half of each ``period``, a tenth of it for the other half, over 20 periods."""
    starts = np.arange(0.0, 20 * period, period / 2)
    caps = np.where(np.arange(starts.size) % 2 == 0, 1e9, 1e8)
    tr = BandwidthTrace(starts, caps, 20 * period)
    return tr.with_offset(phase)


def test_a_markov_link_has_no_past_worth_knowing():
    # mean-reverting noise sampled each second: the present capacity is all there is to know
    rng = np.random.default_rng(0)
    links = [mean_reverting(rng, 3600.0, 25.0, 0.5, 30.0) for _ in range(4)]
    assert abs(_removed(links[:2], links[2:])) < 0.03


def test_a_link_with_a_rhythm_is_forecast_from_its_past():
    # 40 s high, 40 s low: the present level says nothing of when it ends, the time since
    # the last change does
    links = [_square(80.0, 0.0), _square(80.0, 0.0)]
    assert _removed(links[:1], links[1:]) > 0.5


def test_samples_leave_history_before_and_horizon_after_without_wrapping():
    tr = _square(80.0, 0.0)  # 1600 s
    s = link_forecast.trace_samples(tr, 10.0, 60.0, 1.0)
    assert s.target.size == len(np.arange(60.0, 1600.0 - 10.0 + 1e-9, 1.0))
    assert s.present.shape[0] == s.history.shape[0] == s.target.size
    assert np.array_equal(s.history[:, :s.present.shape[1]], s.present)  # present nested
    short = link_forecast.trace_samples(_square(30.0, 0.0), 10.0, 600.0, 1.0)  # 600 s
    assert short.target.size == 0  # shorter than history + horizon: no sample
    both = link_forecast.split_samples([tr, _square(30.0, 0.0)], 10.0, 60.0, 1.0)
    assert both.target.size == s.target.size + 531 and both.history.shape[1] == \
        s.history.shape[1]


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
                       (["--history", "5"], "--history: must be at least 15 s"),
                       (["--bandwidth-gbps", "10"], "--bandwidth-gbps: applies to")):
        p = subprocess.run([sys.executable, str(_PATH), *argv], capture_output=True,
                           text=True, cwd=_ROOT)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr
