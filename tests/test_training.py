"""Train -> export -> evaluate, end to end, with a tiny step count (the CI smoke test)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.evaluation import best_heuristic, heuristic_chooser, mean_goodput, run_episodes
from agents.registry import make_heuristic
from prfaas_gym.cli import main
from prfaas_gym.env import PrfaasRouteEnv
from prfaas_gym.scenario import load_scenario


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    cfg = d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "n_steps": 64, "batch_size": 64, "n_epochs": 2,
        "learning_rate": 3e-4, "gamma": 0.99, "policy_kwargs": {"net_arch": [16, 16]}}}))
    out = d / "run"
    assert main(["train", "--algo", "maskable_ppo", "--scenario", "bursty-fluctuating",
                 "--timesteps", "256", "--n-envs", "2", "--vec", "dummy", "--seed", "3",
                 "--config", str(cfg), "--out", str(out), "--eval-freq", "128",
                 "--eval-episodes", "2", "--warm-start", "conductor",
                 "--warm-start-episodes", "1", "--warm-start-epochs", "2",
                 "--episode-requests", "32", "--no-progress"]) == 0
    return out


def test_run_directory_records_what_was_trained(tiny_run):
    run = json.loads((tiny_run / "run.json").read_text())
    for key in ("env_id", "env_version", "observation", "actions", "algo", "seed", "versions",
                "hyperparams", "scenario", "validation_seeds", "training_seeds",
                "best_validation", "warm_start"):
        assert key in run
    assert run["observation"]["hash"]
    assert set(run["validation_seeds"]).isdisjoint(run["training_seeds"])
    assert run["warm_start"]["teacher"] == "conductor"
    assert run["warm_start"]["epochs"] == 2 and run["warm_start"]["episodes"] == 1
    assert (tiny_run / "best_model.zip").exists() and (tiny_run / "final_model.zip").exists()
    assert (tiny_run / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = json.loads((tiny_run / "eval.json").read_text())
    history = evaluation["history"]
    assert len(history) >= 2 and any(h.get("best") for h in history)
    assert evaluation["best_model"]["timesteps"] == run["best_validation"]["timesteps"]
    assert list((tiny_run / "tb").rglob("events.*"))
    # what decides the candidate checkpoints, and where the scenario came from
    assert run["eval_freq"] == 128 and run["eval_episodes"] == 2 and run["select"] == "significant"
    assert run["scenario_sources"]["scenario"] == "bursty-fluctuating"
    assert run["scenario_sources"]["bandwidth"]["kind"] == "ou"
    assert run["commit_dirty"] in (True, False, None)


def test_validation_plot_takes_undefined_ratios_and_a_best_final_model(tmp_path):
    from agents.run_dir import plot_validation

    history = [{"timesteps": 0, "ratio_to_best_heuristic": None, "best": True},
               {"timesteps": 128, "ratio_to_best_heuristic": 0.9},
               {"timesteps": 256, "ratio_to_best_heuristic": 1.1, "best": True, "final": True}]
    path = tmp_path / "v.png"
    plot_validation(history, path, "conductor", "a title")
    assert path.read_bytes()[:4] == b"\x89PNG"
    plot_validation(history[:1], path, "conductor", "an interrupted run")  # replaced whole
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*tmp"))


def test_tensorboard_has_the_serving_metrics_and_a_custom_scalars_layout(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from agents.train import TENSORBOARD_LAYOUT

    (events,) = {p.parent for p in (tiny_run / "tb").rglob("events.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("serving/goodput_rps", "serving/ttft_p90_s", "serving/offload_fraction",
                "serving/link_utilization", "validation/goodput_rps",
                "validation/best_heuristic_goodput_rps", "validation/ratio_to_best_heuristic"):
        assert tag in scalars
    # every validation is written at the step it ran, the last one too
    history = json.loads((tiny_run / "eval.json").read_text())["history"]
    logged = [(e.step, e.value) for e in acc.Scalars("validation/goodput_rps")]
    assert [s for s, _ in logged] == [h["timesteps"] for h in history]
    assert [v for _, v in logged] == pytest.approx([h["goodput_rps"] for h in history],
                                                   rel=1e-6)
    # and, at each, the model kept so far: the last row marked best up to that validation
    kept = [next(h for h in reversed(history[:k + 1]) if h.get("best"))
            for k in range(len(history))]
    assert [e.value for e in acc.Scalars("validation/kept_timesteps")] == [
        h["timesteps"] for h in kept]
    assert [e.value for e in acc.Scalars("validation/kept_goodput_rps")] == pytest.approx(
        [h["goodput_rps"] for h in kept], rel=1e-6)
    (config,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["TTFT percentiles (s)"] == ["serving/ttft_p50_s", "serving/ttft_p90_s",
                                              "serving/ttft_p99_s"]
    for chart in charts.values():  # every chart draws series that were logged
        assert all(tag in scalars for tag in chart)
    assert len(charts) == sum(len(c) for c in TENSORBOARD_LAYOUT.values())


def test_export_then_simulate_and_compare(tiny_run, tmp_path, capsys):
    onnx_path = tmp_path / "policy.onnx"
    assert main(["export", str(tiny_run), "--out", str(onnx_path)]) == 0
    manifest = json.loads((tmp_path / "policy.manifest.json").read_text())
    assert manifest["scenario"] == "bursty-fluctuating"
    capsys.readouterr()
    assert main(["simulate", "--scenario", "bursty-fluctuating", "--policy", str(onnx_path),
                 "--requests", "150", "--split", "eval", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    c = res["completed"] + res["rejected"] + res["failed"] + res["in_flight"]
    assert c == res["requests"] == 150
    assert main(["compare", "--scenario", "bursty-fluctuating", "--policies",
                 f"conductor,{onnx_path}", "--seeds", "2", "--requests", "120", "--split",
                 "eval", "--no-progress"]) == 0
    assert "policy.onnx" in capsys.readouterr().out


def test_manifest_says_how_the_exported_model_was_trained_and_picked(tiny_run, tmp_path):
    """A deployed file carries its training recipe (budget, randomisation, teacher, splits)
    and the validation row of the model it holds: the best one or the final one."""
    run = json.loads((tiny_run / "run.json").read_text())
    history = json.loads((tiny_run / "eval.json").read_text())["history"]
    for model, row in (("best", run["best_validation"]),
                       ("final", next(r for r in history if r.get("final")))):
        out = tmp_path / f"{model}.onnx"
        assert main(["export", str(tiny_run), "--model", model, "--out", str(out)]) == 0
        training = json.loads((tmp_path / f"{model}.manifest.json").read_text())["training"]
        # the row without its wall time: provenance, not this machine's timing
        assert "wall_s" in row and training["validation"] == {
            k: v for k, v in row.items() if k != "wall_s"}
        assert training["timesteps"] == 256 and training["n_envs"] == 2
        assert training["eval_freq"] == 128 and training["eval_episodes"] == 2
        assert training["select"] == "significant"
        assert training["episode_requests"] == 32
        assert training["warm_start"] == {"teacher": "conductor", "episodes": 1, "epochs": 2}
        assert training["randomize"] == run["randomize"]
        assert training["hyperparams"] == run["hyperparams"]
        assert training["best_heuristic"] == run["best_heuristic"]
        assert (training["train_split"], training["validation_split"]) == ("train", "val")
    assert history[-1]["final"] and history[-1]["timesteps"] >= 256
    # a run whose eval.json is unreadable still exports its final model, saying no row
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "eval.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["export", str(broken), "--model", "final", "--out",
                 str(tmp_path / "b.onnx")]) == 0
    assert json.loads((tmp_path / "b.manifest.json").read_text())["training"][
        "validation"] is None


def test_unknown_hyperparameter_is_named(tmp_path):
    from agents.train import load_hyperparams
    from prfaas_gym.errors import PrfaasInputError

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"PrfaasRoute-v0": {"n_stepz": 5}}))
    with pytest.raises(PrfaasInputError, match="n_stepz"):
        load_hyperparams("ppo", "bursty-fluctuating", bad)


def test_warm_start_clones_the_teacher():
    from sb3_contrib import MaskablePPO

    from agents.imitation import collect_demonstrations, pretrain
    from prfaas_gym.env import PrfaasRouteEnv
    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")
    demos = collect_demonstrations(sc, "conductor", [5, 6, 7, 8], gamma=0.99)
    assert demos["obs"].shape == (1024, 32) and demos["masks"].all(axis=1).any()
    model = MaskablePPO("MlpPolicy", PrfaasRouteEnv(sc), seed=0,
                        policy_kwargs={"net_arch": [32, 32]})
    before = pretrain(model, demos, epochs=0)["agreement"]
    stats = pretrain(model, demos, epochs=40)
    # conductor's choices are learnable from the observation: most are reproduced
    assert stats["agreement"] > 0.8 and stats["agreement"] > before + 0.2
    assert np.isfinite(stats["value_mse"])


def test_cuda_training_path_when_a_gpu_is_present(tmp_path):
    """Exercised only where torch sees a GPU: train on CUDA, export, and check the ONNX
    logits against the CUDA policy's."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from agents.export import LogitsModule, export_onnx, load_sb3
    from agents.learned import OnnxRouter
    from agents.train import train
    from prfaas_gym.env import PrfaasRouteEnv

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "n_steps": 64, "batch_size": 64, "n_epochs": 1,
        "policy_kwargs": {"net_arch": [16, 16]}}}))
    out = train("maskable_ppo", "bursty-fluctuating", 128, n_envs=1, vec="dummy", config=cfg,
                out=tmp_path / "run", eval_freq=128, eval_episodes=1, select="max", progress=False,
                device="cuda", warm_start=None)
    onnx_path, _ = export_onnx(out, tmp_path / "p.onnx")
    env = PrfaasRouteEnv("bursty-fluctuating", episode_requests=32)
    obs = np.stack([env.reset(seed=s)[0] for s in range(8)])
    model = load_sb3(out / "best_model.zip", "maskable_ppo")
    with torch.no_grad():
        expected = LogitsModule(model, "maskable_ppo")(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(OnnxRouter(onnx_path).logits(obs), expected, atol=1e-5)


# -- refusing bad train input before anything is written --------------------------------------

@pytest.fixture
def tiny_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "policy_kwargs": {"net_arch": [8]}}}))
    return cfg


