"""How much a link's past says about the capacity a KV transfer will get, beyond its present
capacity: whether a link-history observation feature could help a router.

The router's observation carries the link's capacity now (``link_capacity``) and what is
queued on it, not its past. A transfer started at time ``t`` gets the mean capacity of
``[t, t + horizon]``; this script asks how well that is forecast from the present alone and
from the present plus the last ``--history`` seconds. For each link of a scenario's train
split (the traces ``prfaas train`` draws from) and of its eval split (the held-out runs'
links), at decision times every ``--step`` seconds that leave ``--history`` seconds before
and ``--horizon`` after them inside the trace (no wrap-around), the target is
``ln(mean capacity over [t, t + horizon] / trace mean)``: logarithms, because a transfer's
time goes as the inverse of its rate. Two least-squares forecasts are fitted on the train
links and scored on the eval links:

- *present*: ``ln c(t)``, its square, and a constant;
- *history*: those plus ``ln`` of the mean capacity over the last 1, 5, 15 s and
  ``--history`` s, of ``c(t - 5 s)`` and of the window's minimum and maximum; how long ago
  the capacity last differed from ``c(t)`` by a factor of 2 or more (a fraction of
  ``--history``, 1 if not within it); and the products of ``ln c(t)`` with the 5 s and
  ``--history`` means, with that time and with ``ln c(t - 5 s)``, and the square of the
  ``--history`` mean.

Reported per split: samples, R² of each forecast, its RMS error as a factor of the rate
(``exp(RMSE)``), and the share of the present forecast's squared error that the history
removes. A share near 0 on the eval links says a feature of the link's past would tell a
router next to nothing its observation does not already: the scenario's generated links are
Markov (mean-reverting noise sampled each second and Poisson drops of exponential length),
so the present capacity is nearly all there is to know. A recorded link may differ; pass it
with ``--bandwidth-trace`` (a file or a folder, split like any recorded link: a folder by
file, a single trace by time), rescaled to the scenario's link capacity.

Whether a forecast that knows the past would route better is the second question, and
``--route-seeds K`` answers it for one simple forecast: the conductor, on the scenario's
eval split (seeds ``0..K-1``, ``--requests`` each), against the same conductor estimating
every transfer at ``min(capacity now, mean capacity of the telemetry snapshots it saw over
the last W s)`` for each W of ``--route-windows`` (a pessimistic forecast: a recent dip
counts, a recent peak does not). It prints the paired goodput ratio and SLO attainment.

    python benchmarks/link_forecast.py --scenario bursty-fluctuating --route-seeds 5
    python benchmarks/link_forecast.py --scenario bursty-fluctuating --route-seeds 5 \\
        --bandwidth-trace ../shared/traces/genet-abr-bandwidth/abr_trace/testing_trace/norway-test
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from agents.compare import ci95, fmt_ci, run_policy
from agents.heuristics import Conductor
from prfaas_gym.bandwidth import BandwidthTrace
from prfaas_gym.cli import positive_float, positive_int, run_script
from prfaas_gym.contract import ClusterView, Decision, LinkView, RequestInfo
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import Profile
from prfaas_gym.scenario import Scenario, load_scenario

#: capacities are floored at this fraction of the trace's mean before the logarithm, so an
#: outage (zero capacity) is a large finite penalty, not -inf
FLOOR = 1e-3
#: the shorter look-back windows (s); ``--history`` is the longest
WINDOWS = (1.0, 5.0, 15.0)


class Samples(NamedTuple):
    """Decision-time samples of one split: the present and history designs and the target."""

    present: np.ndarray  # (n, k1)
    history: np.ndarray  # (n, k2), present's columns first
    target: np.ndarray  # (n,)


def _ln(bytes_per_s: np.ndarray | float, mean: float) -> np.ndarray:
    return np.log(np.maximum(np.asarray(bytes_per_s, dtype=np.float64) / mean, FLOOR))


def _window_mean(tr: BandwidthTrace, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    return np.array([tr.integral(a, b) / (b - a) for a, b in zip(t0.tolist(), t1.tolist(),
                                                                 strict=True)])


_NONE = Samples(np.empty((0, 0)), np.empty((0, 0)), np.empty(0))


def trace_samples(tr: BandwidthTrace, horizon: float, history: float, step: float) -> Samples:
    """The samples of one trace, its own time from 0 (offset ignored), no wrap-around; none
    (empty arrays) when the trace is shorter than ``history + horizon``."""
    tr = tr.with_offset(0.0)
    mean = tr.mean_bytes_per_s
    t = np.arange(history, tr.period_s - horizon + 1e-9, step)
    if t.size == 0 or mean <= 0:
        return _NONE
    # capacity on a fine grid over the look-back, for the window's minimum and maximum
    # and the time since the last factor-2 move; a sample takes the grid point at or before it
    grid_dt = min(0.5, step)
    grid_t = np.arange(0.0, tr.period_s, grid_dt)
    grid = _ln([tr.capacity_at(x) for x in grid_t.tolist()], mean)
    now = _ln([tr.capacity_at(x) for x in t.tolist()], mean)
    back = int(round(history / grid_dt))
    idx = np.minimum((t / grid_dt + 1e-9).astype(np.int64), grid.size - 1)
    look = np.stack([grid[np.maximum(idx - k, 0)] for k in range(back + 1)], axis=1)
    moved = np.abs(look - now[:, None]) >= math.log(2.0)
    since = np.where(moved.any(axis=1), moved.argmax(axis=1) * grid_dt, history) / history
    means = [_ln(_window_mean(tr, t - w, t), mean) for w in (*WINDOWS, history)]
    ago5 = _ln([tr.capacity_at(x) for x in (t - 5.0).tolist()], mean)
    ones = np.ones_like(now)
    present = np.column_stack([ones, now, now * now])
    hist = np.column_stack([present, *means, ago5, look.min(axis=1), look.max(axis=1),
                            now * means[1], now * means[-1], since,
                            since * now, means[-1] * means[-1], ago5 * now])
    target = _ln(_window_mean(tr, t, t + horizon), mean)
    return Samples(present, hist, target)


def split_samples(traces: list[BandwidthTrace], horizon: float, history: float,
                  step: float) -> Samples:
    """Every trace's samples, stacked; traces too short for a sample add none."""
    parts = [p for p in (trace_samples(tr, horizon, history, step) for tr in traces)
             if p.target.size]
    if not parts:
        return _NONE
    return Samples(*(np.concatenate([getattr(p, f) for p in parts]) for f in Samples._fields))


