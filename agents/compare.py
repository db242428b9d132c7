"""Side-by-side comparison of policies on identical traces and seeds.

Every policy runs on the same workload and bandwidth sample for seed ``s`` (``s`` = 0..K-1),
so differences come from the policies alone. The table reports the mean over seeds and a 95%
confidence interval (Student's t over the per-seed values).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from prfaas_gym.contract import Policy
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.metrics import json_safe, latencies
from prfaas_gym.scenario import Scenario
from prfaas_gym.simulator import Simulator

# two-sided 97.5% quantiles of Student's t for df = 1..30 (beyond: :func:`_t975`)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

SUMMARY_METRICS = ("goodput_rps", "throughput_rps", "slo_attainment", "ttft_mean_s", "ttft_p90_s",
                   "ttft_p99_s", "tpot_mean_s", "offload_fraction", "link_utilization",
                   "prefix_hit_rate", "rejected", "role_switches", "role_switches_in_drain",
                   "sim_requests_per_s")


class SeedStat(NamedTuple):
    """One metric over seeds: mean, half-width of its 95% CI (NaN with fewer than two
    values: one value has no interval) and ``n``, the seeds that define it (a run that
    completed nothing has no TTFT)."""

    mean: float
    ci95: float
    n: int


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval) of the values that are not None or
    NaN; the half-width is NaN for one value, both are NaN for none."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    if a.size == 1:
        return float(a[0]), math.nan
    df = a.size - 1
    t = _T975[df - 1] if df <= len(_T975) else _t975(df)
    return float(a.mean()), float(t * a.std(ddof=1) / math.sqrt(a.size))


def fmt_ci(mean: float, half: float, digits: int = 3) -> str:
    """``mean ± half`` to ``digits`` decimals; the mean alone where there is no interval
    (one seed), ``n/a`` where there is no mean."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")


def _t975(df: int) -> float:
    """Student's t 97.5% quantile for ``df`` > 30 by the Cornish-Fisher expansion around
    the normal's (within 1e-4 of the exact value there)."""
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of one result dict, for tables and CSV."""
    ttft, tpot = result["ttft_s"], result["tpot_s"]
    nan = math.nan
    return {
        "goodput_rps": result["goodput_rps"],
        "throughput_rps": result["throughput_rps"],
        "slo_attainment": result["slo_attainment"],
        "ttft_mean_s": ttft["mean"] if ttft["mean"] is not None else nan,
        "ttft_p90_s": ttft["p90"] if ttft["p90"] is not None else nan,
        "ttft_p99_s": ttft["p99"] if ttft["p99"] is not None else nan,
        "tpot_mean_s": tpot["mean"] if tpot["mean"] is not None else nan,
        "offload_fraction": result["offload_fraction"],
        "link_utilization": result["link_utilization"],
        "prefix_hit_rate": result["prefix_hit_rate"],
        "rejected": float(result["rejected"]),
        "role_switches": float(result["role_switches"]),
        "role_switches_in_drain": float(result["role_switches_in_drain"]),
        "sim_requests_per_s": result["sim_requests_per_s"] or nan,
    }


@dataclass
class RunRecord:
    policy: str
    seed: int
    result: dict[str, Any]
    ttft: np.ndarray
    timeseries: dict[str, list[float]]


def run_policy(scenario: Scenario, policy: Policy, seed: int, split: str = "all",
               n: int | None = None, rate: float | None = None) -> tuple[dict[str, Any], Simulator]:
    """One simulation of ``policy`` on the scenario's seed-``seed`` workload and link."""
    w = scenario.workload(seed, n=n, rate=rate, split=split)
    sim = Simulator(scenario.profile, w, scenario.bandwidth(seed, split), scenario.sim)
    t0 = time.perf_counter()
    sim.run(policy, seed)
    return sim.result(time.perf_counter() - t0), sim


