"""The benchmarks refuse bad input with one line naming what is wrong and where (status 2,
as ``run_script`` and argparse give), before any long work or any file is written, and
report an undefined figure as such rather than as nan or inf."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from prfaas_gym.errors import PrfaasInputError

_ROOT = Path(__file__).resolve().parents[1]
_BENCH = _ROOT / "benchmarks"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    """``benchmarks/NAME.py ARGS``, killed with whatever it started (a training run) if it
    is still running after a minute: a refusal takes seconds."""
    with subprocess.Popen([sys.executable, str(_BENCH / f"{name}.py"), *args], cwd=_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused(p: subprocess.CompletedProcess, says: str) -> None:
    """Status 2, and ``says`` in a one-line error without a traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert says in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    error = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert len(error) == 1, p.stderr


# bench_training.py --run


def _run_dir(tmp_path: Path, text: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(text)
    return run


@pytest.mark.parametrize("text, says", [
    ('{"algo": ', "run.json is not valid JSON"),
    ('{"algo": "ppo", "wall_s": 60.0, "steps_per_s": 16.0}', "key 'timesteps' is missing"),
    ('{"algo": "ppo"}', "not a finished run"),
])
def test_bench_training_refuses_a_bad_run_before_the_benchmark(tmp_path, text, says):
    run = _run_dir(tmp_path, text)
    # the default 20,000 steps would take a while: the refusal comes first
    p = _script("bench_training", "--run", str(run))
    _refused(p, f"{run / 'run.json'}: {says}")
    assert "steps/s" not in p.stdout


def test_bench_training_refuses_a_missing_run_directory_before_the_benchmark(tmp_path):
    p = _script("bench_training", "--run", str(tmp_path / "nowhere"))
    _refused(p, "run.json not found")
    assert "steps/s" not in p.stdout


def test_bench_training_refuses_fewer_steps_than_envs():
    # each env steps --steps // --n-envs times: this timed no step and printed 0 steps/s
    p = _script("bench_training", "--steps", "1", "--n-envs", "2")
    _refused(p, "argument --steps: must be at least --n-envs (2), got 1")
    assert "steps/s" not in p.stdout


def test_bench_training_reports_a_recorded_run(tmp_path):
    bench = _module("bench_training")
    rec = {"algo": "maskable_ppo", "timesteps": 400_000, "wall_s": 1200.0,
           "steps_per_s": 250.0, "interrupted_at": 300_000}
    run = _run_dir(tmp_path, json.dumps(rec))
    assert bench.recorded_run(str(run)) == (
        f"recorded run {run}: 300,000 steps in 20.0 min (250 steps/s, all in); "
        "interrupted, of 400,000 asked for")
    (run / "run.json").write_text(json.dumps({**rec, "interrupted_at": True}))
    with pytest.raises(PrfaasInputError, match="key 'interrupted_at': expected"):
        bench.recorded_run(str(run))


# reward_delay.py


@pytest.mark.parametrize("args, says", [
    (["--scenario", "nope"], "unknown scenario 'nope'"),
    (["--episodes", "0"], "argument --episodes: must be >= 1, got 0"),
    (["--episodes", "-3"], "argument --episodes: must be >= 1, got -3"),
])
def test_reward_delay_refuses_bad_options(args, says):
    p = _script("reward_delay", *args)
    _refused(p, says)
    assert "| completion |" not in p.stdout


def test_reward_delay_says_n_a_where_nothing_was_served(tmp_path):
    # a TTFT SLO no request can meet: no reward is paid, so no delay exists
    sc = (_ROOT / "prfaas_gym" / "data" / "scenarios" / "paper-case-study.yaml").read_text()
    (tmp_path / "tight.yaml").write_text(sc.replace("name: paper-case-study", "name: tight")
                                         + "slo: {ttft_s: 0.001}\n")
    p = _script("reward_delay", "--scenario", str(tmp_path / "tight.yaml"), "--episodes", "1")
    assert p.returncode == 0, p.stderr
    assert "| completion | n/a | n/a | 0.0000 |" in p.stdout
    assert "nan" not in p.stdout and "Warning" not in p.stderr
    assert "served no request within SLO on seed(s) [0]" in p.stderr


# training_ablation.py


@pytest.mark.parametrize("args, says", [
    (["--timesteps", "0"], "argument --timesteps: must be >= 1, got 0"),
    (["--n-envs", "-1"], "argument --n-envs: must be >= 1, got -1"),
    (["--eval-freq", "0"], "argument --eval-freq: must be >= 1, got 0"),
    (["--eval-episodes", "x"], "argument --eval-episodes: not an integer: 'x'"),
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--seed", str(2**31)], "argument --seed: must be < 2**31"),
    (["--scenario", "nope"], "unknown scenario 'nope'"),
    (["--variants", " , "], "--variants is empty"),
    (["--variants", "ppo:none:completion,ppo:none:completion"],
     "--variants lists ppo:none:completion more than once"),
    (["--variants", "ppo:nobody:completion"], "variant 'ppo:nobody:completion': expected"),
])
def test_training_ablation_refuses_bad_options_before_writing(tmp_path, args, says):
    out = tmp_path / "abl"
    p = _script("training_ablation", "--variants", "ppo:none:completion", *args,
                "--out", str(out))
    _refused(p, says)
    assert not out.exists()  # no config written, no training launched


def test_training_ablation_refuses_a_file_as_out(tmp_path):
    out = tmp_path / "abl"
    out.write_text("mine")
    _refused(_script("training_ablation", "--out", str(out)),
             f"{out}: --out exists and is not a directory")
    assert out.read_text() == "mine"


def test_training_ablation_refuses_an_unfinished_run_before_training_any(tmp_path):
    # the second variant's directory holds a run that never finished: refused before the
    # first variant trains, not after it
    out = tmp_path / "abl"
    (out / "a2c-none-completion").mkdir(parents=True)
    (out / "a2c-none-completion" / "run.json").write_text('{"algo": "a2c"}')
    p = _script("training_ablation", "--variants", "ppo:none:completion,a2c:none:completion",
                "--out", str(out))
    _refused(p, "a2c-none-completion: holds an unfinished run")
    assert sorted(x.name for x in out.iterdir()) == ["a2c-none-completion"]



def test_training_ablation_refuses_a_reused_run_with_broken_records_before_training(tmp_path):
    # a finished run is reused; its eval.json is read before the other variant trains
    out = tmp_path / "abl"
    run = out / "a2c-none-completion"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"algo": "a2c", "wall_s": 10.0}')
    (run / "eval.json").write_text('{"history": ')
    p = _script("training_ablation", "--variants", "ppo:none:completion,a2c:none:completion",
                "--out", str(out))
    _refused(p, f"{run / 'eval.json'}: eval.json is not valid JSON")
    assert sorted(x.name for x in out.iterdir()) == ["a2c-none-completion"]
    (run / "eval.json").write_text('{"history": []}')
    p = _script("training_ablation", "--variants", "a2c:none:completion", "--out", str(out))
    _refused(p, f"{run / 'eval.json'}: key 'history': expected a non-empty list")


