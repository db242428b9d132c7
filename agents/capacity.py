"""The arrival rate a policy sustains at an SLO attainment goal: DistServe's goodput.

``prfaas compare`` scores policies at one load: goodput there is the SLO-meeting
completions per second of a run, so a policy that serves every request within SLO
gains at most ``1 / attainment`` over another at the same load. DistServe defines goodput
instead as the highest request rate a system serves with its SLO attainment at a goal
(90%, say), which is what capacity planning asks. This module measures that: it runs
each policy at a grid of arrival rates (multiples of the scenario's mean rate on the split)
on identical workloads and links per seed, and reads off where each seed's attainment
first falls below the goal.

The rate is read per seed, so that two policies are paired on the same workloads, from
the lowest grid rate upward: the sustained rate is linearly interpolated between the last
grid rate that meets the goal and the first that does not (:func:`sustained_rate`).
Attainment is not monotone in the rate on one seed (a faster replay of the same requests
moves the bursts against the link's drops), so a later recovery above the goal is not
counted: the first crossing is the conservative reading, as a load test's would be.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.compare import ci95, run_policy, save_png
from agents.registry import is_heuristic, policy_factory
from prfaas_gym.contract import Policy
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.scenario import Scenario

#: every file a capacity sweep writes into its ``--out``
CAPACITY_FILES = ("capacity.csv", "capacity.json", "attainment.png")


@dataclass(frozen=True)
class Sustained:
    """Where a seed's attainment first falls below the goal.

    ``rate`` is the interpolated crossing (req/s). ``censored`` is None for a crossing
    inside the grid; ``"above"`` when no grid rate misses the goal (``rate`` is the highest
    grid rate, a lower bound); ``"below"`` when the lowest already misses it (``rate`` is
    the lowest grid rate, an upper bound)."""

    rate: float
    censored: str | None = None


@dataclass(frozen=True)
class CapacityPoint:
    """One run of the sweep: ``policy`` on ``seed`` at mean arrival rate ``rate``."""

    policy: str
    seed: int
    rate: float
    slo_attainment: float
    goodput_rps: float
    ttft_p90_s: float


def parse_scales(text: str) -> list[float]:
    """``--scales``: ``LO:HI:STEP`` (``LO``, ``LO + STEP``, ... up to ``HI``, which is
    included where a step lands on it) or comma-separated multiples of the scenario's mean
    rate, returned ascending. :class:`PrfaasInputError` naming ``--scales`` for a value
    that is not a finite number > 0, a step that is not, more than 201 rates, a repeated
    value, or fewer than two rates."""
    def number(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise PrfaasInputError(f"{s.strip()!r} is not a number", "--scales") from None
        if not (math.isfinite(v) and v > 0):
            raise PrfaasInputError(f"{s.strip()!r} must be a finite number > 0", "--scales")
        return v

    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise PrfaasInputError(f"{text!r}: give LO:HI:STEP or a comma-separated list",
                                   "--scales")
        lo, hi, step = (number(p) for p in parts)
        if hi <= lo:
            raise PrfaasInputError(f"{text!r}: HI must exceed LO", "--scales")
        steps = (hi - lo) / step
        if not steps < 201:  # inf where STEP underflows
            raise PrfaasInputError(f"{text!r} gives more than 201 rates", "--scales")
        # 12 significant digits: 0.6 + 3 * 0.1 is 0.9, not 0.8999999999999999
        scales = [float(f"{lo + i * step:.12g}") for i in range(int(steps + 1e-9) + 1)]
    else:
        scales = [number(p) for p in text.split(",") if p.strip()]
    if len(set(scales)) < len(scales):
        raise PrfaasInputError(f"{text!r} repeats a value", "--scales")
    if len(scales) < 2:
        raise PrfaasInputError(f"{text!r}: give at least two rates", "--scales")
    return sorted(scales)


def check_goal(goal: float) -> float:
    """``--goal``: an SLO attainment in (0, 1]."""
    if not (math.isfinite(goal) and 0 < goal <= 1):
        raise PrfaasInputError(f"must be an SLO attainment in (0, 1], got {goal!r}", "--goal")
    return goal


def sustained_rate(rates: Sequence[float], attainment: Sequence[float],
                   goal: float) -> Sustained:
    """The rate at which ``attainment`` (measured at ascending ``rates``) first falls
    below ``goal``, linearly interpolated between the grid rates on either side (see the
    module docstring); an undefined (NaN) attainment is a miss, at the rate before it.
    ValueError for rates that are not ascending or lists of other lengths."""
    if len(rates) != len(attainment) or not rates:
        raise ValueError("one attainment per rate, and at least one rate")
    if any(b <= a for a, b in zip(rates, rates[1:])):
        raise ValueError("rates must be ascending")
    for k, (r, a) in enumerate(zip(rates, attainment)):
        if not a >= goal:  # NaN (nothing to attain) is not meeting it
            if k == 0:
                return Sustained(float(r), "below")
            r0, a0 = rates[k - 1], attainment[k - 1]
            if math.isnan(a):  # no line to follow: the last rate that met it
                return Sustained(float(r0))
            return Sustained(float(r0 + (a0 - goal) / (a0 - a) * (r - r0)))
    return Sustained(float(rates[-1]), "above")


def load_learned(scenario: Scenario, specs: dict[str, str]) -> dict[str, Callable[[], Policy]]:
    """The factories of the checkpoints among ``specs`` (label -> spec), each loaded once;
    :class:`PrfaasInputError` for a spec that is neither a heuristic nor a checkpoint."""
    return {lab: policy_factory(s, scenario) for lab, s in specs.items() if not is_heuristic(s)}


def for_scenario(policy: Policy, scenario: Scenario) -> Policy:
    """``policy`` as it would be loaded for ``scenario``: a role checkpoint
    (:class:`~agents.learned.LearnedRoles`) gets its router built again, so a threshold
    router takes ``scenario``'s planned threshold; a routing checkpoint carries its own
    scales and is returned as it is. The ONNX session is shared, not reloaded."""
    from agents.learned import LearnedRoles

    if isinstance(policy, LearnedRoles):
        bound = LearnedRoles(policy.router, policy.name, scenario=scenario)
        bound.scenario = scenario
        return bound
    return policy


def sweep(scenario: Scenario, specs: dict[str, str], rates: Sequence[float], seeds: int,
          split: str = "eval", n: int | None = None, progress: bool = True,
          learned: dict[str, Callable[[], Policy]] | None = None) -> list[CapacityPoint]:
    """Run every policy (``specs`` maps a label to a heuristic name or checkpoint path) at
    every rate on seeds ``0..seeds-1``. At each rate a heuristic is built for the scenario
    at that rate (:meth:`Scenario.with_rate`), so a planned threshold is planned, and
    ``prfaas-threshold-tuned``'s grid-searched on the training split, for the load it
    serves; a checkpoint is loaded once (``learned``: the factories :func:`load_learned`
    gives, loaded here where None) and bound to each rate's scenario
    (:func:`for_scenario`)."""
    from tqdm import tqdm

    if learned is None:
        learned = load_learned(scenario, specs)
    points = []
    jobs = [(r, s, lab) for r in rates for s in range(seeds) for lab in specs]
    bar = tqdm(jobs, desc=f"capacity {scenario.name}", unit="run", disable=not progress,
               leave=False)
    factories: dict[str, Callable[[], Policy]] = {}
    at_rate = None
    for rate, seed, lab in bar:
        if rate != at_rate:
            at_rate = rate
            sc = scenario.with_rate(rate)
            factories = {name: policy_factory(spec, sc) if is_heuristic(spec)
                         else _bound(learned[name], sc) for name, spec in specs.items()}
        bar.set_postfix_str(f"{lab} {rate:.3g} req/s seed {seed}")
        result, _ = run_policy(sc, factories[lab](), seed, split, n)
        p90 = result["ttft_s"]["p90"]  # None where the run completed nothing
        points.append(CapacityPoint(lab, seed, float(rate), float(result["slo_attainment"]),
                                    float(result["goodput_rps"]),
                                    math.nan if p90 is None else float(p90)))
    return points


def _bound(factory: Callable[[], Policy], sc: Scenario) -> Callable[[], Policy]:
    """A factory of the checkpoint bound to ``sc`` (:func:`for_scenario`), built once."""
    policy = for_scenario(factory(), sc)
    return lambda: policy


def summarize_capacity(points: list[CapacityPoint], goal: float) -> dict[str, dict[str, Any]]:
    """Per policy: each seed's :class:`Sustained`, their mean ± 95% CI (censored seeds
    included at their bound, and counted), the mean attainment curve (± 95% CI per rate)
    and the rate where that mean curve crosses the goal."""
    out: dict[str, dict[str, Any]] = {}
    for lab in dict.fromkeys(p.policy for p in points):
        mine = [p for p in points if p.policy == lab]
        rates = sorted({p.rate for p in mine})
        seeds = sorted({p.seed for p in mine})
        att = {(p.seed, p.rate): p.slo_attainment for p in mine}
        per_seed = {s: sustained_rate(rates, [att[s, r] for r in rates], goal) for s in seeds}
        curve = [ci95([att[s, r] for s in seeds]) for r in rates]
        out[lab] = {
            "rates": rates,
            "per_seed": per_seed,
            "sustained": ci95([v.rate for v in per_seed.values()]),
            "censored": sum(v.censored is not None for v in per_seed.values()),
            "curve": curve,
            "mean_curve": sustained_rate(rates, [m for m, _ in curve], goal),
        }
    return out


def paired_capacity(summary: dict[str, dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Per policy, its sustained rate over ``baseline``'s, paired per seed, mean ± 95% CI,
    over the seeds where neither reading is censored (a bound is not a rate)."""
    base = summary[baseline]["per_seed"]
    out = {}
    for lab, s in summary.items():
        ratios = {seed: v.rate / base[seed].rate for seed, v in s["per_seed"].items()
                  if v.censored is None and base[seed].censored is None}
        out[lab] = {"ratios": ratios, "ratio": ci95(list(ratios.values()))}
    return out