def add_eval_arguments(ap: argparse.ArgumentParser,
                       default_scenario: str | None = "bursty-fluctuating") -> None:
    """``--scenario`` (required when ``default_scenario`` is None), ``--seeds``,
    ``--requests``, and ``--trace``, ``--bandwidth-trace`` and ``--rate`` as ``prfaas
    compare`` takes them (:func:`prfaas_gym.cli.scenario_from_args` applies them): the
    options of the scripts that evaluate on a scenario's eval split."""
    from prfaas_gym.cli import add_trace_args, positive_float, positive_int

    if default_scenario is None:
        ap.add_argument("--scenario", required=True)
    else:
        ap.add_argument("--scenario", default=default_scenario)
    ap.add_argument("--seeds", type=positive_int, default=5)
    ap.add_argument("--requests", type=positive_int,
                    help="requests per run (default: the scenario's)")
    add_trace_args(ap, "at its own arrival times (add --rate to rescale); its eval split "
                       "(the last eval_fraction of its span, 20%% by default) is the one "
                       "scored")
    ap.add_argument("--rate", type=positive_float,
                    help="mean arrival rate (req/s): sets a synthetic workload's rate or "
                         "time-scales a recorded one")


def given_sources(args: argparse.Namespace) -> str:
    """`` (--trace F, --rate R)`` for a report's heading: the options of
    :func:`add_eval_arguments` that replaced the scenario's requests, link or load ('' for
    none)."""
    from prfaas_gym.cli import SOURCE_OPTIONS

    given = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                      if k in SOURCE_OPTIONS and v is not None)
    return f" ({given})" if given else ""


def compare(scenario: Scenario, policies: dict[str, Callable[[], Policy]], seeds: int,
            split: str = "all", n: int | None = None, rate: float | None = None,
            progress: bool = True) -> list[RunRecord]:
    """Run every policy on seeds ``0..seeds-1``; ``policies`` maps a label to a factory."""
    from tqdm import tqdm

    jobs = [(name, s) for s in range(seeds) for name in policies]
    records = []
    bar = tqdm(jobs, desc=f"compare {scenario.name}", unit="run", disable=not progress,
               leave=False)
    for name, s in bar:
        bar.set_postfix_str(f"{name} seed {s}")
        result, sim = run_policy(scenario, policies[name](), s, split, n, rate)
        ttft, _ = latencies(sim.completed)
        records.append(RunRecord(name, s, result, ttft, sim.timeseries))
    return records


