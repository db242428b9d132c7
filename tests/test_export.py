"""ONNX export, the manifest's compatibility checks and the learned policy."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("sb3_contrib")

import torch  # noqa: E402

from agents.compare import run_policy  # noqa: E402
from agents.export import (  # noqa: E402
    LogitsModule,
    add_export_command,
    export_onnx,
    load_sb3,
    sb3_logits,
)
from agents.learned import (  # noqa: E402
    LearnedPolicy,
    OnnxRouter,
    load_learned_policy,
    masked_argmax,
)
from agents.run_dir import (  # noqa: E402
    manifest_path_for,
    read_run_json,
    sha256_file,
    write_run_json,
)
from prfaas_gym.actions import ACTIONS, action_masks, action_to_decision  # noqa: E402
from prfaas_gym.env import ENV_VERSION, PrfaasRouteEnv  # noqa: E402
from prfaas_gym.errors import PrfaasInputError  # noqa: E402
from prfaas_gym.featurizer import N_FEATURES, spec_hash  # noqa: E402
from prfaas_gym.scenario import load_scenario  # noqa: E402

SCENARIO = "bursty-fluctuating"
ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")


def _train(algo: str, env: PrfaasRouteEnv):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, DQN, PPO

    kw = dict(policy_kwargs=dict(net_arch=[32, 32]), seed=0, device="cpu", verbose=0)
    if algo == "maskable_ppo":
        model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, **kw)
    elif algo == "ppo":
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, **kw)
    elif algo == "a2c":
        model = A2C("MlpPolicy", env, n_steps=8, **kw)
    else:
        model = DQN("MlpPolicy", env, learning_starts=32, buffer_size=1000, train_freq=4,
                    batch_size=16, **kw)
    model.learn(128)
    # An untrained head gives near-equal logits (one action everywhere); widen it so the
    # decisions below cover several actions.
    head = model.policy.q_net.q_net[-1] if algo == "dqn" else model.policy.action_net
    with torch.no_grad():
        torch.manual_seed(1)
        head.weight.normal_(0.0, 1.0)
        head.bias.zero_()
    if algo == "dqn":
        model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """algo -> run dir with run.json, best/final zips and an exported policy.onnx."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for algo in ALGOS:
        env = PrfaasRouteEnv(SCENARIO, episode_requests=32)
        model = _train(algo, env)
        run_dir = root / algo
        run_dir.mkdir()
        model.save(run_dir / "best_model.zip")
        model.save(run_dir / "final_model.zip")
        write_run_json(run_dir, env, algo, seed=0, hyperparams={"net_arch": [32, 32]})
        export_onnx(run_dir, run_dir / "policy.onnx")
        out[algo] = run_dir
    return out


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    """Real observations from rolling the env with random feasible actions."""
    env = PrfaasRouteEnv(SCENARIO, episode_requests=32)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(256):
        out.append(obs)
        a = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    return np.stack(out).astype(np.float32)