def best_heuristic(summary: dict[str, dict[str, Any]], specs: dict[str, str]) -> str | None:
    """The heuristic with the highest mean sustained rate (None if no heuristic ran)."""
    hs = [lab for lab in summary if is_heuristic(specs[lab])]
    return max(hs, key=lambda h: summary[h]["sustained"][0]) if hs else None


def points_csv(points: list[CapacityPoint]) -> str:
    """``capacity.csv``: one row per run."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["policy", "seed", "rate", "slo_attainment", "goodput_rps", "ttft_p90_s"])
    for p in points:
        w.writerow([p.policy, p.seed, f"{p.rate:.6g}", f"{p.slo_attainment:.6f}",
                    f"{p.goodput_rps:.6f}", f"{p.ttft_p90_s:.6g}"])
    return buf.getvalue()


def plot_attainment(summary: dict[str, dict[str, Any]], goal: float, nominal: float,
                    title: str, path: Path) -> None:
    """``attainment.png``: each policy's mean SLO attainment against the arrival rate (a
    95% band over seeds), the goal, and where each mean curve crosses it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, (lab, s) in enumerate(summary.items()):
        color = f"C{k % 10}"
        mean = np.array([m for m, _ in s["curve"]])
        half = np.nan_to_num(np.array([h for _, h in s["curve"]]))
        ax.plot(s["rates"], mean, marker="o", ms=3, color=color, label=lab)
        ax.fill_between(s["rates"], mean - half, mean + half, color=color, alpha=0.15)
        cross = s["mean_curve"]
        if cross.censored is None:
            ax.plot([cross.rate], [goal], marker="v", ms=8, color=color)
    ax.axhline(goal, color="k", ls=":", lw=1, label=f"goal {goal:g}")
    ax.axvline(nominal, color="gray", lw=1, alpha=0.6, label="the scenario's rate")
    ax.set_xlabel("mean arrival rate (req/s)")
    ax.set_ylabel("SLO attainment (mean over seeds, 95% band)")
    ax.set_title(f"Sustained rate at SLO attainment {goal:g} — {title}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
