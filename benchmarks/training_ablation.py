"""What each training choice buys: algorithm, warm start and reward, on the validation split.

Trains one run per variant with ``prfaas train`` (same scenario, seed, step budget and
validation episodes) and prints, for each, the validation goodput ratio to the best
heuristic at the start (after the warm start, or at random initialisation), at its best
checkpoint and at the end, plus the wall time. Only the ``val`` split is used, so choosing a
recipe from this table does not look at the held-out ``eval`` split. Writes
``OUT/summary.json`` and ``OUT/validation.png`` (validation ratio against steps).

A variant is ``ALGO:WARM:REWARD[:HP[:CURRICULUM]]``: ``ALGO`` one of maskable_ppo, ppo,
a2c, dqn; ``WARM`` a heuristic name, ``best`` or ``none`` (dqn: ``none`` only); ``REWARD``
``completion``, ``first_token`` or ``vs_conductor`` (``env_kwargs.reward``, written into a
copy of the shipped config); ``HP`` ``shipped`` (the default: the shipped config with its
per-scenario overrides, e.g. MaskablePPO's gentle fine-tuning step size) or ``base`` (the
env id's section only, without the per-scenario overrides); ``CURRICULUM`` ``none`` (the default)
or ``easy``: training starts every range of the scenario's ``randomize:`` at its easiest
end (lowest load scale, highest link mean, most instances) and widens them to the full
ranges over the first half of the steps (``curriculum:`` in the config).
Finished runs under ``OUT`` are reused, so an interrupted sweep resumes.

    python benchmarks/training_ablation.py --scenario bursty-fluctuating --timesteps 200000 \\
        --out runs/ablation-bursty
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.registry import is_heuristic
from agents.run_dir import read_json_record
from agents.train import MAX_SEED
from prfaas_gym.cli import (
    _make_dir,
    _writable_dir,
    non_negative_int,
    positive_int,
    run_script,
    write_atomically,
)
from prfaas_gym.env import ENV_ID, ROUTE_REWARDS
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.metrics import json_safe
from prfaas_gym.profile import is_finite_number
from prfaas_gym.scenario import load_scenario

DEFAULT_VARIANTS = ("maskable_ppo:best:completion", "maskable_ppo:best:first_token",
                    "maskable_ppo:none:completion", "maskable_ppo:none:first_token",
                    "ppo:best:completion", "a2c:best:completion", "dqn:none:completion",
                    "maskable_ppo:none:completion:base", "maskable_ppo:none:first_token:base")
ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")
HPS = ("shipped", "base")
CURRICULA = ("none", "easy")
# the easy end of each randomised range: the most capacity per unit of load
_EASY_END = {"rate_scale": 0, "link_gbps": 1, "n_prfaas": 1, "n_local": 1}


def parse_variant(text: str) -> tuple[str, str, str, str, str]:
    """``ALGO:WARM:REWARD[:HP[:CURRICULUM]]`` as a 5-tuple; :class:`PrfaasInputError` naming
    the variant if malformed."""
    parts = text.split(":")
    parts += ["shipped", "none"][len(parts) - 3:] if 3 <= len(parts) <= 5 else []
    if len(parts) != 5 or parts[0] not in ALGOS or parts[2] not in ROUTE_REWARDS \
            or parts[3] not in HPS or parts[4] not in CURRICULA \
            or not (parts[1] in ("best", "none") or is_heuristic(parts[1])) \
            or (parts[0] == "dqn" and parts[1] != "none"):
        raise PrfaasInputError(
            f"variant {text!r}: expected ALGO:WARM:REWARD[:HP[:CURRICULUM]] with ALGO in "
            f"{list(ALGOS)}, WARM a heuristic name, best or none, REWARD in "
            f"{list(ROUTE_REWARDS)}, HP in {list(HPS)}, CURRICULUM in {list(CURRICULA)} "
            "(dqn: WARM must be none)")
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def parse_variants(text: str) -> list[str]:
    """``--variants``: its comma-separated variants, stripped and each checked
    (:func:`parse_variant`); :class:`PrfaasInputError` when it names none or one twice."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    if not variants:
        raise PrfaasInputError("--variants is empty; give at least one "
                               "ALGO:WARM:REWARD[:HP[:CURRICULUM]]")
    for v in variants:
        parse_variant(v)
    repeated = sorted({v for v in variants if variants.count(v) > 1})
    if repeated:
        raise PrfaasInputError(f"--variants lists {', '.join(repeated)} more than once")
    return variants


