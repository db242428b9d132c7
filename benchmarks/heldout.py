"""Held-out evaluation of learned policies against the heuristics.

Runs every heuristic but ``local-only`` and ``random`` (far below the others on the shipped
scenarios), the threshold heuristic with its threshold grid-searched on the
training split (``prfaas-threshold-tuned``), and each learned policy (``--policy``, which
may be repeated: a routing policy and a role policy side by side) on the scenario's
**eval** split (held-out trace windows, or synthetic seeds offset from training) for seeds
0..K-1, all on identical workloads and links. Prints a markdown table (mean ± 95% CI over
seeds) and, for each learned policy, its paired per-seed goodput ratio to the best heuristic,
the same ratio of SLO-meeting requests (goodput without its span: goodput divides by the
time to the last arrival or completion, whichever is later, so a request served late
within SLO lengthens a policy's span), and the headroom (what serving every request
within SLO would give at the best heuristic's span); writes the comparison's
CSV/JSON/plots, ``heldout.json`` and ``ratios.png`` (each learned policy's paired ratio per
seed, its mean and 95% CI, and the headroom) to ``--out``. ``--trace``,
``--bandwidth-trace``, ``--rate`` and ``--deployment`` replace the scenario's workload,
link, load and instance counts as in ``prfaas train`` and ``prfaas compare``, for a policy
trained on your own trace or deployment.

    python benchmarks/heldout.py --scenario bursty-fluctuating \
        --policy agents/policies/bursty-fluctuating.onnx \
        --policy agents/policies/bursty-fluctuating-roles.onnx --seeds 5 \
        --out results/heldout-bursty
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from agents.compare import (
    add_eval_arguments,
    ci95,
    compare,
    fmt_ci,
    given_sources,
    role_switch_cell,
    summarize,
    switched_roles,
    write_outputs,
)
from agents.registry import HEURISTICS, TUNED_THRESHOLD, is_heuristic, policy_factory
from prfaas_gym.cli import (
    _make_dir,
    _writable_dir,
    note_seeds_share_requests,
    refuse_results_over_inputs,
    results_dir_lock,
    run_script,
    scenario_from_args,
    write_atomically,
)
from prfaas_gym.metrics import json_safe


def learned_label(policy: str, heuristics: list[str]) -> str:
    """The learned policy's row label: its file or directory name, prefixed with
    ``learned:`` where that is a heuristic's name (a run directory called ``conductor``
    must not replace the conductor's row)."""
    name = Path(policy).name
    return f"learned:{name}" if name in heuristics else name


def learned_labels(policies: list[str], heuristics: list[str]) -> dict[str, str]:
    """Row label -> path of each learned policy; policies with one file name (two runs'
    ``best_model.zip``) are told apart by their parent directory. ValueError if a file is
    given twice (``runs/x`` and ``runs/x/`` are one)."""
    paths = [Path(p).resolve() for p in policies]
    if len(set(paths)) < len(paths):
        raise ValueError("a --policy is given twice")
    labels = [learned_label(str(p), heuristics) for p in paths]
    clash = {x for x in labels if labels.count(x) > 1}
    labels = [f"{p.parent.name}/{p.name}" if x in clash else x for p, x in zip(paths, labels)]
    if len(set(labels)) < len(labels):
        raise ValueError(f"the --policy rows would share a label ({labels}): give files whose "
                         "names (or parent directory and name) differ")
    return dict(zip(labels, policies))


def serve_all_ceiling(attainments: list[float]) -> tuple[float, float]:
    """What serving every request within SLO would give, as a ratio to a policy that
    attains ``attainments`` (per seed) at the same span (goodput counts SLO-meeting requests
    up to the last completion): ``1 / attainment`` per seed, mean ± 95% CI. Seeds where it
    served nothing are left out (no ratio exists)."""
    return ci95([1.0 / a for a in attainments if a > 0])


def paired_ratios(learned: dict[int, float], best: dict[int, float]) -> dict[int, float]:
    """``learned[s] / best[s]`` per seed ``s``, for the seeds where ``best[s] > 0`` (no
    ratio exists where the best heuristic served nothing)."""
    return {s: learned[s] / best[s] for s in best if best[s] > 0}