def _copy_export(run_dir: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    onnx = shutil.copy(run_dir / "policy.onnx", dst / "policy.onnx")
    shutil.copy(manifest_path_for(run_dir / "policy.onnx"), manifest_path_for(onnx))
    return Path(onnx)


def _edit_manifest(onnx: Path, edit) -> None:
    mp = manifest_path_for(onnx)
    m = json.loads(mp.read_text())
    edit(m)
    mp.write_text(json.dumps(m))


# -- the run directory ----------------------------------------------------------------------

def test_run_json_records_training_context(runs):
    rec = read_run_json(runs["ppo"])
    assert rec["env_id"] == "PrfaasRoute-v0" and rec["env_version"] == ENV_VERSION
    assert rec["algo"] == "ppo" and rec["scenario"] == SCENARIO and rec["seed"] == 0
    assert rec["observation"]["hash"] == spec_hash()
    assert len(rec["observation"]["features"]) == N_FEATURES
    assert set(rec["observation"]["scales"]) >= {"slo_ttft_s", "token_scale", "lambda_ref"}
    assert rec["actions"] == list(ACTIONS) and rec["deterministic"] is True
    assert {"python", "torch", "stable_baselines3", "sb3_contrib", "gymnasium", "numpy",
            "onnxruntime", "prfaas_gym"} <= set(rec["versions"])
    assert "commit" in rec and rec["hyperparams"] == {"net_arch": [32, 32]}


def test_read_run_json_errors(tmp_path):
    with pytest.raises(PrfaasInputError, match="run.json not found"):
        read_run_json(tmp_path)
    (tmp_path / "run.json").mkdir()
    with pytest.raises(PrfaasInputError, match="run.json is a directory, not a file"):
        read_run_json(tmp_path)
    (tmp_path / "run.json").rmdir()
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(PrfaasInputError, match="not valid JSON"):
        read_run_json(tmp_path)
    (tmp_path / "run.json").write_text('{"algo": "sac"}')
    with pytest.raises(PrfaasInputError, match="'algo'"):
        read_run_json(tmp_path)


def test_a_directory_where_a_model_or_onnx_file_should_be_is_called_one(tmp_path):
    (tmp_path / "best_model.zip").mkdir()
    with pytest.raises(PrfaasInputError, match="model file is a directory, not a file"):
        load_sb3(tmp_path / "best_model.zip", "ppo")
    (tmp_path / "p.onnx").mkdir()
    with pytest.raises(PrfaasInputError, match="ONNX file is a directory, not a file"):
        OnnxRouter(tmp_path / "p.onnx")
    (tmp_path / "q.onnx").write_bytes(b"x")
    (tmp_path / "q.manifest.json").mkdir()
    with pytest.raises(PrfaasInputError, match="ONNX manifest is a directory, not a file"):
        OnnxRouter(tmp_path / "q.onnx")


# -- export parity ----------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ALGOS)
def test_onnx_logits_equal_sb3(runs, observations, algo):
    run_dir = runs[algo]
    router = OnnxRouter(run_dir / "policy.onnx")
    model = load_sb3(run_dir / "best_model.zip", algo)
    got = router.logits(observations)
    assert got.shape == (len(observations), 3) and got.dtype == np.float32
    with torch.no_grad():
        raw = LogitsModule(model, algo)(torch.from_numpy(observations)).numpy()
    np.testing.assert_allclose(got, raw, atol=1e-5, rtol=0)
    ref = sb3_logits(model, algo, observations)
    if algo != "dqn":
        got = torch.log_softmax(torch.from_numpy(got), dim=1).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-6)
    if algo == "maskable_ppo":
        masks = np.ones((len(observations), 3), dtype=bool)
        pred, _ = model.predict(observations, deterministic=True, action_masks=masks)
    else:
        pred, _ = model.predict(observations, deterministic=True)
    np.testing.assert_array_equal(got.argmax(axis=1), pred)
    one = np.array([router.logits_single(o).copy() for o in observations[:20]])
    np.testing.assert_allclose(one, raw[:20], atol=1e-5, rtol=0)


def test_manifest_contents(runs):
    onnx = runs["maskable_ppo"] / "policy.onnx"
    m = json.loads(manifest_path_for(onnx).read_text())
    rec = read_run_json(runs["maskable_ppo"])
    assert m["onnx_sha256"] == sha256_file(onnx)
    assert m["observation"] == rec["observation"]
    assert m["actions"] == list(ACTIONS) and m["deterministic"] is True
    assert "-inf" in m["masks"]
    assert m["algo"] == "maskable_ppo" and m["scenario"] == SCENARIO and m["seed"] == 0
    assert m["env_id"] == "PrfaasRoute-v0" and m["env_version"] == ENV_VERSION
    assert m["versions"] == rec["versions"] and m["commit"] == rec["commit"]
    assert m["commit_dirty"] == rec["commit_dirty"]
    assert m["export_versions"]["onnxruntime"] and m["export_versions"]["exporter"]


# -- refusing bad checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("field, edit, found", [
    ("observation.hash", lambda m: m["observation"].update(hash="0123456789abcdef"),
     "0123456789abcdef"),
    ("env_version", lambda m: m.update(env_version=99), "99"),
    ("env_version", lambda m: m.update(env_version=True), "True"),  # == 1 in Python
    ("actions", lambda m: m.update(actions=["remote", "local", "reject"]), "'remote', 'local'"),
    ("env_id", lambda m: m.update(env_id="PrfaasRoute-v9"), "PrfaasRoute-v9"),
])
def test_mismatched_manifest_refused(runs, tmp_path, field, edit, found):
    onnx = _copy_export(runs["maskable_ppo"], tmp_path)
    _edit_manifest(onnx, edit)
    with pytest.raises(PrfaasInputError) as ei:
        OnnxRouter(onnx)
    msg = str(ei.value)
    assert f"{field}: expected" in msg and found in msg and "policy.manifest.json" in msg
    assert field != "observation.hash" or spec_hash() in msg
    assert (field == "observation.hash") == ("was only its hash edited?" in msg)