class Score(NamedTuple):
    r2: float
    rms_factor: float  # exp(RMSE of the log forecast)
    mse: float


def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (minimum norm where columns are collinear)."""
    return np.linalg.lstsq(x, y, rcond=None)[0]


def score(x: np.ndarray, y: np.ndarray, coef: np.ndarray) -> Score:
    """R², RMS error factor and MSE of ``x @ coef`` against ``y``."""
    err = y - x @ coef
    mse = float(np.mean(err * err))
    var = float(np.var(y))
    return Score(1.0 - mse / var if var > 0 else math.nan, math.exp(math.sqrt(mse)), mse)


def report(train: Samples, held: dict[str, Samples]) -> list[dict]:
    """Fit both forecasts on ``train`` and score them on it and on each of ``held``."""
    cp, ch = fit(train.present, train.target), fit(train.history, train.target)
    rows = []
    for name, s in {"train (fitted)": train, **held}.items():
        p, h = score(s.present, s.target, cp), score(s.history, s.target, ch)
        share = (p.mse - h.mse) / p.mse if p.mse > 0 else math.nan
        rows.append({"split": name, "samples": int(s.target.size), "r2_present": p.r2,
                     "r2_history": h.r2, "rms_present": p.rms_factor,
                     "rms_history": h.rms_factor, "error_removed": share})
    return rows


class ForecastConductor(Conductor):
    """The conductor, estimating the link at ``min(capacity now, mean of the capacities in
    the telemetry snapshots it saw over the last ``window_s`` seconds)``: what a router with
    a memory of the link, and no other change, would do. On a constant link it is the
    conductor."""

    def __init__(self, window_s: float) -> None:
        super().__init__()
        self.window_s = window_s
        self.name = f"conductor, link forecast over {window_s:g} s"
        self._seen: list[tuple[float, float]] = []  # (snapshot time, capacity Gbps)

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        super().reset(profile, seed)
        self._seen = []

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        link, t = view.link, view.snapshot_time_s
        if not self._seen or self._seen[-1][0] != t:
            self._seen.append((t, link.capacity_gbps))
            while self._seen[0][0] < t - self.window_s:
                self._seen.pop(0)
        mean = sum(c for _, c in self._seen) / len(self._seen)
        view.link = LinkView(min(link.capacity_gbps, mean), link.measured_gbps,
                             link.utilization, link.bytes_queued, link.transfers_in_flight,
                             link.rtt_s)
        try:
            return super().decide(request, view)
        finally:
            view.link = link  # the view is the simulator's; leave it as it was


def route(sc: Scenario, seeds: int, requests: int | None,
          windows: list[float]) -> list[dict]:
    """The conductor and a :class:`ForecastConductor` per window on the eval split: per
    window, the paired goodput ratio to the conductor (mean and 95% half-width over seeds)
    and the mean SLO attainment of both."""
    base = [run_policy(sc, Conductor(), s, "eval", requests)[0] for s in range(seeds)]
    rows = []
    for w in windows:
        runs = [run_policy(sc, ForecastConductor(w), s, "eval", requests)[0]
                for s in range(seeds)]
        ratio = ci95([r["goodput_rps"] / b["goodput_rps"] for r, b in zip(runs, base,
                                                                         strict=True)
                      if b["goodput_rps"] > 0])
        rows.append({"window_s": w, "ratio": ratio,
                     "attainment": float(np.mean([r["slo_attainment"] for r in runs])),
                     "conductor_attainment": float(np.mean([b["slo_attainment"]
                                                            for b in base]))})
    return rows


def with_link(sc: Scenario, path: str | None, fmt: str | None = None,
              gbps: float | None = None) -> Scenario:
    """``sc`` with its link replaced by the recorded trace file or folder at ``path`` (none:
    as it is), rescaled to mean ``gbps`` (default: the scenario's link capacity, as
    ``--bandwidth-trace`` is elsewhere)."""
    if not path:
        return sc
    p = Path(path)
    spec = {"kind": "trace_dir" if p.is_dir() else "trace", "path": str(p.resolve())}
    if fmt:
        spec["format"] = fmt
    spec["scale_to_gbps"] = sc.profile.link.capacity_gbps if gbps is None else gbps
    return dataclasses.replace(sc, bandwidth_spec=spec)


def parse_windows(text: str) -> list[float]:
    """``--route-windows``: positive seconds, comma-separated."""
    out = []
    for item in text.split(","):
        try:
            w = float(item)
        except ValueError:
            w = math.nan
        if not (math.isfinite(w) and w > 0):
            raise PrfaasInputError(f"expected positive seconds, got {item.strip()!r}",
                                   "--route-windows")
        out.append(w)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="bursty-fluctuating")
    ap.add_argument("--bandwidth-trace",
                    help="a recorded bandwidth trace file or folder instead of the scenario's "
                         "link (split into train/val/eval as the scenario splits a recorded "
                         "link)")
    ap.add_argument("--bandwidth-format", choices=["pensieve", "pantheon", "csv"])
    ap.add_argument("--bandwidth-gbps", type=positive_float,
                    help="rescale --bandwidth-trace to this mean (Gbit/s; default: the "
                         "scenario's link capacity); the forecast is scale-free, the routing "
                         "runs are not")
    ap.add_argument("--horizon", type=positive_float, default=10.0,
                    help="seconds a transfer lasts: the forecast's target is the mean "
                         "capacity over them (default 10, the bursty scenario's TTFT SLO)")
    ap.add_argument("--history", type=positive_float, default=60.0,
                    help="seconds of the past the history forecast sees (default 60)")
    ap.add_argument("--step", type=positive_float, default=1.0,
                    help="seconds between decision times (default 1)")
    ap.add_argument("--route-seeds", type=int, default=0, metavar="K",
                    help="also route the eval split's seeds 0..K-1 with the conductor and "
                         "with a forecasting conductor (default 0: skip)")
    ap.add_argument("--route-windows", default="5,15", metavar="W[,W]",
                    help="the forecasting conductor's look-back windows (s; default 5,15)")
    ap.add_argument("--requests", type=positive_int,
                    help="requests per routing run (default: the scenario's)")
    args = ap.parse_args()
    windows = parse_windows(args.route_windows)
    if args.route_seeds < 0:
        raise PrfaasInputError(f"must be >= 0, got {args.route_seeds}", "--route-seeds")
    if args.history < max(WINDOWS):
        raise PrfaasInputError(f"must be at least {max(WINDOWS):g} s, got {args.history:g}",
                               "--history")
    if args.bandwidth_gbps is not None and not args.bandwidth_trace:
        raise PrfaasInputError("applies to --bandwidth-trace, which is not given",
                               "--bandwidth-gbps")
    sc = with_link(load_scenario(args.scenario), args.bandwidth_trace, args.bandwidth_format,
                   args.bandwidth_gbps)
    link = args.bandwidth_trace or f"{sc.name}'s link"
    splits = {s: split_samples(list(sc.bandwidth_sampler(s).traces), args.horizon,
                               args.history, args.step) for s in ("train", "eval")}
    for s, smp in splits.items():
        if smp.target.size < 50:
            raise PrfaasInputError(
                f"the {s} split's links give {smp.target.size} samples (need 50): traces "
                f"shorter than --history + --horizon ({args.history + args.horizon:g} s) "
                "give none", link)
    print(f"{link}: forecast of ln(mean capacity over the next {args.horizon:g} s), fitted "
          f"on the train split's links, scored on the eval split's; history "
          f"{args.history:g} s, a decision every {args.step:g} s")
    print("| links | samples | R² present | R² with history | RMS error present | "
          "RMS error with history | error the history removes |")
    print("|---|---|---|---|---|---|---|")
    for r in report(splits["train"], {"eval (held out)": splits["eval"]}):
        print(f"| {r['split']} | {r['samples']} | {r['r2_present']:.3f} | "
              f"{r['r2_history']:.3f} | x{r['rms_present']:.3f} | x{r['rms_history']:.3f} | "
              f"{100 * r['error_removed']:.1f}% |")
    if args.route_seeds:
        print(f"\nrouting on the eval split, seeds 0..{args.route_seeds - 1}: the conductor "
              "against the conductor estimating the link at min(now, mean of the last W s)")
        print("| W (s) | goodput / conductor | SLO attainment | conductor's |")
        print("|---|---|---|---|")
        for r in route(sc, args.route_seeds, args.requests, windows):
            print(f"| {r['window_s']:g} | {fmt_ci(*r['ratio'])}x | {r['attainment']:.3f} | "
                  f"{r['conductor_attainment']:.3f} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