# slo_bound.py

_ONE_REQUEST = '{"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [1]}\n'


def test_slo_bound_says_there_is_no_goodput_bound_over_a_zero_span(tmp_path):
    # one request: its eval split spans no time, and met / 0 would print inf
    (tmp_path / "one.jsonl").write_text(_ONE_REQUEST)
    p = _script("slo_bound", "--seeds", "1", "--trace", str(tmp_path / "one.jsonl"))
    assert p.returncode == 0, p.stderr
    assert "| 0 | 1 | 1.000 | 1.000 | n/a |" in p.stdout
    assert "no goodput bound on any seed" in p.stdout
    assert "inf" not in p.stdout and "Warning" not in p.stderr
    assert "the span is 0, so no goodput bound exists" in p.stderr


# bench_decision_latency.py


def test_bench_decision_latency_says_a_trace_is_not_a_checkpoint(tmp_path):
    # as `prfaas compare --policies` says it (it read: "its manifest ... is missing")
    trace = tmp_path / "trace.jsonl"
    trace.write_text(_ONE_REQUEST)
    p = _script("bench_decision_latency", str(trace))
    _refused(p, f"{trace}: not a checkpoint: expected an exported .onnx file or a training "
                "run directory")
    assert "manifest" not in p.stderr


@pytest.mark.parametrize("kind, says", [
    ("absent", "no checkpoint at this path"),
    ("empty directory", "not a training run directory (no run.json)"),
    ("zip", "an SB3 .zip: this benchmark takes its training run directory"),
])
def test_bench_decision_latency_refuses_what_it_cannot_time(tmp_path, kind, says):
    path = {"absent": tmp_path / "absent", "empty directory": tmp_path,
            "zip": tmp_path / "best_model.zip"}[kind]
    if kind == "zip":
        path.write_bytes(b"PK")
    _refused(_script("bench_decision_latency", str(path)), f"{path}: {says}")


def test_bench_decision_latency_refuses_an_unknown_scenario_before_training():
    # without a path it would first train a tiny policy, then fail on the scenario
    p = _script("bench_decision_latency", "--scenario", "nope")
    _refused(p, "unknown scenario 'nope'")
    assert "training a tiny" not in p.stdout


# bench_simulator.py


def _azure_csv(path: Path, n: int = 40) -> Path:
    rows = [f"2023-11-16 18:15:{10 + k // 2:02d}.{k % 2 * 5}000000,{500 + 37 * k},{20 + k}"
            for k in range(n)]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


def test_bench_simulator_replays_an_azure_trace(tmp_path):
    # it read every --trace as Mooncake JSONL: "az.csv:1: invalid JSON"
    az = _azure_csv(tmp_path / "az.csv")
    for fmt in ([], ["--trace-format", "azure"]):
        p = _script("bench_simulator", "--trace", str(az), *fmt, "--repeat", "1")
        assert p.returncode == 0, p.stderr
        assert "trace: 40 requests (" in p.stdout and "check: completed 40" in p.stdout


def test_bench_simulator_refuses_a_trace_format_without_a_trace():
    _refused(_script("bench_simulator", "--trace-format", "azure"),
             "--trace-format applies to --trace, which is not given")
