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
time goes as the inverse of its rate. Three least-squares forecasts are fitted on the train
links and scored on the eval links:

- *now*: ``ln c(t)``, its square, and a constant;
- *recent means*: those plus ``ln`` of the mean capacity over the last 1, 5, 15 s and
  ``--history`` s;
- *history*: those plus ``ln c(t - 5 s)`` and ``ln`` of the look-back's minimum and
  maximum; how long ago the capacity last differed from ``c(t)`` by a factor of 2 or more
  (a fraction of ``--history``, 1 if not within it); and the products of ``ln c(t)`` with
  the 5 s and ``--history`` means, with that time and with ``ln c(t - 5 s)``, and the
  square of the ``--history`` mean.

Links are taken as the env plays them: a recorded trace rescaled to the scenario's mean
capacity, each file on its own. Dividing by a trace's own mean reads a little of its future,
so a trace must span at least ``SPAN_FACTOR`` times ``--history + --horizon`` to give
samples (on memoryless noise the history then removes under 2% of the error, a test);
shorter traces are skipped, and the report says how many.

Reported per split: samples, R² of the *now* and *history* forecasts, their RMS error as a
factor of the rate (``exp(RMSE)``), and the share of the *now* forecast's squared error that
the recent means, and the whole history, remove. A share near 0 on the eval links says a
feature of the link's past would tell a router next to nothing its observation does not
already: the scenario's generated links are Markov (mean-reverting noise sampled each second
and Poisson drops of exponential length), so the present capacity is nearly all there is to
know. A recorded link may differ; pass it with ``--bandwidth-trace`` (a file or a folder,
split like any recorded link: a folder by file, a single trace by time).

Whether a forecast that knows the past would route better is the second question, and
``--route-seeds K`` asks it of one simple forecast: the conductor, on the scenario's eval
split (seeds ``0..K-1``, ``--requests`` each), against the same conductor estimating the
remote -> local link (the one KV crosses) at ``min(capacity now, mean of the capacities in
the telemetry snapshots it saw over the last W s)`` for each W of ``--route-windows`` (a
pessimistic forecast: a recent dip counts, a recent peak does not). It prints the paired
goodput ratio and the SLO attainment. A routing run is longer than a recorded trace and
replays it from the start when it ends, as every run does.

    python benchmarks/link_forecast.py --scenario bursty-fluctuating --route-seeds 5
    python benchmarks/link_forecast.py --scenario bursty-fluctuating --route-seeds 5 \\
        --bandwidth-trace ../shared/traces/genet-abr-bandwidth/abr_trace/testing_trace/norway-test
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from agents.compare import ci95, fmt_ci, run_policy
from agents.heuristics import Conductor
from prfaas_gym.bandwidth import BandwidthTrace
from prfaas_gym.cli import non_negative_int, positive_float, positive_int, run_script
from prfaas_gym.contract import ClusterView, Decision, LinkView, RequestInfo
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import Profile
from prfaas_gym.scenario import Scenario, load_scenario

#: capacities are floored at this fraction of the trace's mean before the logarithm, so an
#: outage (zero capacity) is a large finite penalty, not -inf
FLOOR = 1e-3
#: the shorter look-back windows (s); ``--history`` is the longest
WINDOWS = (1.0, 5.0, 15.0)
#: a trace gives samples only if it spans this many times ``history + horizon``
SPAN_FACTOR = 4.0
#: the finest ``--step`` and the longest ``--history`` / ``--horizon`` (s): bounds on the
#: samples and the look-back arrays
MIN_STEP_S = 0.1
MAX_WINDOW_S = 600.0
#: columns of the *now* and *recent means* designs (the *history* design starts with them)
N_NOW = 3
N_MEANS = N_NOW + len(WINDOWS) + 1


class Samples(NamedTuple):
    """Decision-time samples: the *history* design (its first ``N_NOW`` columns are the *now*
    design, its first ``N_MEANS`` the *recent means* design) and the target."""

    design: np.ndarray  # (n, k)
    target: np.ndarray  # (n,)


def _ln(bytes_per_s: np.ndarray | list[float] | float, mean: float) -> np.ndarray:
    return np.log(np.maximum(np.asarray(bytes_per_s, dtype=np.float64) / mean, FLOOR))


