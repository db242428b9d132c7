"""benchmarks/training_ablation.py: one run per variant, with the reward it names, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "training_ablation.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(_SCRIPT), *args], capture_output=True,
                          text=True, timeout=600)


def test_sweep_trains_each_variant_with_its_reward_and_resumes(tmp_path):
    out = tmp_path / "abl"
    args = ("--scenario", "paper-case-study", "--timesteps", "64", "--eval-freq", "64",
            "--eval-episodes", "1", "--n-envs", "1",
            "--variants", "maskable_ppo:none:first_token:base,maskable_ppo:none:completion,"
            "a2c:none:completion", "--out", str(out))
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    rows = json.loads((out / "summary.json").read_text())
    assert [r["variant"] for r in rows] == ["maskable_ppo:none:first_token:base",
                                            "maskable_ppo:none:completion",
                                            "a2c:none:completion"]
    # base drops the scenario's gentle fine-tuning step size (agents/configs/maskable_ppo.yaml)
    for r, reward, algo, lr in zip(rows, ("first_token", "completion", "completion"),
                                   ("maskable_ppo", "maskable_ppo", "a2c"), (3e-4, 5e-5, 7e-4)):
        rec = json.loads((Path(r["run"]) / "run.json").read_text())
        assert rec["algo"] == algo and rec["hyperparams"]["env_kwargs"] == {"reward": reward}
        assert rec["hyperparams"]["learning_rate"] == lr
        assert rec["warm_start"] is None and len(r["curve"]) >= 2
    assert (out / "validation.png").stat().st_size > 0
    assert "| maskable_ppo:none:first_token:base |" in first.stdout
    stamp = (Path(rows[0]["run"]) / "run.json").stat().st_mtime_ns
    again = _run(*args)
    assert again.returncode == 0 and again.stderr.count("reusing") == 3
    assert (Path(rows[0]["run"]) / "run.json").stat().st_mtime_ns == stamp


def test_easy_curriculum_starts_each_range_at_its_easy_end(tmp_path):
    out = tmp_path / "abl"
    r = _run("--scenario", "bursty-fluctuating", "--timesteps", "64", "--eval-freq", "64",
             "--eval-episodes", "1", "--n-envs", "1",
             "--variants", "maskable_ppo:none:completion:base:easy", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "maskable_ppo-none-completion-base-easy" / "run.json").read_text())
    # bursty-fluctuating randomises rate_scale [0.7, 1.4] and link_gbps [10, 40]
    assert rec["hyperparams"]["curriculum"] == {
        "start": {"rate_scale": [0.7, 0.7], "link_gbps": [40.0, 40.0]}, "fraction": 0.5}
    r = _run("--scenario", "paper-homogeneous", "--variants", "ppo:none:completion:base:easy",
             "--out", str(tmp_path / "p"))
    assert r.returncode != 0 and "needs a scenario with `randomize:`" in r.stderr
    assert not (tmp_path / "p").exists()


def test_a_malformed_variant_is_named(tmp_path):
    for bad in ("ppo:best", "sac:none:completion", "dqn:best:completion", "ppo:none:ttft",
                "ppo:none:completion:tuned", "ppo:none:completion:base:hard",
                "ppo:none:completion:base:easy:x"):
        r = _run("--variants", bad, "--out", str(tmp_path / "x"))
        assert r.returncode != 0 and f"variant {bad!r}" in r.stderr
    assert not (tmp_path / "x").exists()


def test_summary_keeps_an_undefined_ratio_as_null(tmp_path):
    # a validation where the best heuristic served nothing has no ratio: JSON null, not NaN
    sys.path.insert(0, str(_SCRIPT.parent))
    try:
        from training_ablation import summarize
    finally:
        sys.path.pop(0)
    run = tmp_path / "run"
    run.mkdir()
    history = [{"timesteps": 0, "goodput_rps": 0.0, "ratio_to_best_heuristic": None},
               {"timesteps": 64, "goodput_rps": 1.0, "ratio_to_best_heuristic": 1.25}]
    (run / "eval.json").write_text(json.dumps({"history": history}))
    (run / "run.json").write_text(json.dumps({"wall_s": 1.0}))
    row = summarize("v", run)
    assert row["start"] is None and row["best"] == 1.25 and row["end"] == 1.25
    json.dumps(row, allow_nan=False)  # raises on NaN