def _train_argv(out, config, *extra: str) -> list[str]:
    return ["train", "--algo", "maskable_ppo", "--scenario", "bursty-fluctuating",
            "--timesteps", "32", "--n-envs", "1", "--vec", "dummy", "--config", str(config),
            "--out", str(out), "--eval-freq", "32", "--eval-episodes", "1", "--select", "max",
            "--episode-requests", "16", "--warm-start", "none", "--no-progress", *extra]


def test_python_api_takes_warm_start_none_as_the_cli_does(tmp_path, tiny_config):
    from agents.train import train

    out = train("maskable_ppo", "bursty-fluctuating", 32, n_envs=1, config=tiny_config,
                out=tmp_path / "run", eval_freq=32, eval_episodes=1, select="max", progress=False,
                vec="dummy", warm_start="none", episode_requests=16)
    assert json.loads((out / "run.json").read_text())["warm_start"] is None


def test_keep_checkpoints_keeps_every_validated_model_loadable(tmp_path, tiny_config):
    from agents.learned import load_learned_policy

    out = tmp_path / "run"
    assert main(_train_argv(out, tiny_config, "--timesteps", "96",
                            "--keep-checkpoints")) == 0
    history = json.loads((out / "eval.json").read_text())["history"]
    names = [h["checkpoint"] for h in history]
    # the last validation (after the last update) is final_model.zip, even when it shares
    # its step count with the validation inside the last rollout
    assert names == [f"checkpoint_{h['timesteps']}.zip" for h in history[:-1]] + [
        "final_model.zip"] and len(set(names)) == len(names) >= 3
    assert history[-1]["final"] and not any(h.get("final") for h in history[:-1])
    sc = load_scenario("bursty-fluctuating")
    env = PrfaasRouteEnv(sc, split="val", episode_requests=16)
    obs, _ = env.reset(seed=0)
    best = next(h for h in reversed(history) if h.get("best"))
    logits = {}
    for name in set(names) | {"best_model.zip"}:
        router = load_learned_policy(str(out / name), sc).router
        logits[name] = router.logits_single(obs)
    # the best row's checkpoint is the model best_model.zip holds; and every row's file
    # holds the model that row scored (two models at one step would be told apart here)
    assert np.allclose(logits[best["checkpoint"]], logits["best_model.zip"])
    from agents.evaluation import mean_goodput, model_chooser, run_episodes
    from agents.export import load_sb3

    seeds = json.loads((out / "eval.json").read_text())["validation_seeds"]
    for h in history:
        model = load_sb3(out / h["checkpoint"], "maskable_ppo")
        got = mean_goodput(run_episodes(sc, model_chooser(model, "maskable_ppo"), seeds,
                                        split="val", episode_requests=16))
        assert got == pytest.approx(h["goodput_rps"], rel=1e-9), h
    assert json.loads((out / "run.json").read_text())["keep_checkpoints"] is True
    assert not list(tmp_path.glob("**/*.tmp.zip"))