def plot_ratios(paired: dict[str, dict[str, Any]], best: str, ceiling: tuple[float, float],
                title: str, path: Path) -> None:
    """``ratios.png``: per learned policy, its per-seed goodput ratios to ``best`` (dots)
    and their mean ± 95% CI (a bar), against parity and the serve-all headroom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.compare import save_png

    fig, ax = plt.subplots(figsize=(8, 2.0 + 0.6 * len(paired)))
    for k, p in enumerate(paired.values()):
        xs = list(p["ratios"].values())
        ax.scatter(xs, [k] * len(xs), s=18, color="tab:blue", alpha=0.6, zorder=3,
                   label="per seed" if k == 0 else None)
        mean, half = p["ratio"]
        ax.errorbar([mean], [k], xerr=[[0 if math.isnan(half) else half]] * 2, fmt="D",
                    color="k", capsize=4, zorder=4, label="mean, 95% CI" if k == 0 else None)
    ax.axvline(1.0, color="gray", lw=1, label=f"{best} (parity)")
    if not math.isnan(ceiling[0]):
        ax.axvline(ceiling[0], color="tab:red", ls="--", lw=1,
                   label=f"serving every request at {best}'s span")
    ax.set_yticks(range(len(paired)), list(paired))
    ax.set_ylim(-0.7, len(paired) - 0.3)
    ax.set_xlabel(f"goodput / {best}'s, paired per seed (eval split)")
    fig.suptitle(f"Held out: learned policies against {best} — {title}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="center right", framealpha=0.9)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _refuse(o: object) -> object:
    raise TypeError(f"heldout.json cannot hold a {type(o).__name__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_eval_arguments(ap, default_scenario=None)
    ap.add_argument("--policy", required=True, action="append",
                    help="exported .onnx, run dir or .zip; repeat it for several policies")
    ap.add_argument("--out", help="directory for runs.csv, summary.json, heldout.json, "
                                  "ratios.png and the comparison's plots (created if absent; "
                                  "files of an earlier comparison there are replaced)")
    args = ap.parse_args()
    for policy in args.policy:
        if is_heuristic(policy):
            ap.error(f"--policy {policy!r} is a heuristic, and the table runs the heuristics "
                     f"already: give a checkpoint (.onnx, run directory or .zip; ./{policy} "
                     "for a file of that name)")
    # refused before the runs, not after
    out = _writable_dir(args.out) if args.out is not None else None
    sc = scenario_from_args(args)
    heuristics = [h for h in HEURISTICS if h not in ("random", "local-only")] + [TUNED_THRESHOLD]
    try:
        learned = learned_labels(args.policy, heuristics)
    except ValueError as e:
        ap.error(str(e))
    factories = {h: policy_factory(h, sc) for h in heuristics}
    factories.update({label: policy_factory(path, sc) for label, path in learned.items()})
    if out is not None:
        refuse_results_over_inputs(out, sc, args.policy)
    note_seeds_share_requests(sc, "eval", args.requests, args.seeds)
    if out is not None:
        _make_dir(out)
    records = compare(sc, factories, args.seeds, split="eval", n=args.requests, progress=True)
    summary = summarize(records)
    per_seed = {name: {r.seed: r.result for r in records if r.policy == name}
                for name in factories}
    heur_means = {h: summary[h]["goodput_rps"].mean for h in heuristics}
    best = max(heur_means, key=heur_means.__getitem__)

    def per_seed_of(name: str, metric: str) -> dict[int, float]:
        return {s: per_seed[name][s][metric] for s in range(args.seeds)}

    undefined = [s for s in range(args.seeds) if not per_seed[best][s]["goodput_rps"] > 0]
    if undefined:
        print(f"note: {best} served nothing within SLO on seed(s) {undefined}: the ratios "
              "leave them out", file=sys.stderr)
    p90_b = summary[best]["ttft_p90_s"].mean
    paired = {}
    for label in learned:
        ratios = paired_ratios(per_seed_of(label, "goodput_rps"),
                               per_seed_of(best, "goodput_rps"))
        met_ratios = paired_ratios(per_seed_of(label, "slo_met"), per_seed_of(best, "slo_met"))
        paired[label] = {"ratios": ratios, "ratio": ci95(list(ratios.values())),
                         "slo_met_ratios": met_ratios,
                         "slo_met_ratio": ci95(list(met_ratios.values())),
                         "ttft_p90": summary[label]["ttft_p90_s"].mean}
    print(f"\n{sc.name}{given_sources(args)}, eval split, "
          f"{'seed 0' if args.seeds == 1 else f'seeds 0..{args.seeds - 1}'}, "
          f"{records[0].result['requests']} requests per run; mean ± 95% CI over seeds "
          "(one seed: the mean alone); TTFT over completed requests\n")
    roles = switched_roles(summary)
    print("| policy | goodput (req/s) | P90 TTFT (s) | SLO attainment | rejected |"
          + (" role switches |" if roles else ""))
    print("|---|---|---|---|---|" + ("---|" if roles else ""))
    for name in factories:
        s = summary[name]
        g, p, a = s["goodput_rps"], s["ttft_p90_s"], s["slo_attainment"]
        p_seeds = "" if p.n == args.seeds else f" ({p.n} of {args.seeds} seeds)"
        print(f"| {name} | {fmt_ci(g.mean, g.ci95)} | {fmt_ci(p.mean, p.ci95, 2)}{p_seeds} | "
              f"{fmt_ci(a.mean, a.ci95)} | {fmt_ci(s['rejected'].mean, math.nan, 1)} |"
              + (f" {role_switch_cell(s)} |" if roles else ""))
    print(f"\nbest heuristic: {best}")
    for label, p in paired.items():
        print(f"{label}: learned / best goodput, paired per seed: {fmt_ci(*p['ratio'])} "
              f"(per seed: {', '.join(f'{s}: {x:.3f}' for s, x in p['ratios'].items())}); "
              f"P90 TTFT learned {fmt_ci(p['ttft_p90'], math.nan, 2)} s vs "
              f"{fmt_ci(p90_b, math.nan, 2)} s")
        print(f"{label}: SLO-meeting requests, learned / best, paired per seed (goodput "
              f"without the span): {fmt_ci(*p['slo_met_ratio'])}")
    c_mean, c_half = serve_all_ceiling([per_seed[best][s]["slo_attainment"]
                                        for s in range(args.seeds)])
    print(f"headroom: serving every request within SLO at {best}'s span would give "
          f"{fmt_ci(c_mean, c_half)}x its goodput")
    if out is not None:
        heldout = {
            "scenario": sc.name, "sources": sc.sources(), "best_heuristic": best,
            "learned": {label: {  # per learned policy; seed -> ratio
                "policy": learned[label],
                "ratio_mean": p["ratio"][0], "ratio_ci95": p["ratio"][1],
                "ratios": {str(s): x for s, x in p["ratios"].items()},
                "slo_met_ratio_mean": p["slo_met_ratio"][0],
                "slo_met_ratio_ci95": p["slo_met_ratio"][1],
                "slo_met_ratios": {str(s): x for s, x in p["slo_met_ratios"].items()},
                "ttft_p90": p["ttft_p90"]} for label, p in paired.items()},
            "ttft_p90_best": p90_b,
            "serve_all_ceiling": [c_mean, c_half],
            "goodput": {n: summary[n]["goodput_rps"]._asdict() for n in factories}}
        # an undefined figure (NaN) is null
        text = json.dumps(json_safe(heldout), indent=2, default=_refuse, allow_nan=False)
        with results_dir_lock(out):  # one comparison's files, whole, even if two ran at once
            write_outputs(records, out, {"scenario": sc.name, "sources": sc.sources(),
                                         "split": "eval", "seeds": list(range(args.seeds)),
                                         "learned_policies": args.policy})
            write_atomically(out / "heldout.json", text)
            plot_ratios(paired, best, (c_mean, c_half), sc.name, out / "ratios.png")


if __name__ == "__main__":
    sys.exit(run_script(main))