def _window_mean(tr: BandwidthTrace, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    return np.array([tr.integral(a, b) / (b - a)
                     for a, b in zip(t0.tolist(), t1.tolist(), strict=True)])


def trace_samples(tr: BandwidthTrace, horizon: float, history: float,
                  step: float) -> Samples | None:
    """The samples of one trace, in its own time from 0 (its offset ignored), without
    wrap-around; None for a trace shorter than ``SPAN_FACTOR * (history + horizon)``, a
    constant one (nothing to forecast) or one that never carries anything."""
    tr = tr.with_offset(0.0)
    mean = tr.mean_bytes_per_s
    if tr.period_s < SPAN_FACTOR * (history + horizon) or tr.n_segments < 2 or mean <= 0:
        return None
    t = np.arange(history, tr.period_s - horizon + 1e-9, step)
    # capacity on a fine grid for the look-back's minimum and maximum and the time since the
    # last factor-2 move; a decision reads the grid point at or before it
    grid_dt = min(0.5, step)
    grid = _ln([tr.capacity_at(x) for x in np.arange(0.0, tr.period_s, grid_dt).tolist()],
               mean)
    now = _ln([tr.capacity_at(x) for x in t.tolist()], mean)
    idx = np.minimum((t / grid_dt + 1e-9).astype(np.int64), grid.size - 1)
    low, high = np.full(t.size, np.inf), np.full(t.size, -np.inf)
    first_move = np.full(t.size, -1)  # grid steps back to the last factor-2 move, -1: none
    for k in range(int(round(history / grid_dt)) + 1):  # one look-back step at a time
        back = grid[np.maximum(idx - k, 0)]
        np.minimum(low, back, out=low)
        np.maximum(high, back, out=high)
        first_move[(first_move < 0) & (np.abs(back - now) >= math.log(2.0))] = k
    since = np.where(first_move >= 0, first_move * grid_dt, history) / history
    means = [_ln(_window_mean(tr, t - w, t), mean) for w in (*WINDOWS, history)]
    ago5 = _ln([tr.capacity_at(x) for x in (t - 5.0).tolist()], mean)
    design = np.column_stack([np.ones_like(now), now, now * now, *means,
                              ago5, low, high,
                              now * means[1], now * means[-1], since, since * now,
                              means[-1] * means[-1], ago5 * now])
    return Samples(design, _ln(_window_mean(tr, t, t + horizon), mean))


def split_samples(traces: list[BandwidthTrace], horizon: float,
                  history: float, step: float) -> tuple[Samples | None, int]:
    """Every trace's samples stacked (None if none gives any), and how many traces gave
    none."""
    parts = [trace_samples(tr, horizon, history, step) for tr in traces]
    kept = [p for p in parts if p is not None]
    if not kept:
        return None, len(parts)
    return (Samples(np.concatenate([p.design for p in kept]),
                    np.concatenate([p.target for p in kept])), len(parts) - len(kept))


class Score(NamedTuple):
    """One forecast's fit on one set of samples."""

    r2: float
    rms_factor: float  # exp(RMSE of the log forecast): the typical error as a rate factor
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


def report(train: Samples, held: dict[str, Samples]) -> list[dict[str, Any]]:
    """Fit the three forecasts on ``train`` and score them on it and on each of ``held``: a
    row per sample set with ``split``, ``samples``, ``r2_now``, ``r2_history``,
    ``rms_now``, ``rms_history`` and the shares of the *now* forecast's squared error that
    the recent means (``removed_means``) and the whole history (``removed_history``)
    remove."""
    cols = {"now": N_NOW, "means": N_MEANS, "history": train.design.shape[1]}
    coefs = {k: fit(train.design[:, :c], train.target) for k, c in cols.items()}
    rows = []
    for name, s in {"train (fitted)": train, **held}.items():
        fits = {k: score(s.design[:, :c], s.target, coefs[k]) for k, c in cols.items()}
        base = fits["now"].mse
        rows.append({"split": name, "samples": int(s.target.size),
                     "r2_now": fits["now"].r2, "r2_history": fits["history"].r2,
                     "rms_now": fits["now"].rms_factor,
                     "rms_history": fits["history"].rms_factor,
                     **{f"removed_{k}": (base - fits[k].mse) / base if base > 0 else math.nan
                        for k in ("means", "history")}})
    return rows


class ForecastConductor(Conductor):
    """The conductor, estimating the remote -> local link (the one KV crosses) at
    ``min(capacity now, mean of the capacities in the telemetry snapshots it saw over the
    last window_s seconds)``, each snapshot counted once (not weighted by time); the
    local -> remote link of prefix copies it takes as reported. On a constant link it is
    the conductor."""

    def __init__(self, window_s: float) -> None:
        super().__init__()
        self.window_s = window_s
        self.name = f"conductor, link forecast over {window_s:g} s"
        self._seen: deque[tuple[float, float]] = deque()  # (snapshot time, capacity Gbps)

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        super().reset(profile, seed)
        self._seen.clear()

    def forecast_gbps(self, view: ClusterView) -> float:
        """Record the view's snapshot if it is new, and return the forecast capacity."""
        link, t = view.link, view.snapshot_time_s
        if not self._seen or self._seen[-1][0] != t:
            self._seen.append((t, link.capacity_gbps))
            while self._seen[0][0] < t - self.window_s:
                self._seen.popleft()
        return min(link.capacity_gbps, sum(c for _, c in self._seen) / len(self._seen))

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        link = view.link
        view.link = LinkView(self.forecast_gbps(view), link.measured_gbps, link.utilization,
                             link.bytes_queued, link.transfers_in_flight, link.rtt_s)
        try:
            return super().decide(request, view)
        finally:
            view.link = link  # leave the caller's view as it was given


def route(sc: Scenario, seeds: int, requests: int | None,
          windows: list[float]) -> list[dict[str, Any]]:
    """The conductor and a :class:`ForecastConductor` per window on the eval split: a row per
    window with ``window_s``, ``ratio`` (the paired goodput ratio to the conductor: mean and
    95% half-width over seeds), ``attainment`` and ``conductor_attainment`` (means)."""
    base = [run_policy(sc, Conductor(), s, "eval", requests)[0] for s in range(seeds)]
    rows = []
    for w in windows:
        runs = [run_policy(sc, ForecastConductor(w), s, "eval", requests)[0]
                for s in range(seeds)]
        ratio = ci95([r["goodput_rps"] / b["goodput_rps"]
                      for r, b in zip(runs, base, strict=True) if b["goodput_rps"] > 0])
        rows.append({"window_s": w, "ratio": ratio,
                     "attainment": float(np.mean([r["slo_attainment"] for r in runs])),
                     "conductor_attainment": float(np.mean([b["slo_attainment"]
                                                            for b in base]))})
    return rows


def with_link(sc: Scenario, path: str | None, fmt: str | None = None,
              gbps: float | None = None) -> Scenario:
    """``sc`` with its link replaced by the recorded trace file or folder at ``path`` (none:
    as it is), each trace rescaled to mean ``gbps`` (default: the scenario's link capacity,
    as ``--bandwidth-trace`` is elsewhere)."""
    if not path:
        return sc
    if not Path(path).is_dir():
        return sc.with_bandwidth_trace(path, fmt, scale_to_gbps=gbps)
    # a folder, which --bandwidth-trace elsewhere refuses: one trace drawn per run
    spec = {"kind": "trace_dir", "path": str(Path(path).resolve()),
            "scale_to_gbps": sc.profile.link.capacity_gbps if gbps is None else gbps}
    if fmt:
        spec["format"] = fmt
    return dataclasses.replace(sc, bandwidth_spec=spec)


def parse_windows(text: str) -> list[float]:
    """``--route-windows``: positive seconds, comma-separated."""
    out = []
    for item in text.split(","):
        try:
            out.append(positive_float(item))
        except argparse.ArgumentTypeError:
            raise PrfaasInputError(f"expected positive seconds, got {item.strip()!r}",
                                   "--route-windows") from None
    return out


def _check_args(args: argparse.Namespace) -> None:
    if not max(WINDOWS) <= args.history <= MAX_WINDOW_S:
        raise PrfaasInputError(f"must be {max(WINDOWS):g} to {MAX_WINDOW_S:g} s, got "
                               f"{args.history:g}", "--history")
    if args.horizon > MAX_WINDOW_S:
        raise PrfaasInputError(f"must be at most {MAX_WINDOW_S:g} s, got {args.horizon:g}",
                               "--horizon")
    if args.step < MIN_STEP_S:
        raise PrfaasInputError(f"must be at least {MIN_STEP_S:g} s, got {args.step:g}",
                               "--step")
    for option in ("bandwidth_format", "bandwidth_gbps"):
        if getattr(args, option) is not None and not args.bandwidth_trace:
            raise PrfaasInputError("applies to --bandwidth-trace, which is not given",
                                   f"--{option.replace('_', '-')}")


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
                    help=f"seconds between decision times (default 1, at least {MIN_STEP_S:g})")
    ap.add_argument("--route-seeds", type=non_negative_int, default=0, metavar="K",
                    help="also route the eval split's seeds 0..K-1 with the conductor and "
                         "with a forecasting conductor (default 0: skip)")
    ap.add_argument("--route-windows", default="5,15", metavar="W[,W]",
                    help="the forecasting conductor's look-back windows (s; default 5,15)")
    ap.add_argument("--requests", type=positive_int,
                    help="requests per routing run (default: the scenario's)")
    args = ap.parse_args()
    windows = parse_windows(args.route_windows)
    _check_args(args)
    sc = with_link(load_scenario(args.scenario), args.bandwidth_trace, args.bandwidth_format,
                   args.bandwidth_gbps)
    link = args.bandwidth_trace or f"{sc.name}'s link"
    span = SPAN_FACTOR * (args.history + args.horizon)
    splits: dict[str, Samples] = {}
    used: dict[str, str] = {}
    for split in ("train", "eval"):
        traces = list(sc.bandwidth_sampler(split).traces)
        if all(tr.n_segments < 2 for tr in traces):
            raise PrfaasInputError("the link is constant: there is nothing to forecast", link)
        samples, n_short = split_samples(traces, args.horizon, args.history, args.step)
        if samples is None or samples.target.size < 50:
            longest = max(tr.period_s for tr in traces)
            raise PrfaasInputError(
                f"the {split} split's links give {0 if samples is None else samples.target.size}"
                f" samples (need 50): {n_short} of its {len(traces)} traces are shorter than "
                f"{SPAN_FACTOR:g} x (--history + --horizon) = {span:g} s (the longest spans "
                f"{longest:g} s)", link)
        splits[split] = samples
        used[split] = f"{len(traces) - n_short} of {len(traces)}"
    print(f"{link}: forecast of ln(mean capacity over the next {args.horizon:g} s), fitted "
          f"on the train split's links, scored on the eval split's; history "
          f"{args.history:g} s, a decision every {args.step:g} s; traces spanning less than "
          f"{span:g} s skipped")
    print("| links | traces used | samples | R² now | R² with history | RMS error now | "
          "RMS error with history | error removed: recent means | all history |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = report(splits["train"], {"eval (held out)": splits["eval"]})
    for r, split in zip(rows, ("train", "eval"), strict=True):
        print(f"| {r['split']} | {used[split]} | {r['samples']} | {r['r2_now']:.3f} | "
              f"{r['r2_history']:.3f} | x{r['rms_now']:.3f} | x{r['rms_history']:.3f} | "
              f"{100 * r['removed_means']:.1f}% | {100 * r['removed_history']:.1f}% |")
    if args.route_seeds:
        print(f"\nrouting on the eval split, seeds 0..{args.route_seeds - 1}: the conductor "
              "against the conductor estimating the KV link at min(capacity now, mean of "
              "the snapshots it saw over the last W s)")
        print("| W (s) | goodput / conductor | SLO attainment | conductor's |")
        print("|---|---|---|---|")
        for r in route(sc, args.route_seeds, args.requests, windows):
            print(f"| {r['window_s']:g} | {fmt_ci(*r['ratio'])}x | {r['attainment']:.3f} | "
                  f"{r['conductor_attainment']:.3f} |")


if __name__ == "__main__":
    sys.exit(run_script(main))