def test_train_on_your_own_trace_then_score_it_on_its_held_out_split(tmp_path, tiny_config,
                                                                    capsys):
    """``train --trace F --bandwidth-trace B --rate R`` trains and validates on F's own
    splits at R and on B's link, records all three in run.json and the manifest, and
    ``compare`` with the same options and ``--split eval`` scores the exported policy on F's
    held-out split."""
    rng = np.random.default_rng(0)
    trace = tmp_path / "mine.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i,
                                         "input_length": int(rng.integers(500, 8_000)),
                                         "output_length": int(rng.integers(10, 300)),
                                         "hash_ids": []}) + "\n" for i in range(600)))
    link = tmp_path / "link.csv"
    link.write_text("time_s,gbps\n" + "".join(f"{t},{20 + 15 * (t % 3)}\n" for t in range(200)))
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config, "--trace", str(trace), "--bandwidth-trace", str(link),
                       "--bandwidth-gbps", "30", "--rate", "1.5")
    argv[argv.index("bursty-fluctuating")] = "mooncake-conversation"
    assert main(argv) == 0
    printed = capsys.readouterr().out
    command = (f"python benchmarks/heldout.py --scenario mooncake-conversation --trace {trace} "
               f"--bandwidth-trace {link} --bandwidth-gbps 30.0 --rate 1.5 --policy {out} "
               "--seeds 5")  # a link that varies: five seeds are five runs
    assert command in printed
    run = json.loads((out / "run.json").read_text())
    assert run["scenario_sources"]["workload"] == {"trace": str(trace), "format": None,
                                                   "given_as": "--trace", "rate": 1.5,
                                                   "rate_given_as": "--rate"}
    assert run["scenario_sources"]["bandwidth"] == {"kind": "trace", "path": str(link),
                                                    "scale_to_gbps": 30.0}
    # the baseline was measured on the trace's val split and link, not the scenario's own
    sc = (load_scenario("mooncake-conversation").with_trace(str(trace))
          .with_bandwidth_trace(str(link), scale_to_gbps=30.0).with_rate(1.5))
    name, _, table = best_heuristic(sc, run["validation_seeds"], split="val",
                                    episode_requests=16, progress=False)
    assert run["best_heuristic"] == {"name": name, "goodput_rps": table[name]} and table[name] > 0
    _, _, own = best_heuristic(load_scenario("mooncake-conversation"), run["validation_seeds"],
                               split="val", episode_requests=16, progress=False)
    assert own[name] != table[name]

    onnx_path = tmp_path / "mine.onnx"
    assert main(["export", str(out), "--out", str(onnx_path)]) == 0
    manifest = json.loads((tmp_path / "mine.manifest.json").read_text())
    assert manifest["scenario_sources"] == run["scenario_sources"]
    capsys.readouterr()
    assert main(["compare", "--scenario", "mooncake-conversation", "--trace", str(trace),
                 "--bandwidth-trace", str(link), "--bandwidth-gbps", "30", "--rate", "1.5",
                 "--split", "eval",
                 "--seeds", "1", "--requests", "40", "--policies", f"conductor,{onnx_path}",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "mine.onnx" in captured.out and "was trained with" not in captured.err
    # scored without the trace (or at another rate), it says what it was trained on
    assert main(["compare", "--scenario", "mooncake-conversation", "--bandwidth-trace",
                 str(link), "--bandwidth-gbps", "30", "--rate", "1.5", "--split", "eval",
                 "--seeds", "1", "--requests", "40", "--policies", str(onnx_path),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"mine.onnx was trained with its requests from {trace} at 1.5 req/s" in err
    assert "was trained with its link" not in err
    # the held-out command train printed runs as printed (here on fewer requests)
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, *shlex.split(command)[1:], "--requests", "20", "--seeds", "2"]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "was trained with" not in done.stderr
    assert f"mooncake-conversation (--trace {trace}, --bandwidth-trace {link}, " \
           "--bandwidth-gbps 30.0, --rate 1.5), eval split, seeds 0..1" in done.stdout


def test_train_says_when_a_trace_split_is_shorter_than_an_episode(tmp_path, tiny_config,
                                                                  capsys):
    trace = tmp_path / "short.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 1000 + i,
                                         "output_length": 20, "hash_ids": []}) + "\n"
                             for i in range(100)))  # 70 / 10 / 20 requests
    argv = _train_argv(tmp_path / "run", tiny_config, "--trace", str(trace))
    argv[argv.index("bursty-fluctuating")] = "paper-case-study"
    argv[argv.index("--episode-requests") + 1] = "50"
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "the val split of the trace has 10 requests, fewer than an episode's 50: every " \
           "validation episode replays all 10" in err
    assert "the train split" not in err
    # every seed would replay the whole eval split on the same constant link: one seed
    assert f"--trace {trace} --policy {tmp_path / 'run'} --seeds 1" in out


