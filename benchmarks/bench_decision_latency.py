"""Decision latency of an exported (ONNX) routing policy against SB3's ``model.predict``.

Collects real ``(RequestInfo, ClusterView)`` pairs from a simulation of the scenario (driven
by its natural heuristic), then times, one decision at a time with ``time.perf_counter_ns``:

* ``LearnedPolicy.decide`` on the ONNX router: featurize + onnxruntime + mask + argmax
  (the number the target is about), and its parts: featurize, ONNX infer, mask;
* SB3 ``model.predict`` on the same observations (predict only), and featurize + predict.

Target: p99 <= 50 us for featurize + ONNX infer + mask. Each row is timed ``--repeat``
times and the pass with the lowest p99 is shown (noise from other processes only adds). onnxruntime runs with 1 intra-op
thread; torch is set to 1 thread too, for a like-for-like comparison.

    python benchmarks/bench_decision_latency.py [RUN_DIR | policy.onnx] [--decisions 10000]

Without a path it trains a tiny MaskablePPO (a few hundred steps) in a temporary directory
and exports it first. With a RUN_DIR it exports best_model.zip to a temporary .onnx; with an
.onnx the SB3 rows need the run's best_model.zip beside it (else they are skipped).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.learned import LearnedPolicy, OnnxRouter, checkpoint_file, masked_argmax  # noqa: E402
from agents.registry import make_heuristic  # noqa: E402
from agents.run_dir import read_run_json  # noqa: E402
from prfaas_gym.actions import action_masks, action_to_decision  # noqa: E402
from prfaas_gym.cli import positive_int, run_script
from prfaas_gym.env import ENV_ID  # noqa: E402
from prfaas_gym.errors import PrfaasInputError  # noqa: E402
from prfaas_gym.interfaces import env_ids  # noqa: E402
from prfaas_gym.scenario import load_scenario  # noqa: E402
from prfaas_gym.simulator import Simulator  # noqa: E402

TARGET_P99_US = 50.0
WARMUP = 500


def check_policy_path(path: str) -> None:
    """Refuse (:class:`PrfaasInputError`, naming ``path``) what this benchmark cannot time,
    in the words ``prfaas compare --policies`` uses (:func:`agents.learned.load_learned_policy`):
    a missing path, a directory without run.json, an SB3 ``.zip`` (it exports a run
    directory's best_model.zip itself) and any other file that is not ``.onnx``. An
    ``.onnx`` file is left to :class:`~agents.learned.OnnxRouter`, which checks it and its
    manifest."""
    p = Path(path)
    if p.suffix == ".onnx" and not p.is_dir():
        return
    if checkpoint_file(p) != p:  # a training run directory
        return
    if p.suffix == ".zip":
        raise PrfaasInputError("an SB3 .zip: this benchmark takes its training run directory "
                               "(it exports the run's best_model.zip to ONNX) or an exported "
                               ".onnx file", p)
    raise PrfaasInputError("not a checkpoint: expected an exported .onnx file or a training "
                           "run directory", p)


def train_tiny(run_dir: Path, scenario: str) -> None:
    """A MaskablePPO trained for a few hundred steps, saved as a run directory."""
    from sb3_contrib import MaskablePPO

    from agents.run_dir import write_run_json
    from prfaas_gym.env import PrfaasRouteEnv

    env = PrfaasRouteEnv(scenario, episode_requests=32)
    model = MaskablePPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0,
                        device="cpu", policy_kwargs=dict(net_arch=[64, 64]))
    model.learn(512)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "best_model.zip")
    write_run_json(run_dir, env, "maskable_ppo", scenario=scenario, seed=0,
                   hyperparams={"n_steps": 128, "net_arch": [64, 64], "timesteps": 512})


def collect_pairs(scenario, n: int, seed: int = 0) -> list:
    """``n`` (RequestInfo, ClusterView) pairs from a simulation driven by the scenario's
    natural heuristic (more requests are simulated if one run yields fewer)."""
    pairs = []
    while len(pairs) < n:
        w = scenario.workload(seed, n=max(n - len(pairs), 100))
        sim = Simulator(scenario.profile, w, scenario.bandwidth(seed), scenario.sim)
        policy = make_heuristic(scenario.policy, threshold_tokens=scenario.threshold_tokens) \
            if scenario.policy in ("prfaas-threshold", "prfaas-dual") \
            else make_heuristic(scenario.policy or "least-loaded")
        policy.reset(scenario.profile, seed)
        while (r := sim.next_request()) is not None:
            info, view = sim.request_info(r), sim.view(r)
            pairs.append((info, view))
            sim.apply(r, policy.decide(info, view))
        seed += 1
    return pairs[:n]


def timed(fn, items, disable_gc: bool, repeat: int = 1) -> np.ndarray:
    """Per-call latency in microseconds of ``fn(item)`` over ``items`` (after a warm-up):
    of ``repeat`` passes, the one with the lowest p99 (co-tenant noise only adds)."""
    runs = [_timed_once(fn, items, disable_gc) for _ in range(repeat)]
    return min(runs, key=lambda us: np.percentile(us, 99))


def _timed_once(fn, items, disable_gc: bool) -> np.ndarray:
    for it in items[:WARMUP]:
        fn(it)
    gc.collect()
    if disable_gc:
        gc.disable()
    out = np.empty(len(items), dtype=np.int64)
    clock = time.perf_counter_ns
    try:
        for k, it in enumerate(items):
            t0 = clock()
            fn(it)
            out[k] = clock() - t0
    finally:
        gc.enable()
    return out / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", help="RUN_DIR or exported .onnx (default: train one)")
    ap.add_argument("--decisions", type=positive_int, default=10_000)
    ap.add_argument("--scenario", help="scenario for the (request, view) pairs "
                                       "(default: the one the policy was trained on)")
    ap.add_argument("--disable-gc", action="store_true", help="disable the GC while timing")
    ap.add_argument("--repeat", type=positive_int, default=3,
                    help="passes per row; the pass with the lowest p99 is reported")
    args = ap.parse_args()
    # refused before the tiny training run or the export, not after
    if args.path is not None:
        check_policy_path(args.path)
    if args.scenario is not None:
        load_scenario(args.scenario)

    import torch

    from agents.export import export_onnx, load_sb3

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory(prefix="prfaas-bench-")
    tmpdir = Path(tmp.name)
    if args.path is None:
        run_dir = tmpdir / "run"
        print("no path given: training a tiny MaskablePPO in", run_dir)
        train_tiny(run_dir, args.scenario or "bursty-fluctuating")
        onnx_path, _ = export_onnx(run_dir, tmpdir / "policy.onnx")
    elif Path(args.path).is_dir():
        run_dir = Path(args.path)
        env_id = read_run_json(run_dir).get("env_id")
        # said before the export, whose temporary file the loader's refusal would name (an
        # unknown env id is left to the export's own compatibility check)
        if env_id in env_ids() and env_id != ENV_ID:
            raise PrfaasInputError(f"is a {env_id} run; this benchmark times {ENV_ID}'s "
                                   "per-request routing decisions", run_dir)
        onnx_path, _ = export_onnx(run_dir, tmpdir / "policy.onnx")
    else:
        onnx_path = Path(args.path)
        run_dir = onnx_path.parent if (onnx_path.parent / "run.json").is_file() else None

    router = OnnxRouter(onnx_path)
    scenario = load_scenario(args.scenario or router.manifest.get("scenario")
                             or "bursty-fluctuating")
    policy = LearnedPolicy(router)
    policy.reset(scenario.profile, 0)
    fz = policy.featurizer
    n = args.decisions
    t0 = time.perf_counter()
    pairs = collect_pairs(scenario, n)
    from prfaas_gym import _compiled

    print(f"prfaas_gym: {_compiled.describe()}")
    print(f"{len(pairs)} (request, view) pairs from {scenario.name} "
          f"({time.perf_counter() - t0:.1f} s); onnxruntime providers {router.providers}")
    bests = [fz.best(i, v) for i, v in pairs]
    obs = [fz(i, v, b) for (i, v), b in zip(pairs, bests)]
    logits = [router.logits_single(o).copy() for o in obs]
    gcoff = args.disable_gc
    rep = max(args.repeat, 1)

    def featurize(p):
        b = fz.best(*p)
        return fz(p[0], p[1], b)

    rows: list[tuple[str, np.ndarray]] = [
        ("ONNX: featurize + infer + mask (LearnedPolicy.decide)",
         timed(lambda p: policy.decide(*p), pairs, gcoff, rep)),
        ("  featurize only (best + featurizer)", timed(featurize, pairs, gcoff, rep)),
        ("  ONNX infer only (1 x 32, io binding)", timed(router.logits_single, obs, gcoff, rep)),
        ("  mask + argmax + decision", timed(lambda k: action_to_decision(
            masked_argmax(logits[k], bests[k]), bests[k]), list(range(n)), gcoff, rep)),
    ]
    # the checkpoint the ONNX file was exported from (its manifest names it)
    zip_path = (run_dir / router.manifest.get("model", "best_model.zip")
                if run_dir is not None else None)
    decisions_agree = None
    if zip_path is not None and zip_path.is_file():
        algo = read_run_json(run_dir)["algo"]
        model = load_sb3(zip_path, algo)
        masked = algo == "maskable_ppo"
        masks = [action_masks(b) for b in bests]

        def predict(k):
            if masked:
                return model.predict(obs[k], deterministic=True, action_masks=masks[k])[0]
            return model.predict(obs[k], deterministic=True)[0]

        def feat_predict(p):
            b = fz.best(*p)
            o = fz(p[0], p[1], b)
            if masked:
                return model.predict(o, deterministic=True, action_masks=action_masks(b))[0]
            return model.predict(o, deterministic=True)[0]

        rows += [("SB3 model.predict only", timed(predict, list(range(n)), gcoff, rep)),
                 ("SB3 featurize + predict", timed(feat_predict, pairs, gcoff, rep))]
        if masked:
            onnx_a = [masked_argmax(lg, b) for lg, b in zip(logits, bests)]
            decisions_agree = float(np.mean([int(predict(k)) == a
                                             for k, a in enumerate(onnx_a)]))
    else:
        print("SB3 rows skipped: no run.json + best_model.zip beside the .onnx")

    print(f"\n{'path':58s} {'p50 us':>8s} {'p99 us':>8s} {'mean us':>8s}")
    for name, us in rows:
        print(f"{name:58s} {np.percentile(us, 50):8.1f} {np.percentile(us, 99):8.1f} "
              f"{us.mean():8.1f}")
    p99 = float(np.percentile(rows[0][1], 99))
    print(f"\nONNX decision p99 {p99:.1f} us (target <= {TARGET_P99_US:.0f} us: "
          f"{'MET' if p99 <= TARGET_P99_US else 'NOT MET'}); {n} decisions, "
          f"GC {'off' if gcoff else 'on'}, best p99 of {rep} pass(es) per row")
    if decisions_agree is not None:
        print(f"ONNX vs SB3 masked predict: {decisions_agree:.2%} of actions agree")
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(run_script(main))