def easy_curriculum(randomize: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A ``curriculum:`` section that starts each of the scenario's ranges at its easy end
    and reaches the full ranges halfway through training."""
    if not randomize:
        raise PrfaasInputError("the easy curriculum needs a scenario with `randomize:` ranges")
    return {"start": {k: [lo_hi[_EASY_END[k]]] * 2 for k, lo_hi in randomize.items()},
            "fraction": 0.5}


def variant_config(algo: str, reward: str, hp: str, out: Path,
                   curriculum: dict[str, Any] | None = None) -> Path:
    """The shipped hyperparameters of ``algo`` with ``env_kwargs.reward`` set (``hp='base'``:
    without the per-scenario overrides), and ``curriculum`` if given."""
    data = yaml.safe_load((resources.files("agents") / "configs" / f"{algo}.yaml").read_text())
    data[ENV_ID]["env_kwargs"] = {"reward": reward}
    if hp == "base":
        data[ENV_ID].pop("scenarios", None)
    if curriculum is not None:
        data[ENV_ID]["curriculum"] = curriculum
    tag = "-easy" if curriculum is not None else ""
    path = out / "configs" / f"{algo}-{reward}-{hp}{tag}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_dir(out: Path, variant: str) -> Path:
    """Where ``variant`` trains: ``OUT/ALGO-WARM-REWARD[...]``."""
    return out / variant.replace(":", "-")


def finished(run: Path) -> bool:
    """A run that trained to the end (not interrupted, not failed)."""
    try:
        rec = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return "wall_s" in rec and "interrupted_at" not in rec and "failed" not in rec


def train(variant: str, args: argparse.Namespace, easy: dict[str, Any] | None) -> Path:
    """Train ``variant`` into ``OUT/<variant>`` unless a finished run is there (``easy``:
    the scenario's easy curriculum, for variants that ask for it)."""
    algo, warm, reward, hp, curriculum = parse_variant(variant)
    run = run_dir(args.out, variant)
    if finished(run):
        print(f"{variant}: reusing {run}", file=sys.stderr)
        return run
    refuse_unfinished(run, variant)
    cmd = [sys.executable, "-m", "prfaas_gym.cli", "train", "--algo", algo,
           "--scenario", args.scenario, "--timesteps", str(args.timesteps),
           "--n-envs", str(args.n_envs), "--seed", str(args.seed), "--out", str(run),
           "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes),
           "--config", str(variant_config(algo, reward, hp, args.out,
                                          easy if curriculum == "easy" else None)),
           # the table's "best" is the highest validation, so best_model.zip is that one too
           "--select", "max", "--no-progress"]
    if algo != "dqn":
        cmd += ["--warm-start", warm]
    log = args.out / "logs" / f"{run.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{variant}: training ({' '.join(cmd[2:])}), log {log}", file=sys.stderr)
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"error: {variant} failed (exit {rc}); see {log}")
    print(f"{variant}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return run


def refuse_unfinished(run: Path, variant: str) -> None:
    """Refuse (:class:`PrfaasInputError`) to train ``variant`` into ``run`` where that holds
    something other than a finished run (which is reused): a file, or an unfinished run."""
    if run.exists() and not run.is_dir():
        raise PrfaasInputError(f"is not a directory, and {variant} trains there; move it",
                               run)
    if run.exists() and not finished(run) and any(run.iterdir()):
        raise PrfaasInputError(f"holds an unfinished run; remove it to retrain {variant}", run)


def summarize(variant: str, run: Path) -> dict[str, Any]:
    """The validation history of a finished run, reduced to start / best / end.
    :class:`PrfaasInputError` naming the file where its ``eval.json`` or ``run.json`` is
    missing, not valid JSON, or lacks a figure the summary reads."""
    where = run / "eval.json"
    history = read_json_record(where, "eval.json").get("history")
    if not (isinstance(history, list) and history and all(
            isinstance(h, dict) and is_finite_number(h.get("timesteps"))
            and is_finite_number(h.get("goodput_rps"))
            and (h.get("ratio_to_best_heuristic") is None
                 or is_finite_number(h["ratio_to_best_heuristic"])) for h in history)):
        raise PrfaasInputError("key 'history': expected a non-empty list of validations, each "
                               "with numbers timesteps, goodput_rps and ratio_to_best_heuristic "
                               "(or null)", where)
    rec = read_json_record(run / "run.json", "run.json")
    if not is_finite_number(rec.get("wall_s")):
        raise PrfaasInputError(f"key 'wall_s': expected a number, found {rec.get('wall_s')!r}",
                               run / "run.json")
    best = max(history, key=lambda h: h["goodput_rps"])

    def ratio(h: dict[str, Any]) -> float | None:  # None: the best heuristic served nothing
        r = h["ratio_to_best_heuristic"]
        return None if r is None else float(r)

    return {"variant": variant, "run": str(run), "start": ratio(history[0]),
            "best": ratio(best), "best_at": best["timesteps"],
            "end": ratio(history[-1]), "end_at": history[-1]["timesteps"],
            "wall_s": rec["wall_s"], "curve": [(h["timesteps"], ratio(h)) for h in history]}


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.compare import save_png

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        xs, ys = zip(*r["curve"])
        ax.plot([x / 1000 for x in xs], [np.nan if y is None else y for y in ys], marker=".",
                label=r["variant"])
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("training steps (thousands)")
    ax.set_ylabel("validation goodput / best heuristic")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)  # whole, as every results file
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="bursty-fluctuating")
    ap.add_argument("--timesteps", type=positive_int, default=200_000)
    ap.add_argument("--n-envs", type=positive_int, default=2)
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--eval-freq", type=positive_int, default=50_000,
                    help="steps between validations (as the shipped policies were trained)")
    ap.add_argument("--eval-episodes", type=positive_int, default=24)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="comma-separated ALGO:WARM:REWARD[:HP[:CURRICULUM]]")
    ap.add_argument("--out", required=True, help="directory for the runs, summary.json and "
                                                 "validation.png (created if absent)")
    args = ap.parse_args()
    if args.seed >= MAX_SEED:  # as `prfaas train` refuses it, but before any run starts
        ap.error(f"argument --seed: must be < 2**31, got {args.seed}")
    # everything is checked before anything is written or trained
    args.out = _writable_dir(args.out)
    variants = parse_variants(args.variants)
    sc = load_scenario(args.scenario)
    easy = easy_curriculum(sc.randomize) \
        if any(parse_variant(v)[4] == "easy" for v in variants) else None
    for v in variants:
        run = run_dir(args.out, v)
        if finished(run):
            summarize(v, run)  # a reused run's records are read before any training
        else:
            refuse_unfinished(run, v)
    _make_dir(args.out)
    rows = [summarize(v, train(v, args, easy)) for v in variants]
    print(f"\n{args.scenario}, seed {args.seed}, {args.timesteps:,} steps, --n-envs "
          f"{args.n_envs}; validation goodput / best heuristic ({args.eval_episodes} episodes "
          f"of the val split every {args.eval_freq:,} steps)\n")
    print("| variant (algo:warm start:reward[:hyperparameters[:curriculum]]) | start | best (at step) | end "
          "| wall (min) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {_ratio(r['start'])} | {_ratio(r['best'])} "
              f"({r['best_at']:,}) | {_ratio(r['end'])} | {r['wall_s'] / 60:.1f} |")
    write_atomically(args.out / "summary.json",
                     json.dumps(json_safe(rows), indent=1, allow_nan=False))
    plot(rows, args.out / "validation.png",
         f"{args.scenario}: validation during training (seed {args.seed})")
    print(f"\nwrote {args.out / 'summary.json'} and {args.out / 'validation.png'}")


if __name__ == "__main__":
    sys.exit(run_script(main))