def test_a_run_whose_held_out_link_carries_nothing_still_finishes(tmp_path, tiny_config,
                                                                   capsys):
    """The eval split's link is only drawn to print the held-out command, after the run is
    written: a link that carries nothing there is a note, not a failed command."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 1000 + i,
                                         "output_length": 20, "hash_ids": []}) + "\n"
                             for i in range(100)))
    link = tmp_path / "outage.csv"  # 10 Gbit/s, then nothing for the last 20% of its time
    link.write_text("time_s,gbps\n" + "".join(f"{t},{10 if t < 80 else 0}\n"
                                              for t in range(101)))
    argv = _train_argv(tmp_path / "run", tiny_config, "--trace", str(trace),
                       "--bandwidth-trace", str(link), "--bandwidth-gbps", "recorded")
    argv[argv.index("bursty-fluctuating")] = "paper-case-study"
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "the held-out eval split cannot be scored" in err and "carries nothing" in err
    assert "heldout.py" not in out and "env steps/s" in out
    assert (tmp_path / "run" / "final_model.zip").exists()


def test_train_refuses_an_existing_run_directory(tmp_path, tiny_config, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("earlier run\n")
    (out / "run.json").write_text("{}\n")
    assert main(_train_argv(out, tiny_config)) == 2
    err = capsys.readouterr().err
    assert "prfaas: error:" in err and str(out) in err and "not empty" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "run.json"]
    assert (out / "config.yaml").read_text() == "earlier run\n"


def test_run_json_names_the_commit_the_run_started_from(tmp_path, tiny_config, monkeypatch):
    """A commit made while a run trains is not its source: run.json's final write keeps the
    commit and dirty flag read when the run started."""
    import agents.run_dir
    from agents.train import train

    heads = iter(["started-here", "committed-later", "committed-later"])
    dirty = iter([False, True, True])
    monkeypatch.setattr(agents.run_dir, "git_commit", lambda: next(heads))
    monkeypatch.setattr(agents.run_dir, "git_dirty", lambda: next(dirty))
    out = tmp_path / "run"
    train("maskable_ppo", "bursty-fluctuating", 32, n_envs=1, vec="dummy", config=tiny_config,
          out=out, eval_freq=32, eval_episodes=1, select="max", progress=False, warm_start=None,
          episode_requests=16)
    run = json.loads((out / "run.json").read_text())
    assert (run["commit"], run["commit_dirty"]) == ("started-here", False)
    assert "wall_s" in run  # the final write


def test_train_into_an_existing_empty_directory(tmp_path, tiny_config):
    from agents.train import train

    out = tmp_path / "run"
    out.mkdir()
    train("maskable_ppo", "bursty-fluctuating", 32, n_envs=1, vec="dummy", config=tiny_config,
          out=out, eval_freq=32, eval_episodes=1, select="max", progress=False, warm_start=None,
          episode_requests=16)
    assert (out / "run.json").is_file() and (out / "final_model.zip").is_file()


@pytest.mark.parametrize("extra, expected", [
    (["--warm-start", "nope"], "--warm-start"),
    (["--trace-format", "azure"], "--trace-format applies to --trace, which is not given"),
    (["--bandwidth-gbps", "5"], "--bandwidth-gbps applies to --bandwidth-trace"),
    (["--trace", "no-such-trace.jsonl"], "--trace: file not found: no-such-trace.jsonl"),
    (["--episode-requests", "0"], "--episode-requests must be an integer >= 1, got 0"),
    (["--episode-requests", "-3"], "--episode-requests must be an integer >= 1, got -3"),
    (["--seed", "-1"], "--seed must be >= 0 and < 2**31 (numpy seeds each worker and demonstration from it), got -1"),
    (["--timesteps", "0"], "--timesteps must be an integer >= 1, got 0"),
])
def test_train_validates_options_before_creating_the_run_directory(tmp_path, tiny_config,
                                                                   capsys, extra, expected):
    out = tmp_path / "run"
    assert main(_train_argv(out, tiny_config, *extra)) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kwargs, expected", [
    ({"vec": "x"}, "--vec must be one of ['auto', 'subproc', 'dummy'], got 'x'"),
    ({"device": "tpu"}, "--device must be one of ['cpu', 'cuda', 'auto'], got 'tpu'"),
    ({"timesteps": 1.5}, "--timesteps must be an integer >= 1, got 1.5"),
    ({"select": "mean"}, "--select must be one of ['significant', 'max'], got 'mean'"),
    ({"select": "significant"}, "--select significant (the default) pairs the checkpoints' "
                                "goodputs per validation episode and needs --eval-episodes "
                                ">= 2, got 1"),
])
def test_python_api_refuses_what_the_cli_refuses(tmp_path, tiny_config, kwargs, expected):
    """train() called from Python checks the options the CLI restricts with choices."""
    from agents.train import train
    from prfaas_gym.errors import PrfaasInputError

    args = {"timesteps": 32, "vec": "dummy", "device": "cpu", "eval_episodes": 1,
            "select": "max", **kwargs}
    with pytest.raises(PrfaasInputError) as ei:
        train("maskable_ppo", "bursty-fluctuating", args.pop("timesteps"), n_envs=1,
              config=tiny_config, out=tmp_path / "run", eval_freq=32, progress=False,
              warm_start="none", episode_requests=16, **args)
    assert expected in str(ei.value)
    assert not (tmp_path / "run").exists()


def test_a_misspelt_scenario_override_is_named(tmp_path, capsys):
    """The shipped recipes live in per-scenario overrides: one under a misspelt name would
    silently train with the base values, so train says so before it starts."""
    from agents.train import load_hyperparams

    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "learning_rate": 3e-4, "policy_kwargs": {"net_arch": [8]},
        "scenarios": {"bursty-fluctuatng": {"learning_rate": 5e-5},
                      "paper-case-study": {"learning_rate": 1e-5}}}}))
    notes: list[str] = []
    hp = load_hyperparams("maskable_ppo", "bursty-fluctuating", cfg, notes=notes)
    assert hp["learning_rate"] == 3e-4
    assert notes == [f"{cfg}: PrfaasRoute-v0.scenarios has a section 'bursty-fluctuatng' but "
                     "none named 'bursty-fluctuating', the scenario trained, so no override "
                     "applies (a typo?)"]
    notes.clear()  # a section for another scenario is no typo
    assert load_hyperparams("maskable_ppo", "paper-case-study", cfg,
                            notes=notes)["learning_rate"] == 1e-5
    assert load_hyperparams("maskable_ppo", "mooncake-conversation", cfg, notes=notes) \
        and notes == []
    assert main(_train_argv(tmp_path / "run", cfg)) == 0
    assert "has a section 'bursty-fluctuatng' but none named" in capsys.readouterr().err


def test_train_on_an_unusable_trace_leaves_no_run_directory(tmp_path, tiny_config, capsys):
    # a trace scenario reads its trace only when an episode is built
    trace = tmp_path / "one.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": []}\n')
    shipped = Path(__file__).resolve().parents[1] / "prfaas_gym/data/scenarios"
    scenario = yaml.safe_load((shipped / "mooncake-conversation.yaml").read_text())
    scenario["workload"]["trace"]["path"] = str(trace)
    scenario_path = tmp_path / "one.yaml"
    scenario_path.write_text(yaml.safe_dump(scenario))
    argv = _train_argv(tmp_path / "run", tiny_config)
    argv[argv.index("bursty-fluctuating")] = str(scenario_path)
    assert main(argv) == 2
    assert "has no requests" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_bad_config_leaves_no_run_directory(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("PrfaasRoute-v0:\n  learning_rate: abc\n")
    out = tmp_path / "run"
    assert main(_train_argv(out, cfg)) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "PrfaasRoute-v0.learning_rate" in err
    assert not out.exists()


@pytest.mark.parametrize("out_name, expected", [
    ("f", "not a directory"),
    ("f/run", "cannot create"),
])
def test_train_out_that_is_not_a_usable_directory(tmp_path, tiny_config, capsys, out_name,
                                                  expected):
    (tmp_path / "f").write_text("keep\n")
    out = tmp_path / out_name
    assert main(_train_argv(out, tiny_config)) == 2
    err = capsys.readouterr().err
    assert "prfaas: error:" in err and expected in err and str(out) in err
    assert (tmp_path / "f").read_text() == "keep\n"


def test_train_unwritable_out_is_a_clear_error(tmp_path, tiny_config, capsys, monkeypatch):
    from pathlib import Path

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)  # root ignores chmod; simulate EACCES
    out = tmp_path / "run"
    assert main(_train_argv(out, tiny_config)) == 2
    err = capsys.readouterr().err
    assert "cannot create" in err and "Permission denied" in err and str(out) in err


# -- hyperparameter values ------------------------------------------------------------------

@pytest.mark.parametrize("algo, section, key", [
    ("ppo", {"learning_rate": "abc"}, "PrfaasRoute-v0.learning_rate"),
    ("ppo", {"learning_rate": float("nan")}, "PrfaasRoute-v0.learning_rate"),
    ("ppo", {"learning_rate": 0.0}, "PrfaasRoute-v0.learning_rate"),
    ("ppo", {"learning_rate": 10**400}, "PrfaasRoute-v0.learning_rate"),  # too big for a float
    ("ppo", {"n_steps": 0}, "PrfaasRoute-v0.n_steps"),
    ("ppo", {"n_steps": 8.5}, "PrfaasRoute-v0.n_steps"),
    ("ppo", {"n_epochs": -1}, "PrfaasRoute-v0.n_epochs"),
    ("ppo", {"batch_size": True}, "PrfaasRoute-v0.batch_size"),
    ("ppo", {"batch_size": 1}, "PrfaasRoute-v0.batch_size"),
    ("maskable_ppo", {"vf_coef": "x"}, "PrfaasRoute-v0.vf_coef"),
    ("maskable_ppo", {"policy": "NopePolicy"}, "PrfaasRoute-v0.policy"),
    ("maskable_ppo", {"gamma": 2.0}, "PrfaasRoute-v0.gamma"),
    ("maskable_ppo", {"gamma": 0}, "PrfaasRoute-v0.gamma"),
    ("maskable_ppo", {"gae_lambda": 1.5}, "PrfaasRoute-v0.gae_lambda"),
    ("maskable_ppo", {"clip_range": -0.2}, "PrfaasRoute-v0.clip_range"),
    ("maskable_ppo", {"ent_coef": float("inf")}, "PrfaasRoute-v0.ent_coef"),
    ("maskable_ppo", {"target_kl": 0}, "PrfaasRoute-v0.target_kl"),
    ("a2c", {"max_grad_norm": 0}, "PrfaasRoute-v0.max_grad_norm"),
    ("dqn", {"buffer_size": 0}, "PrfaasRoute-v0.buffer_size"),
    ("dqn", {"learning_starts": -1}, "PrfaasRoute-v0.learning_starts"),
    ("dqn", {"train_freq": 0}, "PrfaasRoute-v0.train_freq"),
    ("dqn", {"gradient_steps": 0}, "PrfaasRoute-v0.gradient_steps"),
    ("dqn", {"exploration_fraction": 0.0}, "PrfaasRoute-v0.exploration_fraction"),
    ("dqn", {"exploration_final_eps": 1.5}, "PrfaasRoute-v0.exploration_final_eps"),
    ("dqn", {"tau": 0}, "PrfaasRoute-v0.tau"),
    ("ppo", {"scenarios": [1, 2]}, "PrfaasRoute-v0.scenarios"),
    ("ppo", {"scenarios": {"bursty-fluctuating": [1]}},
     "PrfaasRoute-v0.scenarios.bursty-fluctuating"),
    ("ppo", {"scenarios": {"another-scenario": {"gamma": 7}}},
     "PrfaasRoute-v0.scenarios.another-scenario.gamma"),
    ("ppo", {"scenarios": {"bursty-fluctuating": {"n_stepz": 7}}},
     "PrfaasRoute-v0.scenarios.bursty-fluctuating"),
    ("ppo", [1], "PrfaasRoute-v0"),
    ("maskable_ppo", {"env_kwargs": {"reward": "ttft"}}, "PrfaasRoute-v0.env_kwargs.reward"),
    ("ppo", {"env_kwargs": {"rewrd": "completion"}}, "PrfaasRoute-v0.env_kwargs.rewrd"),
    ("ppo", {"env_kwargs": []}, "PrfaasRoute-v0.env_kwargs"),  # was: read as no kwargs
    ("ppo", {"scenarios": {"bursty-fluctuating": {"env_kwargs": [1]}}},
     "PrfaasRoute-v0.scenarios.bursty-fluctuating.env_kwargs"),
    ("maskable_ppo", {"curriculum": {"start": {"rate_scale": [0.5, 0.6]}}},
     "PrfaasRoute-v0.curriculum"),
    ("maskable_ppo", {"curriculum": {"start": {"rate_scale": [0.6, 0.5]}, "fraction": 0.5}},
     "PrfaasRoute-v0.curriculum.start.rate_scale"),
    ("dqn", {"curriculum": {"start": {"load": [0.5, 0.6]}, "fraction": 0.5}},
     "PrfaasRoute-v0.curriculum.start.load"),
    ("ppo", {"curriculum": {"start": {"rate_scale": [0.5, 0.6]}, "fraction": 0}},
     "PrfaasRoute-v0.curriculum.fraction"),
    ("ppo", {"curriculum": {"start": {}, "fraction": 0.5}}, "PrfaasRoute-v0.curriculum.start"),
])
def test_bad_hyperparameter_values_are_named(tmp_path, algo, section, key):
    from agents.train import load_hyperparams
    from prfaas_gym.errors import PrfaasInputError

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"PrfaasRoute-v0": section}))
    with pytest.raises(PrfaasInputError) as ei:
        load_hyperparams(algo, "bursty-fluctuating", bad)
    assert str(ei.value).startswith(f"{bad}: {key}:")


def test_valid_hyperparameters_load(tmp_path):
    from agents.train import ALGOS, load_hyperparams

    for algo in ALGOS:
        for scenario in ("bursty-fluctuating", "mooncake-conversation", "paper-case-study"):
            assert load_hyperparams(algo, scenario)["policy"] == "MlpPolicy"
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "learning_rate": 1, "gamma": 1.0, "gae_lambda": 0.0, "target_kl": None,
        "scenarios": {"bursty-fluctuating": {"gamma": 0.9}, "other": None}}}))
    hp = load_hyperparams("ppo", "bursty-fluctuating", ok)
    assert hp == {"learning_rate": 1, "gamma": 0.9, "gae_lambda": 0.0, "target_kl": None}


def test_env_kwargs_reward_reaches_the_training_envs_and_the_warm_start(tmp_path, monkeypatch):
    import agents.imitation as imitation
    import agents.train as train_mod

    seen = {}
    make_env, collect = train_mod.make_train_env, imitation.collect_demonstrations

    def spy_env(*a, **kw):
        env = make_env(*a, **kw)
        seen["envs"] = env.get_attr("reward")
        return env

    def spy_demos(*a, **kw):
        seen["demos"] = kw.get("reward")
        return collect(*a, **kw)

    monkeypatch.setattr(train_mod, "make_train_env", spy_env)
    monkeypatch.setattr(imitation, "collect_demonstrations", spy_demos)
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]},
        "env_kwargs": {"reward": "first_token"}}}))
    out = tmp_path / "run"
    argv = _train_argv(out, cfg, "--n-envs", "2")
    argv[argv.index("--warm-start") + 1] = "conductor"
    assert main(argv + ["--warm-start-episodes", "1", "--warm-start-epochs", "1"]) == 0
    assert seen == {"envs": ["first_token", "first_token"], "demos": "first_token"}
    run = json.loads((out / "run.json").read_text())
    assert run["hyperparams"]["env_kwargs"] == {"reward": "first_token"}


def test_curriculum_ranges_move_linearly_to_the_scenario_ranges():
    from agents.train import curriculum_ranges

    start = {"rate_scale": [0.5, 0.5], "n_prfaas": [4, 4]}
    end = {"rate_scale": (0.7, 1.4), "n_prfaas": (1, 4)}
    assert curriculum_ranges(start, end, 0.0) == {"rate_scale": [0.5, 0.5], "n_prfaas": [4, 4]}
    mid = curriculum_ranges(start, end, 0.5)
    assert mid["rate_scale"] == pytest.approx([0.6, 0.95])
    assert mid["n_prfaas"] == [2, 4]  # 2.5 rounds to whole instances
    assert curriculum_ranges(start, end, 1.0) == curriculum_ranges(start, end, 7.0) == {
        "rate_scale": [0.7, 1.4], "n_prfaas": [1, 4]}


def test_curriculum_widens_the_training_envs_ranges_to_the_scenario(tmp_path, monkeypatch):
    """The first episodes come from the curriculum's start, the ranges widen monotonically,
    and they are the scenario's once ``fraction`` of the steps is done."""
    calls = []
    original = PrfaasRouteEnv.set_randomize

    def spy(self, ranges):
        calls.append({k: list(v) for k, v in ranges.items()})
        original(self, ranges)

    monkeypatch.setattr(PrfaasRouteEnv, "set_randomize", spy)
    cfg = tmp_path / "cur.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "n_steps": 16, "batch_size": 16, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]},
        "curriculum": {"start": {"rate_scale": [0.5, 0.5]}, "fraction": 0.5}}}))
    out = tmp_path / "run"
    argv = _train_argv(out, cfg)
    argv[argv.index("--timesteps") + 1] = "128"
    assert main(argv) == 0
    assert calls[0] == {"rate_scale": [0.5, 0.5]}
    assert calls[-1] == {"rate_scale": [0.7, 1.4]}  # bursty-fluctuating's own range
    los = [c["rate_scale"][0] for c in calls]
    his = [c["rate_scale"][1] for c in calls]
    assert los == sorted(los) and his == sorted(his) and len(calls) >= 4
    run = json.loads((out / "run.json").read_text())
    assert run["hyperparams"]["curriculum"]["start"] == {"rate_scale": [0.5, 0.5]}


