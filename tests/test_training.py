"""Train -> export -> evaluate, end to end, with a tiny step count (the CI smoke test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from prfaas_gym.cli import main


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
                 "--eval-episodes", "1", "--warm-start", "conductor",
                 "--warm-start-episodes", "1", "--warm-start-epochs", "2",
                 "--no-progress"]) == 0
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
    history = json.loads((tiny_run / "eval.json").read_text())["history"]
    assert len(history) >= 2 and any(h.get("best") for h in history)
    assert list((tiny_run / "tb").rglob("events.*"))


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
                out=tmp_path / "run", eval_freq=128, eval_episodes=1, progress=False,
                device="cuda", warm_start=None)
    onnx_path, _ = export_onnx(out, tmp_path / "p.onnx")
    env = PrfaasRouteEnv("bursty-fluctuating", episode_requests=32)
    obs = np.stack([env.reset(seed=s)[0] for s in range(8)])
    model = load_sb3(out / "best_model.zip", "maskable_ppo")
    with torch.no_grad():
        expected = LogitsModule(model, "maskable_ppo")(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(OnnxRouter(onnx_path).logits(obs), expected, atol=1e-5)
