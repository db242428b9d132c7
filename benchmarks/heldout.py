"""Held-out evaluation of a learned policy against the heuristics.

Runs every heuristic but ``local-only`` and ``random`` (far below the others on the shipped
scenarios), the threshold heuristic with its threshold grid-searched on the
training split (``prfaas-threshold-tuned``), and the learned policy on the scenario's
**eval** split (held-out trace windows, or synthetic seeds offset from training) for seeds
0..K-1, all on identical workloads and links. Prints a markdown table (mean ± 95% CI over
seeds), the paired per-seed goodput ratio of the learned policy to the best heuristic,
and the headroom (what serving every request within SLO would give at the best
heuristic's span); writes the comparison's CSV/JSON/plots to ``--out``.

    python benchmarks/heldout.py --scenario bursty-fluctuating \
        --policy agents/policies/bursty-fluctuating.onnx --seeds 5 --out results/heldout-bursty
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from agents.compare import (
    add_eval_arguments,
    ci95,
    compare,
    finite_or_none,
    flat_metrics,
    summarize,
    write_outputs,
)
from agents.registry import HEURISTICS, TUNED_THRESHOLD, policy_factory
from prfaas_gym.cli import _make_dir, _writable_dir, run_script
from prfaas_gym.scenario import load_scenario


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_eval_arguments(ap, default_scenario=None)
    ap.add_argument("--policy", required=True, help="exported .onnx, run dir or .zip")
    ap.add_argument("--out", help="directory for CSV/JSON/plots")
    args = ap.parse_args()
    if args.policy in HEURISTICS or args.policy == TUNED_THRESHOLD:
        ap.error(f"--policy {args.policy!r} is a heuristic, and the table runs the heuristics "
                 f"already: give a checkpoint (.onnx, run directory or .zip; ./{args.policy} "
                 "for a file of that name)")
    out = _writable_dir(args.out) if args.out else None  # refused before the runs, not after
    sc = load_scenario(args.scenario)
    heuristics = [h for h in HEURISTICS if h not in ("random", "local-only")] + [TUNED_THRESHOLD]
    label = learned_label(args.policy, heuristics)
    factories = {h: policy_factory(h, sc) for h in heuristics}
    factories[label] = policy_factory(args.policy, sc)
    if out is not None:
        _make_dir(out)
    records = compare(sc, factories, args.seeds, split="eval", n=args.requests, progress=True)
    summary = summarize(records)
    per_seed = {name: {r.seed: flat_metrics(r.result) for r in records if r.policy == name}
                for name in factories}
    heur_means = {h: summary[h]["goodput_rps"][0] for h in heuristics}
    best = max(heur_means, key=heur_means.__getitem__)
    ratios = [per_seed[label][s]["goodput_rps"] / per_seed[best][s]["goodput_rps"]
              for s in range(args.seeds) if per_seed[best][s]["goodput_rps"] > 0]
    r_mean, r_half = ci95(ratios)
    undefined = [s for s in range(args.seeds) if per_seed[best][s]["goodput_rps"] <= 0]
    if undefined:
        print(f"note: {best} served nothing within SLO on seed(s) {undefined}: the ratio "
              "leaves them out", file=sys.stderr)
    p90_l, p90_b = summary[label]["ttft_p90_s"][0], summary[best]["ttft_p90_s"][0]
    print(f"\n{sc.name}, eval split, seeds 0..{args.seeds - 1}, "
          f"{records[0].result['requests']} requests per run; mean ± 95% CI over seeds\n")
    print("| policy | goodput (req/s) | P90 TTFT (s) | SLO attainment | rejected |")
    print("|---|---|---|---|---|")
    for name in factories:
        s = summary[name]
        g, gh = s["goodput_rps"]
        p, ph = s["ttft_p90_s"]
        a, ah = s["slo_attainment"]
        print(f"| {name} | {g:.3f} ± {gh:.3f} | {p:.2f} ± {ph:.2f} | {a:.3f} ± {ah:.3f} | "
              f"{s['rejected'][0]:.0f} |")
    print(f"\nbest heuristic: {best}; learned / best goodput, paired per seed: "
          f"{r_mean:.3f} ± {r_half:.3f} (per seed: {', '.join(f'{x:.3f}' for x in ratios)}); "
          f"P90 TTFT learned {p90_l:.2f} s vs {p90_b:.2f} s")
    c_mean, c_half = serve_all_ceiling([per_seed[best][s]["slo_attainment"]
                                        for s in range(args.seeds)])
    print(f"headroom: serving every request within SLO at {best}'s span would give "
          f"{c_mean:.3f} ± {c_half:.3f}x its goodput")
    if out is not None:
        write_outputs(records, out, {"scenario": sc.name, "split": "eval",
                                     "seeds": list(range(args.seeds)), "policy": args.policy})
        (out / "heldout.json").write_text(json.dumps({
            "scenario": sc.name, "best_heuristic": best, "ratio_mean": finite_or_none(r_mean),
            "ratio_ci95": finite_or_none(r_half), "ratios": ratios,
            "ttft_p90_learned": finite_or_none(p90_l), "ttft_p90_best": finite_or_none(p90_b),
            "serve_all_ceiling": [finite_or_none(c_mean), finite_or_none(c_half)],
            "goodput": {n: summary[n]["goodput_rps"] for n in factories}},
            indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


if __name__ == "__main__":
    sys.exit(run_script(main))