def test_curriculum_on_an_unrandomised_quantity_is_refused_before_anything_is_written(
        tmp_path, capsys):
    cfg = tmp_path / "cur.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "curriculum": {"start": {"n_prfaas": [4, 4]}, "fraction": 0.5}}}))
    out = tmp_path / "run"
    assert main(_train_argv(out, cfg)) == 2
    err = capsys.readouterr().err
    assert "PrfaasRoute-v0.curriculum.start" in err and "does not randomise ['n_prfaas']" in err
    assert not out.exists()
    # a scenario's own curriculum is named where it is
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {"scenarios": {"bursty-fluctuating": {
        "curriculum": {"start": {"n_prfaas": [4, 4]}, "fraction": 0.5}}}}}))
    assert main(_train_argv(out, cfg)) == 2
    err = capsys.readouterr().err
    assert "PrfaasRoute-v0.scenarios.bursty-fluctuating.curriculum.start" in err
    assert not out.exists()


# -- Ctrl-C ------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["learning", "last validation"])
def test_ctrl_c_after_the_first_validation_keeps_the_model_so_far(tmp_path, tiny_config, capsys,
                                                                  monkeypatch, where):
    # as rl-zoo3 does: an interrupted run is a usable, exportable run of fewer steps
    from stable_baselines3.common.callbacks import BaseCallback

    import agents.train as train_mod
    from agents.export import load_sb3

    class CtrlC(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 96:
                raise KeyboardInterrupt
            return True

    if where == "learning":
        real = train_mod._callbacks
        monkeypatch.setattr(train_mod, "_callbacks",
                            lambda *a, **k: (CtrlC(), real(*a, **k)[1]))
        steps = 96
    else:
        calls = []
        real_run = train_mod.run_episodes

        def run_episodes(*a, **k):
            calls.append(1)
            if len(calls) == 12:  # at 0, every 32 steps to 320, then the last one
                raise KeyboardInterrupt
            return real_run(*a, **k)

        monkeypatch.setattr(train_mod, "run_episodes", run_episodes)
        steps = 320
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--timesteps") + 1] = "320"
    assert main(argv) == 130
    assert f"interrupted at {steps} of 320 steps" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted_at"] == steps and run["best_validation"]["timesteps"] <= steps
    assert load_sb3(out / "final_model.zip", "maskable_ppo").num_timesteps == steps
    assert (out / "best_model.zip").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    assert main(["export", str(out), "--out", str(tmp_path / "p.onnx")]) == 0


def test_ctrl_c_while_a_new_best_is_saved_waits_until_eval_json_says_so(tmp_path, tiny_config,
                                                                        capsys, monkeypatch):
    # a signal between saving best_model.zip and keeping its row left run.json and eval.json
    # naming an older checkpoint than best_model.zip held
    import os
    import signal

    import agents.train as train_mod

    real_save = train_mod._save_atomically
    saves = []

    def save_then_ctrl_c(model, path):
        real_save(model, path)
        saves.append(path.name)
        if path.name == "best_model.zip" and model.num_timesteps >= 64:
            os.kill(os.getpid(), signal.SIGINT)  # lands right after the new best is saved

    monkeypatch.setattr(train_mod, "_save_atomically", save_then_ctrl_c)
    real_mean = train_mod.mean_goodput
    monkeypatch.setattr(train_mod, "mean_goodput",  # every validation a new best
                        lambda metrics: real_mean(metrics) + len(saves))
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--timesteps") + 1] = "320"
    assert main(argv) == 130
    capsys.readouterr()
    run = json.loads((out / "run.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    from agents.export import load_sb3

    held = load_sb3(out / "best_model.zip", "maskable_ppo").num_timesteps
    assert held >= 64
    assert run["best_validation"]["timesteps"] == ev["best_model"]["timesteps"] == held
    assert ev["history"][-1]["timesteps"] == held and ev["history"][-1]["best"]


@pytest.mark.parametrize("where", ["baseline", "first validation"])
@pytest.mark.parametrize("existed", [False, True])
def test_ctrl_c_before_a_validation_leaves_the_run_directory_reusable(
        tmp_path, tiny_config, capsys, monkeypatch, existed, where):
    import agents.train as train_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    if existed:
        out.mkdir()
    monkeypatch.setattr(train_mod, "best_heuristic" if where == "baseline" else "run_episodes",
                        interrupted)
    assert main(_train_argv(out, tiny_config)) == 130
    assert "interrupted" in capsys.readouterr().err
    assert out.exists() == existed and not (existed and any(out.iterdir()))
    monkeypatch.undo()
    assert main(_train_argv(out, tiny_config)) == 0  # the same --out works now


def test_train_shows_progress_before_learning(tmp_path, tiny_config, capsys):
    # the baseline and the warm start take most of a short run's first minute: they get bars
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv.remove("--no-progress")
    argv[argv.index("--warm-start") + 1] = "conductor"
    assert main([*argv, "--warm-start-episodes", "2", "--warm-start-epochs", "2"]) == 0
    err = capsys.readouterr().err
    for bar in ("baseline: heuristics on 1 val episode:", "warm start: conductor on training "
                "episodes", "warm start: fitting"):
        assert bar in err
    assert (out / "final_model.zip").is_file()


def test_validation_scores_the_policy_as_it_deploys(tmp_path, tiny_config, capsys):
    # paper-naive has no local prefill node: an unmasked PPO often prefers the infeasible
    # "local" action. Validation used SB3's unmasked predict (the env then routed remote)
    # while the exported policy takes the best feasible action (often reject), so the best
    # checkpoint was picked, and its goodput reported, by a rule that never ran deployed.
    from agents.evaluation import heuristic_chooser, mean_goodput, run_episodes
    from agents.learned import load_learned_policy

    out = tmp_path / "naive"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("maskable_ppo")] = "ppo"
    argv[argv.index("bursty-fluctuating")] = "paper-naive"
    argv[argv.index("--eval-episodes") + 1] = "2"
    assert main(argv) == 0
    capsys.readouterr()
    history = json.loads((out / "eval.json").read_text())
    sc = load_scenario("paper-naive")
    best = max(history["history"], key=lambda r: r["goodput_rps"])
    deployed = run_episodes(sc, heuristic_chooser(load_learned_policy(out, sc)),
                            history["validation_seeds"], split="val", episode_requests=16)
    assert mean_goodput(deployed) == pytest.approx(best["goodput_rps"], rel=1e-12)


def test_the_warm_start_teacher_runs_its_slow_loop(monkeypatch):
    # prfaas-dual re-solves its threshold and rebalances roles in on_tick; cloned without
    # its ticks it is a different teacher from the one the baseline measured.
    from agents.imitation import collect_demonstrations
    from agents.prfaas_dual import PrfaasDual

    calls = []
    original = PrfaasDual.on_tick
    monkeypatch.setattr(PrfaasDual, "on_tick",
                        lambda self, view: calls.append(view.time_s) or original(self, view))
    demos = collect_demonstrations(load_scenario("bursty-fluctuating"), "prfaas-dual", [0],
                                   gamma=0.99, episode_requests=200)
    assert len(demos["actions"]) == 200
    assert len(calls) >= 2


# -- SIGTERM and other failures --------------------------------------------------------------

def _callback_that(action):
    from stable_baselines3.common.callbacks import BaseCallback

    class Then(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 64:
                action()
            return True

    return Then()


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path, tiny_config, capsys, monkeypatch):
    import os
    import signal

    import agents.train as train_mod

    real = train_mod._callbacks
    monkeypatch.setattr(train_mod, "_callbacks", lambda *a, **k: (
        _callback_that(lambda: os.kill(os.getpid(), signal.SIGTERM)), real(*a, **k)[1]))
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--timesteps") + 1] = "320"
    assert main(argv) == 130
    assert json.loads((out / "run.json").read_text())["interrupted_at"] == 64
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the run


def test_an_error_after_a_validation_keeps_the_validated_run(tmp_path, tiny_config, capsys,
                                                             monkeypatch):
    import agents.train as train_mod

    def broken() -> None:
        raise ValueError("a worker fell over")

    real = train_mod._callbacks
    monkeypatch.setattr(train_mod, "_callbacks",
                        lambda *a, **k: (_callback_that(broken), real(*a, **k)[1]))
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--timesteps") + 1] = "320"
    with pytest.raises(ValueError, match="a worker fell over"):
        main(argv)
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == "ValueError: a worker fell over"
    assert run["best_validation"]["timesteps"] == 0
    assert main(["export", str(out), "--out", str(tmp_path / "p.onnx")]) == 0


@pytest.mark.parametrize("existed", [False, True])
def test_an_error_before_a_validation_leaves_the_run_directory_reusable(
        tmp_path, tiny_config, capsys, monkeypatch, existed):
    import agents.train as train_mod

    def broken(*args, **kwargs):
        raise ValueError("no baseline")

    out = tmp_path / "run"
    if existed:
        out.mkdir()
    monkeypatch.setattr(train_mod, "best_heuristic", broken)
    with pytest.raises(ValueError, match="no baseline"):
        main(_train_argv(out, tiny_config))
    assert out.exists() == existed and not (existed and any(out.iterdir()))


@pytest.mark.parametrize("algo, huge", [
    ("dqn", {"buffer_size": 10**13}),        # numpy's MemoryError
    ("maskable_ppo", {"n_steps": 10**30}),   # beyond what numpy can index: a ValueError
])
def test_hyperparameters_that_do_not_fit_in_memory_are_one_line(tmp_path, capsys, algo, huge):
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {"policy": "MlpPolicy", **huge}}))
    out = tmp_path / "run"
    argv = _train_argv(out, cfg)
    argv[argv.index("maskable_ppo")] = algo
    assert main(argv) == 2
    err = capsys.readouterr().err
    cause = "buffer_size" if algo == "dqn" else "n_steps x --n-envs"
    assert "not enough memory for this run" in err and f"{algo}'s {cause}" in err
    assert str(cfg) in err
    assert not out.exists()