def test_a_policy_of_another_observation_spec_is_told_which_features_differ(runs, tmp_path):
    """A file exported by another version of the code has another spec hash; the loader
    says what the spec it was trained on has that this code's lacks, and the reverse."""
    onnx = _copy_export(runs["maskable_ppo"], tmp_path)

    def other_version(m):
        feats = m["observation"]["features"]
        feats[:] = [f for f in feats if f["name"] != "recent_tpot"]
        feats.append({"index": 31, "name": "queue_age", "unit": "s", "norm": "/ slo_ttft"})
        feats.append({"index": 32, "name": "link_trend", "unit": "-", "norm": "-"})
        m["observation"].update(hash="feedfacecafebeef", version=2)

    _edit_manifest(onnx, other_version)
    with pytest.raises(PrfaasInputError) as ei:
        OnnxRouter(onnx)
    msg = str(ei.value)
    assert "observation.hash: expected" in msg and "feedfacecafebeef" in msg
    assert "observation.version: expected 3, found 2" in msg
    assert "only in this code: ['recent_tpot'], only in the record: ['queue_age', " \
        "'link_trend']" in msg


@pytest.mark.parametrize("edit, expected", [
    (lambda o: o.update(clip=5.0), "observation.clip: expected 10.0, found 5.0"),
    (lambda o: o["features"][2].update(name="local_hit_frac"),
     "observation.features[2]: expected {'index': 2, 'name': 'remote_hit_frac'"),
    (lambda o: o["features"].pop(), "observation.features: expected 32 features, found 31"),
    (lambda o: o.pop("features"), "observation.features: expected 32 features, found None"),
])
def test_an_edited_observation_spec_is_refused_though_its_hash_matches(runs, tmp_path, edit,
                                                                       expected):
    """The hash is what the loader compares; the spec written beside it must still be the
    one it hashes, or the manifest describes an observation the policy does not get."""
    onnx = _copy_export(runs["maskable_ppo"], tmp_path)
    _edit_manifest(onnx, lambda m: edit(m["observation"]))
    with pytest.raises(PrfaasInputError) as ei:
        OnnxRouter(onnx)
    msg = str(ei.value)
    assert "changed after it was written" in msg and expected in msg
    assert "policy.manifest.json" in msg


def test_missing_or_invalid_manifest(runs, tmp_path):
    onnx = _copy_export(runs["ppo"], tmp_path)
    mp = manifest_path_for(onnx)
    mp.write_text("{ truncated")
    with pytest.raises(PrfaasInputError, match="not valid JSON"):
        OnnxRouter(onnx)
    mp.write_text("[" * 100_000 + "]" * 100_000)  # deeper than json's recursion allows
    with pytest.raises(PrfaasInputError, match="not valid JSON .nested too deeply"):
        OnnxRouter(onnx)
    mp.write_text('{"env_version": ' + "9" * 5000 + "}")  # past int()'s digit limit
    with pytest.raises(PrfaasInputError, match="ONNX manifest cannot be read as JSON: .*digits"):
        OnnxRouter(onnx)
    mp.unlink()
    with pytest.raises(PrfaasInputError, match="manifest .* is missing") as ei:
        OnnxRouter(onnx)
    assert str(onnx) in str(ei.value)


