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
    r = _run("--scenario", "paper-case-study", "--variants", "ppo:none:completion:base:easy",
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
