"""Held-out evaluation of a learned policy against the heuristics.

Runs every heuristic but ``local-only`` and ``random`` (far below the others on the shipped
scenarios), the threshold heuristic with its threshold grid-searched on the
training split (``prfaas-threshold-tuned``), and the learned policy on the scenario's
**eval** split (held-out trace windows, or synthetic seeds offset from training) for seeds
0..K-1, all on identical workloads and links. Prints a markdown table (mean ± 95% CI over
seeds), the paired per-seed goodput ratio of the learned policy to the best heuristic,
the same ratio of SLO-meeting requests (goodput without its span: goodput divides by the
time to the last arrival or completion, whichever is later, so a request served late
within SLO lengthens a policy's span), and the headroom (what serving every request
within SLO would give at the best heuristic's span); writes the comparison's
CSV/JSON/plots and ``heldout.json`` to ``--out``. ``--trace``, ``--bandwidth-trace`` and
``--rate`` replace the scenario's workload, link and load as in ``prfaas train`` and
``prfaas compare``, for a policy trained on your own trace.

    python benchmarks/heldout.py --scenario bursty-fluctuating \
        --policy agents/policies/bursty-fluctuating.onnx --seeds 5 --out results/heldout-bursty
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from agents.compare import (
    add_eval_arguments,
    ci95,
    compare,
    flat_metrics,
    fmt_ci,
    given_sources,
    summarize,
    write_outputs,
)
from agents.registry import HEURISTICS, TUNED_THRESHOLD, policy_factory
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


def _refuse(o: object) -> object:
    raise TypeError(f"heldout.json cannot hold a {type(o).__name__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_eval_arguments(ap, default_scenario=None)
    ap.add_argument("--policy", required=True, help="exported .onnx, run dir or .zip")
    ap.add_argument("--out", help="directory for runs.csv, summary.json, heldout.json and "
                                  "plots (created if absent; files of an earlier comparison "
                                  "there are replaced)")
    args = ap.parse_args()
    if args.policy in HEURISTICS or args.policy == TUNED_THRESHOLD:
        ap.error(f"--policy {args.policy!r} is a heuristic, and the table runs the heuristics "
                 f"already: give a checkpoint (.onnx, run directory or .zip; ./{args.policy} "
                 "for a file of that name)")
    # refused before the runs, not after
    out = _writable_dir(args.out) if args.out is not None else None
    sc = scenario_from_args(args)
    heuristics = [h for h in HEURISTICS if h not in ("random", "local-only")] + [TUNED_THRESHOLD]
    label = learned_label(args.policy, heuristics)
    factories = {h: policy_factory(h, sc) for h in heuristics}
    factories[label] = policy_factory(args.policy, sc)
    if out is not None:
        refuse_results_over_inputs(out, sc, [args.policy])
    note_seeds_share_requests(sc, "eval", args.requests, args.seeds)
    if out is not None:
        _make_dir(out)
    records = compare(sc, factories, args.seeds, split="eval", n=args.requests, progress=True)
    summary = summarize(records)
    per_seed = {name: {r.seed: flat_metrics(r.result) for r in records if r.policy == name}
                for name in factories}
    heur_means = {h: summary[h]["goodput_rps"].mean for h in heuristics}
    best = max(heur_means, key=heur_means.__getitem__)

    def per_seed_of(name: str, metric: str) -> dict[int, float]:
        return {s: per_seed[name][s][metric] for s in range(args.seeds)}

    ratios = paired_ratios(per_seed_of(label, "goodput_rps"), per_seed_of(best, "goodput_rps"))
    r_mean, r_half = ci95(list(ratios.values()))
    met = {name: {r.seed: r.result["slo_met"] for r in records if r.policy == name}
           for name in (label, best)}
    met_ratios = paired_ratios(met[label], met[best])
    m_mean, m_half = ci95(list(met_ratios.values()))
    undefined = [s for s in range(args.seeds) if s not in ratios]
    if undefined:
        print(f"note: {best} served nothing within SLO on seed(s) {undefined}: the ratio "
              "leaves them out", file=sys.stderr)
    p90_l, p90_b = summary[label]["ttft_p90_s"].mean, summary[best]["ttft_p90_s"].mean
    print(f"\n{sc.name}{given_sources(args)}, eval split, "
          f"{'seed 0' if args.seeds == 1 else f'seeds 0..{args.seeds - 1}'}, "
          f"{records[0].result['requests']} requests per run; mean ± 95% CI over seeds "
          "(one seed: the mean alone); TTFT over completed requests\n")
    print("| policy | goodput (req/s) | P90 TTFT (s) | SLO attainment | rejected |")
    print("|---|---|---|---|---|")
    for name in factories:
        s = summary[name]
        g, p, a = s["goodput_rps"], s["ttft_p90_s"], s["slo_attainment"]
        p_seeds = "" if p.n == args.seeds else f" ({p.n} of {args.seeds} seeds)"
        print(f"| {name} | {fmt_ci(g.mean, g.ci95)} | {fmt_ci(p.mean, p.ci95, 2)}{p_seeds} | "
              f"{fmt_ci(a.mean, a.ci95)} | {fmt_ci(s['rejected'].mean, math.nan, 1)} |")
    print(f"\nbest heuristic: {best}; learned / best goodput, paired per seed: "
          f"{fmt_ci(r_mean, r_half)} (per seed: "
          f"{', '.join(f'{s}: {x:.3f}' for s, x in ratios.items())}); P90 TTFT learned "
          f"{fmt_ci(p90_l, math.nan, 2)} s vs {fmt_ci(p90_b, math.nan, 2)} s")
    print(f"SLO-meeting requests, learned / best, paired per seed (goodput without the span): "
          f"{fmt_ci(m_mean, m_half)}")
    c_mean, c_half = serve_all_ceiling([per_seed[best][s]["slo_attainment"]
                                        for s in range(args.seeds)])
    print(f"headroom: serving every request within SLO at {best}'s span would give "
          f"{fmt_ci(c_mean, c_half)}x its goodput")
    if out is not None:
        heldout = {
            "scenario": sc.name, "sources": sc.sources(), "best_heuristic": best,
            "ratio_mean": r_mean, "ratio_ci95": r_half,
            "ratios": {str(s): x for s, x in ratios.items()},  # seed -> ratio
            "slo_met_ratio_mean": m_mean, "slo_met_ratio_ci95": m_half,
            "slo_met_ratios": {str(s): x for s, x in met_ratios.items()},
            "ttft_p90_learned": p90_l, "ttft_p90_best": p90_b,
            "serve_all_ceiling": [c_mean, c_half],
            "goodput": {n: summary[n]["goodput_rps"]._asdict() for n in factories}}
        # an undefined figure (NaN) is null
        text = json.dumps(json_safe(heldout), indent=2, default=_refuse, allow_nan=False)
        with results_dir_lock(out):  # one comparison's files, whole, even if two ran at once
            write_outputs(records, out, {"scenario": sc.name, "sources": sc.sources(),
                                         "split": "eval", "seeds": list(range(args.seeds)),
                                         "policy": args.policy})
            write_atomically(out / "heldout.json", text)


if __name__ == "__main__":
    sys.exit(run_script(main))