def seed_stat(values: Sequence[float]) -> SeedStat:
    """:class:`SeedStat` of per-seed values; None and NaN (undefined on that seed) are left
    out and not counted in ``n``."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return SeedStat(*ci95(defined), len(defined))


def summarize(records: list[RunRecord]) -> dict[str, dict[str, SeedStat]]:
    """policy -> metric -> :class:`SeedStat` over seeds."""
    out: dict[str, dict[str, SeedStat]] = {}
    for name in dict.fromkeys(r.policy for r in records):
        rows = [flat_metrics(r.result) for r in records if r.policy == name]
        out[name] = {m: seed_stat([row[m] for row in rows]) for m in SUMMARY_METRICS}
    return out


_COUNTS = ("rejected",)  # per run: one decimal (role switches: :func:`role_switch_cell`)


def switched_roles(summary: dict[str, dict[str, SeedStat]]) -> bool:
    """Whether any policy of a :func:`summarize` summary switched local roles (a summary
    without the metric: no): the tables add a role-switch column only then."""
    return any((st := stats.get("role_switches")) is not None and st.mean > 0
               for stats in summary.values())


def role_switch_cell(stats: dict[str, SeedStat]) -> str:
    """Role switches landed per run (mean), with those that landed after the last arrival,
    in the drain, in brackets when there were any: ``2.0 (0.2 in the drain)``."""
    text = fmt_ci(stats["role_switches"].mean, math.nan, 1)
    drain = stats.get("role_switches_in_drain")
    if drain is not None and drain.mean > 0:
        text += f" ({fmt_ci(drain.mean, math.nan, 1)} in the drain)"
    return text


def print_table(summary: dict[str, dict[str, SeedStat]], title: str = "") -> None:
    """The comparison table. A cell defined on fewer seeds than its policy ran (a TTFT where
    a run completed nothing) says on how many: ``4.662 (1 of 2 seeds)``."""
    from rich.console import Console
    from rich.table import Table

    cols = [("goodput_rps", "goodput req/s"), ("slo_attainment", "SLO att."),
            ("ttft_mean_s", "TTFT mean s"), ("ttft_p90_s", "TTFT P90 s"),
            ("throughput_rps", "thru req/s"), ("offload_fraction", "offload"),
            ("link_utilization", "link util"), ("rejected", "rejected")]
    width = 160
    if switched_roles(summary):
        cols.append(("role_switches", "role switches"))
        width += 30
    table = Table(title=title or None,
                  caption="TTFT over completed requests; a rejected request is an SLO miss")
    table.add_column("policy")
    for _, label in cols:
        table.add_column(label, justify="right")
    for name, s in summary.items():
        runs = max(v.n for v in s.values())
        table.add_row(name, *(role_switch_cell(s) if k == "role_switches"
                              else _fmt(s[k], runs, count=k in _COUNTS) for k, _ in cols))
    Console(width=width).print(table)


def _fmt(stat: SeedStat, runs: int, count: bool = False) -> str:
    """``mean ± half`` (the mean alone for one seed); a count (mean requests per run) gets
    one decimal; ``-`` where no seed defines the metric."""
    if stat.n == 0 or math.isnan(stat.mean):
        return "-"
    digits = 1 if count or abs(stat.mean) >= 100 else 3
    # identical values (a half-width of 0): the mean alone
    text = fmt_ci(stat.mean, stat.ci95 or math.nan, digits)
    return text if stat.n == runs else f"{text} ({stat.n} of {runs} seeds)"


#: The files ``prfaas compare`` (:func:`write_outputs`) writes into its ``--out``.
COMPARISON_FILES = ("runs.csv", "summary.json", "ttft_cdf.png", "goodput.png", "timeseries.png")
#: Every file a comparison or ``heldout.py`` writes there: a new comparison removes those of
#: the previous one it did not replace, so that the folder never mixes two runs' files.
RESULT_FILES = (*COMPARISON_FILES, "heldout.json", "ratios.png")


def write_outputs(records: list[RunRecord], out_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """runs.csv (one row per policy x seed), summary.json and PNG plots. Every file is
    written to a temporary file first and all of them replace the earlier ones only once
    all are written (a symlink is written through), so an error while writing leaves an
    earlier comparison's files as they were. Then that comparison's other
    :data:`RESULT_FILES` are removed (a symlink among them is kept): the folder never
    mixes two runs' files."""
    from prfaas_gym.cli import replacing

    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["policy", "seed", *SUMMARY_METRICS, "link_mean_gbps", "link_rtt_s",
                "link_trace"])
    for r in records:
        m = flat_metrics(r.result)
        link = r.result["link"]
        w.writerow([r.policy, r.seed, *(m[k] for k in SUMMARY_METRICS), link["mean_gbps"],
                    link["rtt_s"], link["trace"]])
    summary = summarize(records)
    summary_text = json.dumps(json_safe({
        **meta,
        # a metric no run defines (no completion: no TTFT) is null: strict JSON has no NaN
        "summary": {p: {m: v._asdict() for m, v in s.items()} for p, s in summary.items()},
        "runs": [{"policy": r.policy, "seed": r.seed, "result": r.result} for r in records],
    }), indent=2, default=_refuse, allow_nan=False)
    runs, js = out_dir / "runs.csv", out_dir / "summary.json"
    try:
        with contextlib.ExitStack() as staged:
            def stage(path: Path) -> Path:  # replaced when the block ends without an error
                return staged.enter_context(replacing(path))

            stage(runs).write_text(buf.getvalue())
            stage(js).write_text(summary_text)
            written = [runs, js, *plot(records, summary, out_dir, meta.get("scenario", ""),
                                       stage=stage)]
    except OSError as e:
        raise PrfaasInputError(f"cannot write the results ({e.strerror or e}); an earlier "
                               "comparison's files there are as they were", out_dir) from None
    for name in set(RESULT_FILES) - {p.name for p in written}:
        stale = out_dir / name
        if not stale.is_symlink() and stale.is_file():
            stale.unlink()
    return written