def test_more_workers_than_open_files_allow_is_refused_naming_n_envs(tmp_path, tiny_config,
                                                                     capsys, monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 256))
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--n-envs") + 1] = "100"
    argv[argv.index("--vec") + 1] = "subproc"
    assert main(argv) == 2  # it used to end in "Too many open files", naming nothing
    assert "--n-envs 100: more worker processes than this process may open files for " \
        "(about 464 needed, limit 256" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the NaN statistics
def test_training_that_diverges_says_so_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "diverging.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "learning_rate": 1e30, "policy_kwargs": {"net_arch": [8]}}}))
    out = tmp_path / "run"
    argv = _train_argv(out, cfg)
    argv[argv.index("--timesteps") + 1] = "128"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(r"training diverged at step [\d,]+: the policy's outputs became NaN; "
                     r"lower maskable_ppo's learning_rate", err), err
    assert str(cfg) in err and "Traceback" not in err


def test_a_seed_numpy_cannot_take_is_refused_before_anything_is_written(tmp_path,
                                                                        tiny_config, capsys):
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv[argv.index("--n-envs")] = "--seed"
    argv[argv.index("--seed") + 1] = str(2**31)
    assert main(argv) == 2
    assert "--seed must be >= 0 and < 2**31" in capsys.readouterr().err
    assert not out.exists()