def test_nan_weights_refused_at_load(runs, tmp_path):
    # a graph whose logits are NaN made every decision a rejection, without a word
    import onnx
    from onnx import numpy_helper

    onnx_path = _copy_export(runs["ppo"], tmp_path)
    model = onnx.load(str(onnx_path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2:  # a weight matrix
            init.CopyFrom(numpy_helper.from_array(np.full_like(arr, np.nan), init.name))
    onnx.save(model, str(onnx_path))
    _edit_manifest(onnx_path, lambda m: m.update(onnx_sha256=sha256_file(onnx_path)))
    with pytest.raises(PrfaasInputError, match="logits on a probe observation are not finite"):
        OnnxRouter(onnx_path)


@pytest.mark.parametrize("elem, batch, width, out_elem, out_batch, found", [
    ("DOUBLE", "batch", N_FEATURES, "DOUBLE", "batch", "tensor(double)"),  # failed at first call
    ("FLOAT", 1, N_FEATURES, "FLOAT", 1, "[1, 32]"),  # a fixed batch of one: others failed
    ("FLOAT", "batch", N_FEATURES - 1, "FLOAT", "batch", "31"),
    ("FLOAT", "batch", N_FEATURES, "FLOAT", 1, "[1, 3]"),  # the output side alone
    ("FLOAT", "batch", N_FEATURES, "DOUBLE", "batch", "'logits', 'tensor(double)'"),
    ("FLOAT", None, N_FEATURES, "FLOAT", None, None),  # an unnamed batch axis loads
])
def test_graph_of_another_signature_refused_at_load(runs, tmp_path, elem, batch, width,
                                                    out_elem, out_batch, found):
    """A well-formed graph that is not obs float32 [batch, N] -> logits float32 [batch, 3]
    is refused by name at load, not by onnxruntime at the first decision."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    onnx_path = _copy_export(runs["ppo"], tmp_path)
    dtype, out_dtype = getattr(TensorProto, elem), getattr(TensorProto, out_elem)
    weight = numpy_helper.from_array(
        np.ones((width, 3), dtype=helper.tensor_dtype_to_np_dtype(dtype)), "w")
    nodes = [helper.make_node("MatMul", ["obs", "w"], ["z"]),
             helper.make_node("Cast", ["z"], ["logits"], to=out_dtype)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("obs", dtype, [batch, width])],
        [helper.make_tensor_value_info("logits", out_dtype, [out_batch, 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(onnx_path))
    _edit_manifest(onnx_path, lambda m: m.update(onnx_sha256=sha256_file(onnx_path)))
    if found is None:
        assert OnnxRouter(onnx_path).logits(np.ones((4, N_FEATURES), np.float32)).shape == (4, 3)
        return
    with pytest.raises(PrfaasInputError, match="graph signature is") as ei:
        OnnxRouter(onnx_path)
    assert found in str(ei.value) and "expected obs float32 [batch, 32]" in str(ei.value)


def test_truncated_onnx_refused(runs, tmp_path):
    onnx = _copy_export(runs["ppo"], tmp_path)
    data = onnx.read_bytes()
    onnx.write_bytes(data[: len(data) // 2])
    with pytest.raises(PrfaasInputError, match="does not match its manifest"):
        OnnxRouter(onnx)
    _edit_manifest(onnx, lambda m: m.update(onnx_sha256=sha256_file(onnx)))
    with pytest.raises(PrfaasInputError, match="onnxruntime cannot load") as ei:
        OnnxRouter(onnx)
    assert str(onnx) in str(ei.value)


def test_corrupt_sb3_zip_refused(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["maskable_ppo"], run_dir)
    zp = run_dir / "best_model.zip"
    data = zp.read_bytes()
    zp.write_bytes(data[: len(data) // 3])
    for load in (lambda: load_learned_policy(run_dir), lambda: load_learned_policy(zp),
                 lambda: export_onnx(run_dir, tmp_path / "x.onnx")):
        with pytest.raises(PrfaasInputError, match="cannot load a MaskablePPO model") as ei:
            load()
        assert str(zp) in str(ei.value)
    zp.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(PrfaasInputError, match="cannot load"):
        load_learned_policy(run_dir)


def test_run_json_naming_another_algorithm_is_blamed_not_the_zip(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["maskable_ppo"], run_dir)
    rec = json.loads((run_dir / "run.json").read_text())
    rec["algo"] = "dqn"
    (run_dir / "run.json").write_text(json.dumps(rec))
    with pytest.raises(PrfaasInputError) as ei:  # was: "corrupt, truncated or not an SB3 zip?"
        export_onnx(run_dir, tmp_path / "x.onnx")
    assert "holds a MaskableActorCriticPolicy (maskable_ppo), not a DQN model" in str(ei.value)
    assert "run.json" in str(ei.value)


def test_load_learned_policy_dispatch(runs, tmp_path):
    run_dir = runs["dqn"]
    assert isinstance(load_learned_policy(run_dir / "policy.onnx").router, OnnxRouter)
    assert load_learned_policy(run_dir).router.algo == "dqn"
    assert load_learned_policy(str(run_dir / "final_model.zip")).router.algo == "dqn"
    lone = tmp_path / "lone.zip"
    shutil.copy(run_dir / "best_model.zip", lone)
    with pytest.raises(PrfaasInputError, match="no run.json beside"):
        load_learned_policy(lone)
    with pytest.raises(PrfaasInputError, match="no run.json"):
        load_learned_policy(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(PrfaasInputError, match="not a checkpoint"):
        load_learned_policy(tmp_path / "model.pt")
    with pytest.raises(PrfaasInputError, match="no checkpoint"):
        load_learned_policy(tmp_path / "missing.onnx")


# -- the learned policy ---------------------------------------------------------------------

def test_masked_argmax_matches_numpy():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        logits = rng.integers(-2, 3, size=3).astype(np.float32)
        best = (int(rng.integers(-1, 2)), 0.0, int(rng.integers(-1, 2)), 0.0, -1, -1)
        masked = np.where(action_masks(best), logits, -np.inf)
        assert masked_argmax(logits, best) == int(np.argmax(masked))


class _Recording(LearnedPolicy):
    def reset(self, profile, seed=None):
        super().reset(profile, seed)
        self.log = []

    def decide(self, request, view):
        d = super().decide(request, view)
        best = self.featurizer.best(request, view)
        self.log.append((self.featurizer(request, view, best), best, d))
        return d


@pytest.mark.parametrize("algo", ["maskable_ppo", "dqn"])
def test_learned_policy_decisions_equal_sb3(runs, algo):
    sc = load_scenario(SCENARIO)
    run_dir = runs[algo]
    policy = _Recording(OnnxRouter(run_dir / "policy.onnx"))
    result, _ = run_policy(sc, policy, seed=0, n=100)
    assert result["requests"] == 100 and len(policy.log) == 100
    obs = np.stack([o for o, _, _ in policy.log])
    bests = [b for _, b, _ in policy.log]
    masks = np.stack([action_masks(b) for b in bests])
    model = load_sb3(run_dir / "best_model.zip", algo)
    ref = np.where(masks, sb3_logits(model, algo, obs), -np.inf).argmax(axis=1)
    assert [d for _, _, d in policy.log] == [action_to_decision(a, b) for a, b in zip(ref, bests)]
    if algo == "maskable_ppo":
        pred, _ = model.predict(obs, deterministic=True, action_masks=masks)
        np.testing.assert_array_equal(pred, ref)
    # the logits genuinely vary with the observation, so the equality above is not vacuous
    assert np.ptp(sb3_logits(model, algo, obs), axis=0).max() > 1e-3
    sb3_policy = _Recording(load_learned_policy(run_dir).router)
    result2, _ = run_policy(sc, sb3_policy, seed=0, n=100)
    assert [d for *_, d in sb3_policy.log] == [d for *_, d in policy.log]
    assert result2["completed"] == result["completed"]


def test_simulate_cli_with_onnx_policy(runs, capsys):
    from prfaas_gym.cli import main

    onnx = runs["maskable_ppo"] / "policy.onnx"
    rc = main(["simulate", "--scenario", SCENARIO, "--policy", str(onnx), "--requests", "50",
               "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["requests"] == 50
    assert "note" not in captured.err
    # a policy routing a scenario other than its training one says so
    assert main(["simulate", "--scenario", "paper-case-study", "--policy", str(onnx),
                 "--requests", "20", "--json"]) == 0
    assert (f"note: {onnx} was trained on scenario {SCENARIO}, and routes paper-case-study"
            in capsys.readouterr().err)


# -- the export command -----------------------------------------------------------------------

def _export_cli(argv: list[str]) -> int:
    try:
        import agents.cli  # noqa: F401
    except ImportError:
        ap = argparse.ArgumentParser(prog="prfaas")
        add_export_command(ap.add_subparsers(dest="command", required=True))
        args = ap.parse_args(argv)
        try:
            return args.func(args)
        except PrfaasInputError as e:
            print(f"prfaas: error: {e}")
            return 2
    from prfaas_gym.cli import main

    return main(argv)


def test_export_command(runs, tmp_path, capsys):
    out = tmp_path / "exported" / "router.onnx"
    assert _export_cli(["export", str(runs["a2c"]), "--out", str(out), "--model", "final"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(tmp_path / "exported" / "router.manifest.json")]
    assert json.loads(Path(printed[1]).read_text())["model"] == "final_model.zip"
    assert OnnxRouter(out).algo == "a2c"
    assert _export_cli(["export", str(tmp_path), "--out", str(tmp_path / "y.onnx")]) == 2
    cap = capsys.readouterr()
    assert "run.json not found" in cap.err + cap.out
    # a checkpoint file given for RUN_DIR: the error says which command would work
    zip_in_run = runs["a2c"] / "final_model.zip"
    assert _export_cli(["export", str(zip_in_run), "--out", str(tmp_path / "z.onnx")]) == 2
    cap = capsys.readouterr()
    assert f"prfaas export {runs['a2c']} --model final --out FILE.onnx" in cap.err + cap.out
    assert not (tmp_path / "z.onnx").exists()


#: the files in agents/policies/ (the routing policies, then the role policy)
SHIPPED = ["bursty-fluctuating", "mooncake-conversation", "paper-case-study",
           "bursty-fluctuating-roles"]


@pytest.mark.parametrize("name", SHIPPED[:3])
def test_shipped_policies_match_this_code_and_route(name, shared_traces):
    """The committed policies load under this code's env version, observation spec and
    action meanings (a change to any of them needs a retrain), and route their scenario's
    held-out requests about as well as the conductor they started from."""
    from agents.heuristics import Conductor

    path = Path(__file__).resolve().parents[1] / "agents" / "policies" / f"{name}.onnx"
    policy = load_learned_policy(path)
    sc = load_scenario(name)
    learned, _ = run_policy(sc, policy, 0, split="eval", n=400)
    conductor, _ = run_policy(sc, Conductor(), 0, split="eval", n=400)
    assert learned["requests"] == 400 and learned["completed"] > 0
    assert learned["goodput_rps"] >= 0.9 * conductor["goodput_rps"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_manifests_record_the_command_the_policies_readme_gives(name):
    """Each shipped file's manifest says how it was trained, and that is the command
    agents/policies/README.md gives for it, run today: scenario, seed, steps, envs, the
    warm start's teacher, from a clean tree, with the hyperparameters the shipped config
    gives and the training ranges the scenario gives (a change to either needs a retrain),
    and the checkpoint the README says it kept, by the rule the command applies."""
    import re

    from agents.train import SELECT_RULES

    root = Path(__file__).resolve().parents[1] / "agents" / "policies"
    m = json.loads((root / f"{name}.manifest.json").read_text())
    (row,) = [line for line in (root / "README.md").read_text().splitlines()
              if line.startswith(f"| `{name}.onnx`")]

    def flag(option: str, default: str | None = None) -> str | None:
        found = re.search(rf"{option} ([^\s`]+)", row)
        return found.group(1) if found else default

    t = m["training"]
    assert m["scenario"] == flag("--scenario") and m["seed"] == int(flag("--seed"))
    assert m["algo"] == flag("--algo", "maskable_ppo")
    assert t["eval_freq"] == int(flag("--eval-freq"))
    assert t["eval_episodes"] == len(t["validation_seeds"]) == int(flag("--eval-episodes"))
    assert m["env_id"] == flag("--env", "PrfaasRoute-v0")
    assert t["timesteps"] == int(flag("--timesteps")) and t["n_envs"] == int(flag("--n-envs"))
    assert m["commit_dirty"] is False and m["scenario_sources"]["scenario"] == m["scenario"]
    if m["env_id"] == "PrfaasRoute-v0":  # the best heuristic on validation, unless named
        teacher = flag("--warm-start", t["best_heuristic"]["name"])
        assert t["warm_start"]["teacher"] == teacher
    else:
        assert t["warm_start"] is None
    assert t["validation"]["best"] is True  # the checkpoint export takes by default
    assert t["select"] == flag("--select", SELECT_RULES[0])  # the rule that kept it
    # the README's "kept checkpoint" column names the steps of the model shipped
    kept = re.match(r"\s*(\d+)(k?) steps", row.split("|")[-2])
    assert kept, f"{name}: the kept-checkpoint column does not start with its steps"
    assert t["validation"]["timesteps"] == int(kept[1]) * (1000 if kept[2] else 1)
    # the recipe the command takes today: the shipped config and the scenario's ranges
    from agents.train import load_hyperparams

    assert t["hyperparams"] == load_hyperparams(m["algo"], m["scenario"], env_id=m["env_id"])
    assert t["randomize"] == {k: list(v) for k, v in load_scenario(m["scenario"])
                              .randomize.items()}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_validation_baseline_is_this_codes(name, shared_traces):
    """The goodput of the best heuristic on the shipped run's validation episodes, as its
    manifest records it, is what this code computes on those episodes. A change to the
    simulator, workloads or links changes it, and then the command in
    agents/policies/README.md no longer makes the shipped file: rerun it and ship what it
    picks (the bursty and Mooncake files had drifted for 117 commits before this test)."""
    from agents.evaluation import best_heuristic, hold, mean_goodput, run_role_episodes

    root = Path(__file__).resolve().parents[1] / "agents" / "policies"
    m = json.loads((root / f"{name}.manifest.json").read_text())
    t, sc = m["training"], load_scenario(m["scenario"])
    recorded = t["best_heuristic"]
    if m["env_id"] == "PrfaasRoles-v0":
        now = mean_goodput(run_role_episodes(sc, hold, t["validation_seeds"], "val",
                                             t["episode_requests"], m["router"],
                                             m["interval_s"]))
    else:
        _, _, table = best_heuristic(sc, t["validation_seeds"], "val", [recorded["name"]],
                                     t["episode_requests"])
        now = table[recorded["name"]]
    assert now == pytest.approx(recorded["goodput_rps"], rel=1e-9), (
        f"{name}: {recorded['name']} on the validation episodes scores {now} here, "
        f"{recorded['goodput_rps']} when the shipped file was trained: retrain it")


# -- atomic export and bad --out ----------------------------------------------------------------

def _pair_bytes(onnx: Path) -> tuple[bytes, bytes]:
    return onnx.read_bytes(), manifest_path_for(onnx).read_bytes()


def _existing_pair(runs, d: Path) -> Path:
    """A valid exported pair (of the DQN run) at ``d/policy.onnx``."""
    return _copy_export(runs["dqn"], d)


def test_failed_export_leaves_the_existing_pair_untouched(runs, tmp_path, monkeypatch):
    import onnx

    onnx_path = _existing_pair(runs, tmp_path)
    before = _pair_bytes(onnx_path)

    def broken(*a, **k):
        raise onnx.checker.ValidationError("simulated checker failure")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(onnx.checker.ValidationError):
        export_onnx(runs["ppo"], onnx_path)
    assert _pair_bytes(onnx_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.manifest.json", "policy.onnx"]
    monkeypatch.undo()
    export_onnx(runs["ppo"], onnx_path)  # replaces both, consistently
    assert OnnxRouter(onnx_path).algo == "ppo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.manifest.json", "policy.onnx"]


@pytest.mark.parametrize("make_out, expected", [
    (lambda d: (d / "dir.onnx").mkdir() or d / "dir.onnx", "is a directory"),
    (lambda d: manifest_path_for(d / "m.onnx").mkdir() or d / "m.onnx", "is a directory"),
    (lambda d: d / "policy.onnx" / "x.onnx", "not a directory"),
    (lambda d: d / "policy.onnx" / "sub" / "x.onnx", "cannot create"),
    (lambda d: d / "best_model.zip", ".onnx"),
])
def test_bad_export_out_is_a_clear_error(runs, tmp_path, make_out, expected):
    onnx_path = _existing_pair(runs, tmp_path)
    (tmp_path / "best_model.zip").write_bytes(b"a checkpoint")
    before = _pair_bytes(onnx_path)
    out = make_out(tmp_path)
    with pytest.raises(PrfaasInputError, match=expected) as ei:
        export_onnx(runs["ppo"], out)
    assert str(out) in str(ei.value)
    assert _pair_bytes(onnx_path) == before
    assert (tmp_path / "best_model.zip").read_bytes() == b"a checkpoint"
    assert not list(tmp_path.glob(".*tmp*"))


def test_unwritable_export_dir_is_a_clear_error(runs, tmp_path, monkeypatch):
    onnx_path = _existing_pair(runs, tmp_path)
    before = _pair_bytes(onnx_path)

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    # root ignores chmod; simulate EACCES on every file write
    monkeypatch.setattr(Path, "write_bytes", denied)
    monkeypatch.setattr(Path, "write_text", denied)
    with pytest.raises(PrfaasInputError, match="Permission denied") as ei:
        export_onnx(runs["ppo"], onnx_path)
    assert str(onnx_path) in str(ei.value)
    monkeypatch.undo()
    assert _pair_bytes(onnx_path) == before


# -- normalisation scales, manifest format and algo -------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, -1e9, 0, "1.0", None,
                                   10**400])  # 10**400: an integer too large for a float
def test_bad_scales_refused(runs, tmp_path, value):
    onnx = _copy_export(runs["maskable_ppo"], tmp_path / "export")
    _edit_manifest(onnx, lambda m: m["observation"]["scales"].update(slo_ttft_s=value))
    with pytest.raises(PrfaasInputError) as ei:
        OnnxRouter(onnx)
    msg = str(ei.value)
    assert "policy.manifest.json" in msg and "observation.scales.slo_ttft_s" in msg

    run_dir = tmp_path / "run"
    shutil.copytree(runs["maskable_ppo"], run_dir)
    rec = json.loads((run_dir / "run.json").read_text())
    rec["observation"]["scales"]["lambda_ref"] = value
    (run_dir / "run.json").write_text(json.dumps(rec))
    for load in (lambda: load_learned_policy(run_dir), lambda: export_onnx(run_dir, tmp_path / "x.onnx")):
        with pytest.raises(PrfaasInputError) as ei:
            load()
        msg = str(ei.value)
        assert "run.json" in msg and "observation.scales.lambda_ref" in msg


@pytest.mark.parametrize("scales, expected", [
    (None, "key 'observation.scales' is missing"),
    ([1.0, 2.0], "key 'observation.scales': expected a mapping of the normalisation "
                 "constants, found list"),
])
def test_scales_missing_or_not_a_mapping(runs, tmp_path, scales, expected):
    onnx = _copy_export(runs["maskable_ppo"], tmp_path)
    _edit_manifest(onnx, lambda m: m["observation"].update(scales=scales))
    with pytest.raises(PrfaasInputError, match=expected):
        OnnxRouter(onnx)


def test_an_upper_case_sha256_is_the_same_hash(runs, tmp_path):
    onnx = _copy_export(runs["ppo"], tmp_path)
    _edit_manifest(onnx, lambda m: m.update(onnx_sha256=m["onnx_sha256"].upper()))
    assert OnnxRouter(onnx).logits(np.zeros(N_FEATURES, np.float32)).shape == (1, 3)
    _edit_manifest(onnx, lambda m: m.update(onnx_sha256="A" * 64))
    with pytest.raises(PrfaasInputError, match="does not match its manifest"):
        OnnxRouter(onnx)


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.update(format=99), "'format'"),
    (lambda m: m.update(format="1"), "'format'"),
    (lambda m: m.update(format=True), "'format'"),
    (lambda m: m.pop("format"), "'format'"),
    (lambda m: m.update(algo="sac"), "'algo'"),
    (lambda m: m.pop("algo"), "'algo'"),
    (lambda m: m.update(algo="dqn"), "'algo'"),  # the graph is a MaskablePPO policy's
    (lambda m: m.update(deterministic=False), "'deterministic': .*found False"),
    (lambda m: m.pop("deterministic"), "'deterministic': .*found None"),
])
def test_manifest_format_and_algo_checked(runs, tmp_path, edit, expected):
    onnx = _copy_export(runs["maskable_ppo"], tmp_path)
    _edit_manifest(onnx, edit)
    with pytest.raises(PrfaasInputError, match=expected) as ei:
        OnnxRouter(onnx)
    assert "policy.manifest.json" in str(ei.value)


def test_re_export_keeps_the_files_permissions(runs, tmp_path):
    out = tmp_path / "p.onnx"
    onnx_path, manifest_path = export_onnx(runs["ppo"], out)
    for p in (onnx_path, manifest_path):
        p.chmod(0o640)
    export_onnx(runs["ppo"], out)
    assert [p.stat().st_mode & 0o777 for p in (onnx_path, manifest_path)] == [0o640, 0o640]
    OnnxRouter(onnx_path)  # the pair still loads


def test_simulate_out_spares_a_run_directorys_records_but_not_new_files(runs, tmp_path, capsys):
    from prfaas_gym.cli import main

    run = tmp_path / "run"
    shutil.copytree(runs["ppo"], run)
    sim = ["simulate", "--scenario", SCENARIO, "--requests", "5"]
    for policy in (str(run), str(run / "best_model.zip")):
        for _ in range(2):  # a result beside the run, rewritten: fine
            assert main([*sim, "--policy", policy, "--out", str(run / "sim.json")]) == 0
        for record in ("run.json", "best_model.zip", "final_model.zip"):
            before = (run / record).read_bytes()
            assert main([*sim, "--policy", policy, "--out", str(run / record)]) == 2
            assert "would replace an input of this run" in capsys.readouterr().err
            assert (run / record).read_bytes() == before