def save_png(fig: Any, path: Path, stage: Callable[[Path], Path] | None = None) -> None:
    """``fig`` as a PNG at ``path``, written whole (:func:`prfaas_gym.cli.replacing`); with
    ``stage``, to the temporary path ``stage(path)`` gives, which its caller puts in place."""
    from prfaas_gym.cli import replacing

    if stage is not None:
        fig.savefig(stage(path), dpi=120, format="png")
        return
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    except OSError as e:
        raise PrfaasInputError(f"cannot write the plot ({e.strerror or e})", path) from None


def _refuse(o: Any) -> Any:
    raise TypeError(f"summary.json cannot hold a {type(o).__name__}")


def plot(records: list[RunRecord], summary: dict[str, dict[str, SeedStat]],
         out_dir: Path, title: str, stage: Callable[[Path], Path] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        ttft = np.sort(np.concatenate([r.ttft for r in records if r.policy == name] or [np.zeros(0)]))
        if ttft.size:
            ax.plot(ttft, np.arange(1, ttft.size + 1) / ttft.size, label=name)
    slo = records[0].result["slo"]["ttft_s"] if records else None
    if slo:
        ax.axvline(slo, color="k", ls=":", lw=1, label="TTFT SLO")
    ax.set_xscale("log")
    ax.set_xlabel("TTFT (s)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_title(f"TTFT CDF — {title} (all seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "ttft_cdf.png"
    save_png(fig, p, stage)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    means = [summary[n]["goodput_rps"].mean for n in names]
    errs = [np.nan_to_num(summary[n]["goodput_rps"].ci95) for n in names]
    ax.bar(names, means, yerr=errs, capsize=4, color="tab:blue")
    ax.set_ylabel("goodput (SLO-meeting req/s)")
    seeds = len({r.seed for r in records})
    ax.set_title(f"Goodput per policy — {title}" + (" (mean, 95% CI)" if seeds > 1 else ""))
    ax.tick_params(axis="x", rotation=30)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = out_dir / "goodput.png"
    save_png(fig, p, stage)
    plt.close(fig)
    paths.append(p)

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for name in names:
        rec = next((r for r in records if r.policy == name and r.seed == 0), None)
        if rec is None or not rec.timeseries["t"]:
            continue
        ts = rec.timeseries
        t = np.asarray(ts["t"])
        cap = np.asarray(ts["link_deliverable_gbps"])  # over each interval, as measured
        util = np.divide(ts["link_gbps"], cap, out=np.zeros_like(cap), where=cap > 0)
        color = a1.plot(t, util, lw=0.8, label=name)[0].get_color()
        q = np.asarray(ts["remote_queue_tokens"]) + np.asarray(ts["local_queue_tokens"])
        a2.plot(t, q / 1000.0, lw=0.8, label=name, color=color)
        for x in rec.result["role_switch_times_s"]:
            for a in (a1, a2):
                a.axvline(x, color=color, ls="--", lw=0.7, alpha=0.6)
    a1.set_ylabel("link utilisation")
    a1.set_title(f"Link utilisation and prefill queue depth over time — {title} (seed 0)"
                 + ("\ndashed: a role switch landed" if any(
                     r.result["role_switch_times_s"] for r in records if r.seed == 0) else ""))
    a2.set_ylabel("queued prefill tokens (K)")
    a2.set_xlabel("simulated time (s)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    p = out_dir / "timeseries.png"
    save_png(fig, p, stage)
    plt.close(fig)
    paths.append(p)
    return paths