def test_dqn_says_it_ignores_an_explicit_warm_start(tmp_path, capsys):
    cfg = tmp_path / "dqn.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoute-v0": {
        "policy": "MlpPolicy", "buffer_size": 1000, "learning_starts": 8,
        "policy_kwargs": {"net_arch": [8]}}}))
    for warm, noted in (("conductor", True), (None, False)):
        out = tmp_path / f"run-{warm}"
        argv = _train_argv(out, cfg)
        argv[argv.index("maskable_ppo")] = "dqn"
        i = argv.index("--warm-start")
        argv[i:i + 2] = ["--warm-start", warm] if warm else []
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert ("--warm-start conductor is ignored for dqn" in err) == noted
        assert json.loads((out / "run.json").read_text())["warm_start"] is None


def test_best_heuristic_is_the_one_with_the_highest_mean_goodput():
    """The training baseline is the best heuristic, and its per-episode metrics are its own."""
    sc = load_scenario("bursty-fluctuating")
    name, metrics, table = best_heuristic(sc, [0], split="eval", episode_requests=48,
                                          names=["local-only", "conductor", "remote-all"])
    assert len(set(table.values())) > 1  # the heuristics differ here
    assert table[name] == max(table.values())
    assert mean_goodput(metrics) == table[name]


def test_run_episodes_runs_the_split_it_is_given():
    """Validation episodes run on the val split (its own link), not the held-out one."""
    sc = load_scenario("bursty-fluctuating")
    for split in ("val", "eval"):
        (m,) = run_episodes(sc, heuristic_chooser(make_heuristic("conductor")), [0],
                            split=split, episode_requests=16)
        assert m["link"]["trace"].endswith(f"@{split}")


def test_a_held_signal_interrupts_after_the_block_and_an_ignored_one_stays_ignored():
    import os
    import signal

    from agents.train import _ctrl_c_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. started in the background
    try:
        with _ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# -- which validated model best_model.zip holds ---------------------------------------------

