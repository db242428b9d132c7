"""Role switching as a learned lever: ``PrfaasRoles-v0``, its featurizer and actions, and a
role policy trained, exported, loaded and scored end to end (tiny step counts)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from agents.compare import run_policy
from agents.evaluation import hold, run_role_episodes
from agents.export import load_sb3, sb3_logits
from agents.learned import (
    LearnedPolicy,
    LearnedRoles,
    OnnxRouter,
    load_learned_policy,
    masked_role_argmax,
)
from agents.registry import make_heuristic, policy_factory
from agents.run_dir import manifest_path_for
from prfaas_gym.cli import main
from prfaas_gym.env import PrfaasRouteEnv
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.role_actions import (
    HOLD,
    TO_DECODE,
    TO_PREFILL,
    action_to_changes,
    role_candidates,
    role_masks,
)
from prfaas_gym.role_featurizer import N_ROLE_FEATURES, ROLE_FEATURES, role_spec_hash
from prfaas_gym.roles_env import ROLE_EPISODE_FACTOR, PrfaasRolesEnv
from prfaas_gym.scenario import load_scenario
from prfaas_gym.simulator import Simulator


@pytest.fixture(scope="module")
def bursty():
    return load_scenario("bursty-fluctuating")


def _episode(env: PrfaasRolesEnv, seed: int, choose) -> tuple[list, list, dict]:
    obs, _ = env.reset(seed=seed)
    trace, rewards, ended, info = [obs], [], False, {}
    while not ended:
        obs, r, ended, _, info = env.step(choose(env))
        trace.append(obs)
        rewards.append(r)
    return trace, rewards, info


def _first_feasible_change(env: PrfaasRolesEnv) -> int:
    m = env.action_masks()
    return TO_PREFILL if m[TO_PREFILL] else TO_DECODE if m[TO_DECODE] else HOLD


def test_episode_is_reproducible_and_pays_the_slo_meeting_fraction(bursty):
    env = PrfaasRolesEnv(bursty, episode_requests=400)
    a = _episode(env, 5, _first_feasible_change)
    b = _episode(env, 5, _first_feasible_change)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0])) and a[1] == b[1]
    metrics, counts = a[2]["episode_metrics"], a[2]["counts"]
    assert counts["arrived"] == 400 == counts["completed"] + counts["rejected"] + \
        counts["failed"] + counts["in_flight"]
    # the undiscounted return is the fraction of the episode's requests served within SLO
    assert sum(a[1]) == pytest.approx(metrics["slo_attainment"] * metrics["requests"] / 400)
    assert metrics["role_switches"] >= 1  # the changes it asked for landed
    assert all(o.shape == (N_ROLE_FEATURES,) and o.dtype == np.float32 for o in a[0])
    assert not a[0][-1].any()  # the final observation means nothing


def test_holding_every_role_is_the_router_alone(bursty):
    """Holding at every tick must leave the routing env's episode exactly as it was: the
    ticks only pause the simulation, so the policy is measured against the router alone."""
    n = 300
    roles = PrfaasRolesEnv(bursty, episode_requests=n)
    *_, info = _episode(roles, 9, hold)
    route = PrfaasRouteEnv(bursty, episode_requests=n)
    route.reset(seed=9)
    conductor = make_heuristic("conductor")
    conductor.reset(route.profile, 9)
    ended = False
    while not ended:
        *_, ended, _, ref = route.step_decision(conductor.decide(route.request_info, route.view))
    got, want = dict(info["episode_metrics"]), dict(ref["episode_metrics"])
    # the role env's telemetry refreshes on through the drain (as a role policy's ticks
    # keep it in Simulator.run), which integrates the link's bytes in more pieces
    assert got.pop("link_bytes") == pytest.approx(want.pop("link_bytes"), rel=1e-12)
    assert got == want


def test_vs_router_pays_the_gain_over_the_router_alone(bursty):
    """The twin serves the same episode with the router alone: holding earns exactly 0 at
    every step, and a policy's return is its SLO-meeting fraction minus the router's."""
    env = PrfaasRolesEnv(bursty, episode_requests=800, reward="vs_router")
    _, rewards, _ = _episode(env, 3, hold)
    assert rewards and all(r == 0.0 for r in rewards)
    _, rewards, info = _episode(env, 3, _first_feasible_change)
    plain = PrfaasRolesEnv(bursty, episode_requests=800)
    _, router_alone, _ = _episode(plain, 3, hold)
    _, with_changes, _ = _episode(plain, 3, _first_feasible_change)
    assert info["episode_metrics"]["role_switches"] >= 1
    assert sum(rewards) == pytest.approx(sum(with_changes) - sum(router_alone))
    assert sum(rewards) != 0.0
    with pytest.raises(PrfaasInputError, match="unknown reward 'first_token'"):
        PrfaasRolesEnv(bursty, reward="first_token")


def test_masks_allow_one_change_at_a_time_and_keep_each_role(bursty):
    env = PrfaasRolesEnv(bursty, episode_requests=800)
    env.reset(seed=1)
    assert env.action_masks().tolist() == [True, True, True]
    env.step(TO_PREFILL)  # one decode node drains, then switches for switch_delay_s (60 s)
    assert env.action_masks().tolist() == [True, False, False]
    assert action_to_changes(TO_DECODE, env._view) == []  # an infeasible action holds
    for _ in range(3):
        env.step(HOLD)
    assert env.action_masks().all()  # landed: 4 prefill + 4 decode nodes
    obs = env._obs()
    names = [f[0] for f in ROLE_FEATURES]
    assert obs[names.index("prefill_nodes")] == pytest.approx(0.5)
    assert obs[names.index("switching_nodes")] == 0.0
    with pytest.raises(ValueError, match="not an integer"):
        env.step(1.5)
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step(3)


def test_a_role_with_one_node_cannot_be_emptied(bursty):
    one_prefill = dataclasses.replace(
        bursty, profile=bursty.profile.with_deployment(n_prefill=1, n_decode=2))
    env = PrfaasRolesEnv(one_prefill, episode_requests=200)
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True, False, True]


def test_bad_arguments_are_named(bursty):
    with pytest.raises(PrfaasInputError, match="interval_s"):
        PrfaasRolesEnv(bursty, interval_s=0)
    with pytest.raises(PrfaasInputError, match=r"interval_s: must be a finite number of "
                       r"seconds >= 1, got 0.0001"):  # ran 10,000 decisions a second
        PrfaasRolesEnv(bursty, interval_s=0.0001)
    with pytest.raises(PrfaasInputError, match="router"):
        PrfaasRolesEnv(bursty, router=42)
    assert PrfaasRolesEnv(bursty).episode_requests == ROLE_EPISODE_FACTOR * 256


def test_role_spec_hash_is_pinned():
    """A change to the role features must bump ROLE_FEATURIZER_VERSION and this hash (it
    refuses every role checkpoint trained before)."""
    assert N_ROLE_FEATURES == 19
    assert role_spec_hash() == "167b87f5ccb99655"


# -- a role policy trained, exported, loaded and scored ----------------------------------------

@pytest.fixture(scope="module")
def role_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("roles")
    cfg = d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoles-v0": {
        "policy": "MlpPolicy", "n_steps": 16, "batch_size": 16, "n_epochs": 2,
        "learning_rate": 3e-4, "gamma": 0.99, "policy_kwargs": {"net_arch": [16, 16]},
        "env_kwargs": {"interval_s": 45}}}))
    out = d / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--env", "PrfaasRoles-v0", "--scenario", "bursty-fluctuating",
                     "--timesteps", "32", "--n-envs", "1", "--seed", "2", "--config", str(cfg),
                     "--out", str(out), "--eval-freq", "16", "--eval-episodes", "1",
                     "--select", "max", "--episode-requests", "300", "--no-progress"]) == 0
    assert "the router alone, conductor) at" in printed.getvalue()
    onnx = d / "roles.onnx"
    assert main(["export", str(out), "--out", str(onnx)]) == 0
    return out, onnx


def test_role_run_records_its_env_router_and_interval(role_run):
    out, onnx = role_run
    run = json.loads((out / "run.json").read_text())
    assert run["env_id"] == "PrfaasRoles-v0" and run["actions"] == [
        "hold", "prefill_to_decode", "decode_to_prefill"]
    assert run["observation"]["hash"] == role_spec_hash()
    assert run["router"] == "conductor" and run["interval_s"] == 45.0  # the config's
    assert run["best_heuristic"]["name"] == "conductor" and run["warm_start"] is None
    manifest = json.loads(manifest_path_for(onnx).read_text())
    assert manifest["router"] == "conductor" and manifest["interval_s"] == 45.0
    assert load_learned_policy(onnx).tick_interval_s == 45.0
    assert manifest["input"]["shape"] == ["batch", N_ROLE_FEATURES]


def test_role_interval_reaches_training_and_validation(monkeypatch, tmp_path):
    """env_kwargs.interval_s sets the decision interval of the training envs and of the
    validation episodes (baseline and checkpoints) alike."""
    import agents.train as train_mod

    seen: dict[str, list] = {"train": [], "val": []}
    make_train_env, run_role = train_mod.make_train_env, train_mod.run_role_episodes

    def spy_env(*a, **kw):
        env = make_train_env(*a, **kw)
        seen["train"] += env.get_attr("interval_s")
        return env

    def spy_val(*a, **kw):
        seen["val"].append(a[6] if len(a) > 6 else kw["interval_s"])
        return run_role(*a, **kw)

    monkeypatch.setattr(train_mod, "make_train_env", spy_env)
    monkeypatch.setattr(train_mod, "run_role_episodes", spy_val)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"PrfaasRoles-v0": {
        "n_steps": 8, "batch_size": 8, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]},
        "env_kwargs": {"interval_s": 90}}}))
    assert main(["train", "--env", "PrfaasRoles-v0", "--scenario", "bursty-fluctuating",
                 "--timesteps", "8", "--n-envs", "1", "--config", str(cfg), "--out",
                 str(tmp_path / "r"), "--eval-freq", "8", "--eval-episodes", "1",
                 "--select", "max", "--episode-requests", "200", "--no-progress"]) == 0
    assert seen["train"] == [90] and seen["val"] and set(seen["val"]) == {90}


@pytest.mark.parametrize("env_id, kwargs", [
    ("PrfaasRoles-v0", {"interval_s": 0}),
    ("PrfaasRoles-v0", {"interval_s": "30"}),
    ("PrfaasRoles-v0", {"interval_s": float("inf")}),
    ("PrfaasRoles-v0", {"interval_s": float("nan")}),
    ("PrfaasRoles-v0", {"interval_s": -1}),
    ("PrfaasRoles-v0", {"interval_s": True}),
    ("PrfaasRoles-v0", {"interval_s": None}),
    ("PrfaasRoles-v0", {"reward": "vs_conductor"}),  # the routing env's
    ("PrfaasRoute-v0", {"interval_s": 30}),            # routing decides every arrival
    ("PrfaasRoute-v0", {"reward": "vs_router"}),       # the role env's
])
def test_bad_env_kwargs_are_named(tmp_path, env_id, kwargs):
    from agents.train import load_hyperparams

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({env_id: {"env_kwargs": kwargs}}))
    with pytest.raises(PrfaasInputError) as ei:
        load_hyperparams("maskable_ppo", "bursty-fluctuating", bad, None, env_id)
    key = next(iter(kwargs))
    assert str(ei.value).startswith(f"{bad}: {env_id}.env_kwargs.{key}:")
    if env_id == "PrfaasRoute-v0" and key == "interval_s":
        assert "a PrfaasRoles-v0 option" in str(ei.value)


def test_role_onnx_logits_equal_sb3(role_run, bursty):
    out, onnx = role_run
    env = PrfaasRolesEnv(bursty, episode_requests=600)
    obs = np.array(_episode(env, 4, _first_feasible_change)[0][:-1])
    model = load_sb3(out / "best_model.zip", "maskable_ppo", N_ROLE_FEATURES)
    got = torch.log_softmax(torch.from_numpy(OnnxRouter(onnx).logits(obs)), dim=1).numpy()
    np.testing.assert_allclose(got, sb3_logits(model, "maskable_ppo", obs), atol=1e-5)


def test_a_loaded_role_policy_routes_like_its_router_and_switches_roles(role_run, bursty):
    out, onnx = role_run
    for path in (onnx, out):  # the exported file and the run directory load alike
        policy = load_learned_policy(path, bursty)
        assert isinstance(policy, LearnedRoles) and policy.tick_interval_s == 45.0
    # forced to prefer a change, it requests one whenever one is feasible, and they land
    policy.router.logits_single = lambda obs: np.array([0.0, 1.0, 2.0], np.float32)
    res, sim = run_policy(bursty, policy, 0, split="eval", n=600)
    assert sim.n_role_switches >= 2 and policy.role_changes >= sim.n_role_switches
    # and preferring hold, it is the conductor exactly
    policy.router.logits_single = lambda obs: np.array([2.0, 1.0, 0.0], np.float32)
    res, sim = run_policy(bursty, policy, 0, split="eval", n=600)
    ref, _ = run_policy(bursty, make_heuristic("conductor"), 0, split="eval", n=600)
    assert sim.n_role_switches == 0
    assert res["goodput_rps"] == ref["goodput_rps"] and res["ttft_s"] == ref["ttft_s"]


def test_compare_takes_a_role_policy_path(role_run, capsys):
    _, onnx = role_run
    assert main(["compare", "--scenario", "bursty-fluctuating", "--split", "eval",
                 "--requests", "300", "--seeds", "1", "--policies", f"conductor,{onnx}"]) == 0
    assert "roles.onnx" in capsys.readouterr().out


def test_a_role_checkpoint_is_not_a_router_and_vice_versa(role_run, tmp_path):
    out, onnx = role_run
    with pytest.raises(PrfaasInputError, match="is a PrfaasRoles-v0 policy .it decides the "
                                               "roles"):
        LearnedPolicy.from_onnx(onnx)
    # a role manifest relabelled as a routing one is refused on its spec and actions
    dst = tmp_path / "p.onnx"
    shutil.copy(onnx, dst)
    m = json.loads(manifest_path_for(onnx).read_text())
    m["env_id"] = "PrfaasRoute-v0"
    manifest_path_for(dst).write_text(json.dumps(m))
    with pytest.raises(PrfaasInputError) as ei:
        OnnxRouter(dst)
    assert "observation.hash: expected" in str(ei.value) and "actions: expected" in str(ei.value)
    m["env_id"] = "PrfaasRoles-v9"
    manifest_path_for(dst).write_text(json.dumps(m))
    with pytest.raises(PrfaasInputError, match=r"env_id: expected one of \['PrfaasRoute-v0', "
                                               r"'PrfaasRoles-v0'\]"):
        OnnxRouter(dst)
    m["env_id"], m["router"] = "PrfaasRoles-v0", "oracle"
    manifest_path_for(dst).write_text(json.dumps(m))
    with pytest.raises(PrfaasInputError, match="key 'router'") as ei:
        load_learned_policy(dst)
    assert str(manifest_path_for(dst)) in str(ei.value)  # the file that holds the key
    for interval in (-1, 0.01):  # 0.01: a hundred decisions a second, as the env refuses
        m["router"], m["interval_s"] = "conductor", interval
        manifest_path_for(dst).write_text(json.dumps(m))
        with pytest.raises(PrfaasInputError, match="key 'interval_s': expected a number of "
                           "seconds >= 1") as ei:
            load_learned_policy(dst)
        assert str(manifest_path_for(dst)) in str(ei.value)


def test_train_refuses_a_router_for_the_routing_env(tmp_path, capsys):
    assert main(["train", "--scenario", "bursty-fluctuating", "--timesteps", "8", "--router",
                 "conductor", "--out", str(tmp_path / "r")]) == 2
    assert "--router is for --env PrfaasRoles-v0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_role_baseline_is_the_router_on_the_same_episodes(bursty):
    held = run_role_episodes(bursty, hold, [1_000_000], "val", 300)
    assert held[0]["role_switches"] == 0 and held[0]["requests"] == 300


def test_policy_factory_loads_a_role_policy(role_run, bursty):
    _, onnx = role_run
    assert isinstance(policy_factory(str(onnx), bursty)(), LearnedRoles)


def test_a_routing_run_does_not_warm_start_from_a_role_policy(role_run, tmp_path, capsys):
    _, onnx = role_run
    assert main(["train", "--scenario", "bursty-fluctuating", "--timesteps", "8", "--warm-start",
                 str(onnx), "--out", str(tmp_path / "r")]) == 2
    assert "is a PrfaasRoles-v0 policy; a PrfaasRoute-v0 run clones" in capsys.readouterr().err


def test_the_env_decides_on_exactly_the_view_a_role_policys_on_tick_sees(bursty):
    """Validation steps the env; compare and heldout.py run the exported policy's on_tick in
    Simulator.run. Both must feed the policy the same observations, or validation picks
    checkpoints by decisions that never run."""
    env = PrfaasRolesEnv(bursty, split="eval", episode_requests=900)
    env.reset(seed=2)
    sim = env.sim

    def rule(obs: np.ndarray, mask: np.ndarray) -> int:  # any deterministic rule will do
        wanted = TO_PREFILL if obs[3] > obs[11] else TO_DECODE
        return wanted if mask[wanted] else HOLD

    seen_by_env = [env._obs()]
    ended = False
    while not ended:
        obs, _, ended, _, info = env.step(rule(env._obs(), env.action_masks()))
        if not ended:
            seen_by_env.append(obs)

    class Rule(LearnedRoles):
        def __init__(self) -> None:  # the rule instead of a network
            self.route_policy = make_heuristic("conductor")
            self.tick_interval_s = env.interval_s
            self.role_featurizer = env.role_featurizer
            self.seen: list[np.ndarray] = []

        def on_tick(self, view):
            obs = self.role_featurizer(view)
            self.seen.append(obs)
            return action_to_changes(rule(obs, role_masks(view)), view)

    policy = Rule()
    ref = Simulator(env.profile, sim.workload, sim.bandwidth, sim.config)
    result = ref.run(policy, 2)
    assert len(seen_by_env) == len(policy.seen) >= 8
    assert all(np.array_equal(a, b) for a, b in zip(seen_by_env, policy.seen))
    assert info["episode_metrics"]["role_switches"] == result["role_switches"] > 0
    assert info["episode_metrics"]["slo_attainment"] == result["slo_attainment"]


def test_a_role_policy_takes_its_best_feasible_action():
    # the preferred change is masked: the next best feasible one, not hold, is taken
    assert masked_role_argmax(np.array([0.0, 2.0, 1.0]), np.array([True, False, True])) == 2
    assert masked_role_argmax(np.array([0.0, 2.0, 1.0]), np.array([True, True, True])) == 1
    assert masked_role_argmax(np.array([np.nan, np.nan, 1.0]),
                              np.array([True, True, False])) == 0


def test_role_changes_pick_the_least_waiting_prefill_and_the_least_busy_decode_node(bursty):
    env = PrfaasRolesEnv(bursty, episode_requests=800)
    env.reset(seed=4)
    view = env.view
    R = view.n_remote
    prefill = [j for j in range(view.n_local_nodes) if view.prefill_available[R + j]]
    decode = [j for j in range(view.n_local_nodes) if view.decode_available[j]]
    assert len({view.prefill_wait_s[R + j] for j in prefill}) > 1  # the choice matters
    to_decode = role_candidates(view)[TO_DECODE]
    to_prefill = role_candidates(view)[TO_PREFILL]
    assert view.prefill_wait_s[R + to_decode.node] == min(view.prefill_wait_s[R + j]
                                                          for j in prefill)
    assert view.decode_running[to_prefill.node] == min(view.decode_running[j] for j in decode)


def test_an_episode_that_drains_before_its_first_tick_takes_one_step(bursty):
    env = PrfaasRolesEnv(bursty, episode_requests=20, interval_s=1e6)
    obs, _ = env.reset(seed=0)
    assert env.view is None and not obs.any()
    assert env.action_masks().tolist() == [True, False, False]
    _, reward, ended, _, info = env.step(HOLD)
    m = info["episode_metrics"]
    assert ended and reward == pytest.approx(m["slo_attainment"] * m["requests"] / 20)
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(HOLD)


def test_routers_that_switch_roles_or_do_not_exist_are_refused(bursty):
    with pytest.raises(PrfaasInputError, match="'prfaas-dual' switches roles itself"):
        PrfaasRolesEnv(bursty, router="prfaas-dual")
    with pytest.raises(PrfaasInputError, match="unknown router 'nope'; choose a heuristic") \
            as ei:
        PrfaasRolesEnv(bursty, router="nope")
    assert "'conductor'" in str(ei.value) and "prfaas-dual" not in str(ei.value)  # refused
    with pytest.raises(PrfaasInputError, match="episode_requests"):
        PrfaasRolesEnv(bursty, episode_requests=0)
    # a threshold router routes by the scenario's planned threshold, as compare gives it
    env = PrfaasRolesEnv(bursty, router="prfaas-threshold")
    assert env.router.threshold_tokens == bursty.threshold_tokens != 19_642.0


def test_the_shipped_role_policy_loads_and_turns_a_decode_node_into_prefill(bursty):
    """The committed role policy loads under this code's role env (a change to its version,
    observation spec or actions needs a retrain) and does what the README says it learned:
    deciding every 60 s, it holds the roles where the conductor alone does well (held-out
    seed 0: no switch, the conductor's run exactly) and elsewhere moves a decode node to
    prefill (3 + 5 -> 4 + 4; seed 4: once, minutes into the run), serving the held-out
    requests (a run of heldout.py's length) better than the conductor alone."""
    path = Path(__file__).resolve().parents[1] / "agents" / "policies" / \
        "bursty-fluctuating-roles.onnx"
    for seed in (0, 4):
        policy = load_learned_policy(path, bursty)
        assert isinstance(policy, LearnedRoles) and policy.tick_interval_s == 60.0
        changes: list = []
        decide_roles = policy.on_tick

        def recorded(view, decide_roles=decide_roles, changes=changes):
            out = decide_roles(view)
            changes.extend((view.time_s, c.role.name) for c in out)
            return out

        policy.on_tick = recorded
        learned, _ = run_policy(bursty, policy, seed, split="eval", n=4000)
        conductor, _ = run_policy(bursty, make_heuristic("conductor"), seed, split="eval",
                                  n=4000)
        if seed == 0:
            assert changes == [] and learned["goodput_rps"] == conductor["goodput_rps"]
        else:
            assert [role for _, role in changes] == ["PREFILL"] and changes[0][0] >= 60.0
            assert learned["goodput_rps"] > conductor["goodput_rps"]


def test_a_paused_tick_must_be_ended_once_before_the_simulation_runs_on(bursty):
    """Running on past a paused tick would silently end the tick schedule; ending a tick
    twice would start a second one."""
    sim = Simulator(bursty.profile, bursty.workload(0, n=300, split="eval"),
                    bursty.bandwidth(0, "eval"), bursty.sim)
    sim.set_tick_handler(lambda view: [], 30.0)
    assert sim.run_to_tick(1e9)
    for run_on in (sim.next_request, lambda: sim.advance(1e9), lambda: sim.run_to_tick(1e9),
                   sim.finish):
        with pytest.raises(RuntimeError, match="call end_tick"):
            run_on()
    sim.end_tick([])
    with pytest.raises(RuntimeError, match="without a paused tick"):
        sim.end_tick([])