def test_a_checkpoint_beats_the_kept_one_only_by_a_paired_interval_above_zero():
    from agents.train import significantly_better

    start = [1.0, 2.0, 3.0, 4.0]
    # higher in every episode, by a steady margin: beats
    assert significantly_better([1.1, 2.1, 3.12, 4.08], start)["beats"]
    # a higher mean that one episode carries: the interval straddles zero
    noisy = significantly_better([1.9, 1.8, 3.0, 3.9], start)
    assert noisy["diff_rps"] == pytest.approx(0.15) and not noisy["beats"]
    assert noisy["ci95_rps"] > noisy["diff_rps"]
    # no change, lower, and one episode (no interval) never beat
    assert not significantly_better(start, start)["beats"]
    assert not significantly_better([0.9, 1.9, 2.9, 3.9], start)["beats"]
    # the interval is Student t's at 95%: per-episode gains of 0, 0.1, 0.2, 0.3 (mean 0.15,
    # sd 0.129) clear zero with a normal interval (half-width 0.127) but not with t on
    # three degrees of freedom (3.182 x 0.129 / 2 = 0.205); 0.2-0.5 clear both
    edge = significantly_better([1.0, 2.1, 3.2, 4.3], start)
    assert edge["ci95_rps"] == pytest.approx(3.182 * np.std([0, .1, .2, .3], ddof=1) / 2,
                                              rel=1e-3)
    assert edge["diff_rps"] == pytest.approx(0.15) and not edge["beats"]
    assert significantly_better([1.2, 2.3, 3.4, 4.5], start)["beats"]
    one = significantly_better([5.0], [1.0])
    assert not one["beats"] and one["ci95_rps"] is None
    with pytest.raises(ValueError, match="3 vs 4"):
        significantly_better([1.0, 2.0, 3.0], start)


#: per validation (start, 32, 64, 96 steps, final): each episode's goodput. The 32-step
#: model has the highest mean, carried by one episode; the 64-step one is a little higher
#: than the start in every episode (by 0.04-0.06: t's interval on two degrees of freedom,
#: 0.05 ± 0.025, clears zero).
_SCRIPTED = [[1.0, 2.0, 3.0], [1.6, 1.7, 3.0], [1.04, 2.05, 3.06], [1.04, 2.05, 3.06],
             [1.0, 2.0, 3.0]]


def _scripted_validations(monkeypatch, script: list[list[float]]) -> list:
    """Make each validation of a run return the next row of ``script`` as its episodes'
    goodputs; returns the list of rows served so far."""
    import agents.train as train_mod

    calls: list = []

    def scripted(scenario, chooser, seeds, split, episode_requests):
        assert split == "val" and len(seeds) == len(script[0])
        per = script[len(calls)]
        calls.append(per)
        return [{"goodput_rps": g, "slo_attainment": 0.9, "ttft_s": {"p90": 1.0}} for g in per]

    monkeypatch.setattr(train_mod, "run_episodes", scripted)
    return calls


def _scripted_argv(out, config, select: str) -> list[str]:
    argv = _train_argv(out, config, "--timesteps", "96")
    argv[argv.index("--eval-episodes") + 1] = "3"
    argv[argv.index("--select") + 1] = select
    return argv


@pytest.mark.parametrize("select, kept_at", [("significant", 64), ("max", 32)])
def test_select_decides_which_validated_model_best_model_zip_holds(
        tmp_path, tiny_config, monkeypatch, capsys, select, kept_at):
    from agents.export import load_sb3

    calls = _scripted_validations(monkeypatch, _SCRIPTED)
    out = tmp_path / "run"
    assert main(_scripted_argv(out, tiny_config, select)) == 0
    assert len(calls) == len(_SCRIPTED)
    ev = json.loads((out / "eval.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert ev["select"] == run["select"] == select
    assert [h["episode_goodput_rps"] for h in ev["history"]] == _SCRIPTED
    assert ev["best_model"]["timesteps"] == run["best_validation"]["timesteps"] == kept_at
    assert load_sb3(out / "best_model.zip", "maskable_ppo").num_timesteps == kept_at
    assert [h["timesteps"] for h in ev["history"] if h.get("best")] == sorted({0, kept_at})
    if select == "significant":  # each row says what it was tested against
        noisy = ev["history"][1]["vs_kept"]
        assert noisy["timesteps"] == 0 and noisy["diff_rps"] == pytest.approx(0.1)
        assert ev["history"][2]["vs_kept"]["ci95_rps"] == pytest.approx(
            4.303 * 0.01 / np.sqrt(3), rel=1e-3)
        assert ev["history"][3]["vs_kept"]["timesteps"] == 64
    printed = capsys.readouterr()
    assert f"at {kept_at} steps" in printed.out and "untrained" not in printed.err


@pytest.mark.parametrize("warm", ["none", "conductor"])
def test_keeping_the_starting_point_says_what_it_is(tmp_path, tiny_config, monkeypatch,
                                                     capsys, warm):
    # when nothing beats the starting point, train says whether best_model.zip is the
    # clone or a random network: a user should not export an untrained network unawares
    _scripted_validations(monkeypatch, [[1.0, 2.0, 3.0], [1.6, 1.7, 3.0], [0.9, 2.0, 3.0],
                                        [1.0, 2.1, 2.9], [1.0, 2.0, 3.0]])
    argv = _scripted_argv(tmp_path / "run", tiny_config, "significant")
    argv[argv.index("--warm-start") + 1] = warm
    assert main([*argv, "--warm-start-episodes", "1", "--warm-start-epochs", "1"]) == 0
    printed = capsys.readouterr()
    if warm == "none":
        assert ("at 0 steps (the starting point, an untrained network: no later model beat "
                "it significantly)") in printed.out
        assert "best_model.zip is the untrained starting network" in printed.err
        assert "export --model final" in printed.err
    else:
        assert ("at 0 steps (the starting point, the clone of conductor: no later model beat "
                "it significantly)") in printed.out
        assert "untrained" not in printed.err


def test_the_default_select_needs_two_validation_episodes(tmp_path, tiny_config, capsys):
    out = tmp_path / "run"
    argv = _train_argv(out, tiny_config)
    argv.remove("--select")
    argv.remove("max")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs --eval-episodes >= 2, got 1" in err and "--select max" in err
    assert not out.exists()


@pytest.mark.parametrize("failing", ["checkpoint_32.zip", "best_model.zip"])
def test_a_run_that_fails_while_keeping_a_checkpoint_names_what_best_model_zip_holds(
        tmp_path, tiny_config, monkeypatch, failing):
    # a validation that is a new best writes its own checkpoint and best_model.zip; when
    # either write fails, run.json and eval.json must name the model best_model.zip holds
    import agents.train as train_mod
    from agents.export import load_sb3

    real_save = train_mod._save_atomically

    def full_disk(model, path):
        if path.name == failing and model.num_timesteps == 32:
            raise OSError(28, "No space left on device")
        real_save(model, path)

    monkeypatch.setattr(train_mod, "_save_atomically", full_disk)
    calls = iter(range(100))
    real_mean = train_mod.mean_goodput
    monkeypatch.setattr(train_mod, "mean_goodput",  # every validation a new best
                        lambda metrics: real_mean(metrics) + next(calls))
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        train_mod.train("maskable_ppo", "bursty-fluctuating", 64, n_envs=1, vec="dummy",
                        config=tiny_config, out=out, eval_freq=32, eval_episodes=1,
                        select="max", progress=False, warm_start=None, episode_requests=16,
                        keep_checkpoints=True)
    run = json.loads((out / "run.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    assert "OSError" in run["failed"]
    held = load_sb3(out / "best_model.zip", "maskable_ppo").num_timesteps
    assert held == run["best_validation"]["timesteps"] == ev["best_model"]["timesteps"] == 0
