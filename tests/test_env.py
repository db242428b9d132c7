"""PrfaasRoute-v0: API checks, determinism, pickling, conservation, reward = goodput."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import prfaas_gym  # noqa: F401  (registers the env)
from prfaas_gym.env import PrfaasRouteEnv
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.scenario import load_scenario, scenario_dir


def make(**kw) -> PrfaasRouteEnv:
    kw.setdefault("episode_requests", 64)
    return PrfaasRouteEnv("bursty-fluctuating", **kw)


def rollout(env: PrfaasRouteEnv, seed: int, actions_seed: int = 0):
    rng = np.random.default_rng(actions_seed)
    obs, _ = env.reset(seed=seed)
    traj = [obs]
    rewards = []
    while True:
        mask = env.action_masks()
        a = int(rng.choice(np.flatnonzero(mask)))
        obs, r, term, trunc, info = env.step(a)
        traj.append(obs)
        rewards.append(r)
        if term or trunc:
            return np.array(traj), np.array(rewards), info


def test_gymnasium_check_env():
    check_env(gym.make("PrfaasRoute-v0", episode_requests=32).unwrapped, skip_render_check=True)


def test_sb3_check_env():
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(make(episode_requests=32), warn=False)


def test_same_seed_same_rollout():
    a = rollout(make(), seed=11)
    b = rollout(make(), seed=11)
    c = rollout(make(), seed=12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("reward", ["completion", "vs_conductor"])  # with its twin
def test_env_survives_pickling_mid_episode(reward):
    env = make(reward=reward)
    env.reset(seed=3)
    for _ in range(10):
        env.step(0)
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(20):
        o1, r1, *_ = env.step(1)
        o2, r2, *_ = clone.step(1)
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2


def test_env_with_a_tick_policy_survives_pickling_and_copying_mid_episode():
    # SubprocVecEnv pickles the env with its tick policy; the policy's own state (a Python
    # subclass of a compiled class) must travel too
    import copy

    from agents.prfaas_dual import PrfaasDual

    env = make(episode_requests=400, tick_policy=PrfaasDual(threshold_tokens=12_000))
    env.reset(seed=3)
    for k in range(200):
        env.step(k % 2)
    assert env.sim.now > 3 * env.tick_policy.tick_interval_s  # ticks have run
    clones = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    for clone in clones:
        assert clone.tick_policy is not env.tick_policy
        assert clone.tick_policy.base_threshold == 12_000
        assert list(clone.tick_policy._lengths) == list(env.tick_policy._lengths)
    for k in range(150):
        o1, r1, *_ = env.step(k % 3)
        for clone in clones:
            o2, r2, *_ = clone.step(k % 3)
            np.testing.assert_array_equal(o1, o2)
            assert r1 == r2


@pytest.mark.parametrize("seed", range(4))
def test_conservation_and_goodput_at_episode_end(seed):
    env = make(episode_requests=80)
    obs, rewards, info = rollout(env, seed=seed, actions_seed=seed)
    c = info["counts"]
    assert c["arrived"] == 80
    assert c["completed"] + c["rejected"] + c["failed"] + c["in_flight"] == c["arrived"]
    m = info["episode_metrics"]
    # the undiscounted return is the fraction of the episode's requests served within SLO
    assert rewards.sum() == pytest.approx(m["slo_met"] / 80)
    assert len(obs) == 81
    assert np.all(np.abs(obs) <= 10.0)


def test_action_masks_follow_the_deployment():
    env = PrfaasRouteEnv("paper-homogeneous", episode_requests=16)
    env.reset(seed=0)
    assert env.action_masks().tolist() == [True, False, True]
    # an infeasible remote action falls back to local
    _, _, _, _, _ = env.step(1)
    assert env.sim.jobs[0].placement == 0


def test_without_a_pending_request_only_reject_is_feasible():
    env = make(episode_requests=4)
    assert env.action_masks().tolist() == [False, False, True]  # before reset
    env.reset(seed=0)
    ended = False
    while not ended:
        _, _, ended, truncated, _ = env.step(0)
        assert not truncated
    assert env.action_masks().tolist() == [False, False, True]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_reject_action_rejects():
    env = make(episode_requests=16)
    env.reset(seed=0)
    while True:
        _, _, ended, _, info = env.step(2)
        if ended:
            break
    assert info["counts"]["rejected"] == 16


def test_observation_never_sees_output_length():
    """Two requests that differ only in output length give identical observations."""
    from prfaas_gym.contract import RequestInfo
    from prfaas_gym.request import Request

    env = make()
    env.reset(seed=0)
    r1 = Request(0, 0.0, 5000, 10)
    r2 = Request(0, 0.0, 5000, 4000)
    v = env.sim.view(r1)
    o1 = env.featurizer(env.sim.request_info(r1), v)
    o2 = env.featurizer(env.sim.request_info(r2), v)
    np.testing.assert_array_equal(o1, o2)
    assert not hasattr(RequestInfo, "output_tokens")


def test_domain_randomisation_draws_cluster_sizes_load_and_link(tmp_path):
    """Episodes draw cluster sizes, load and link mean from the scenario's ranges; the
    observation shape never changes."""
    import yaml

    from prfaas_gym.scenario import load_scenario, scenario_dir

    d = yaml.safe_load((scenario_dir() / "bursty-fluctuating.yaml").read_text())
    d["randomize"] = {"rate_scale": [0.5, 2.0], "link_gbps": [5.0, 50.0], "n_prfaas": [1, 4],
                      "n_local": [4, 10]}
    p = tmp_path / "rand.yaml"
    p.write_text(yaml.safe_dump(d))
    env = PrfaasRouteEnv(load_scenario(p), episode_requests=32)
    sizes, rates, links = set(), set(), set()
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        assert obs.shape == (32,)
        dep = env.profile.deployment
        assert 1 <= dep.n_prfaas <= 4 and 4 <= dep.n_prefill + dep.n_decode <= 10
        assert dep.n_prefill >= 1 and dep.n_decode >= 1
        sizes.add((dep.n_prfaas, dep.n_prefill, dep.n_decode))
        rates.add(round(env.sim.workload.mean_rate, 3))
        links.add(round(env.sim.bandwidth.mean_gbps, 3))
        assert 5.0 - 1e-6 <= env.sim.bandwidth.mean_gbps <= 50.0 + 1e-6
    assert len(sizes) > 3 and len(rates) > 6 and len(links) > 6
    # validation and held-out episodes are the scenario as it is, as reports run it
    base = yaml.safe_load((scenario_dir() / "bursty-fluctuating.yaml").read_text())
    base.pop("randomize")
    q = tmp_path / "nominal.yaml"
    q.write_text(yaml.safe_dump(base))
    for split in ("val", "eval"):
        env, nominal = (PrfaasRouteEnv(load_scenario(f), split=split, episode_requests=32)
                        for f in (p, q))
        for seed in range(4):
            env.reset(seed=seed)
            nominal.reset(seed=seed)
            assert env.profile.deployment == nominal.profile.deployment
            assert env.sim.workload.mean_rate == nominal.sim.workload.mean_rate
            assert env.sim.bandwidth.mean_gbps == nominal.sim.bandwidth.mean_gbps


def test_val_and_eval_episodes_run_on_their_own_links():
    """No held-out or validation episode replays a link training generated."""
    from agents.compare import run_policy
    from agents.registry import make_heuristic
    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")

    def source(caps, split):
        return [s for s in ("train", "val", "eval") if any(
            len(t.bytes_per_s) == len(caps) and (t.bytes_per_s == caps).all()
            for t in sc.bandwidth_sampler(s).traces)] == [split]

    for split in ("val", "eval"):
        env = PrfaasRouteEnv(sc, split=split, episode_requests=16)
        for seed in range(6):
            env.reset(seed=seed)
            assert source(env.sim.bandwidth.bytes_per_s, split)
    _, sim = run_policy(sc, make_heuristic("conductor"), 0, split="eval", n=20)
    assert source(sim.bandwidth.bytes_per_s, "eval")


def test_set_randomize_replaces_the_ranges_of_the_next_episodes():
    """A curriculum's handle: the next episodes draw load and link mean from the given
    ranges (same seed, half the load scale: exactly half the arrival rate); keys left out
    go back to the scenario's; unrandomised keys and bad ranges are named."""
    env = make(episode_requests=64)  # bursty-fluctuating: rate_scale and link_gbps
    env.set_randomize({"rate_scale": [1.0, 1.0], "link_gbps": [40.0, 40.0]})
    env.reset(seed=5)
    full_rate = env.sim.workload.mean_rate
    assert env.sim.bandwidth.mean_gbps == pytest.approx(40.0)
    env.set_randomize({"rate_scale": [0.5, 0.5]})
    env.reset(seed=5)
    assert env.sim.workload.mean_rate == pytest.approx(0.5 * full_rate)
    assert env.randomize["link_gbps"] == env.scenario.randomize["link_gbps"]
    with pytest.raises(PrfaasInputError, match="does not randomise.*n_prfaas"):
        env.set_randomize({"n_prfaas": [1, 2]})
    with pytest.raises(PrfaasInputError, match="randomize.rate_scale"):
        env.set_randomize({"rate_scale": [2.0, 1.0]})
    assert env.randomize["rate_scale"] == (0.5, 0.5)  # a refused call changes nothing
    with pytest.raises(PrfaasInputError, match="train split only"):
        make(split="val").set_randomize({"rate_scale": [0.5, 0.5]})


def test_action_space_contains_the_conductor():
    """Every decision of the best heuristic (Mooncake's conductor, prefix copies included) is
    one of the env's actions, so a policy cloned from it can match it exactly."""
    from agents.heuristics import Conductor
    from agents.imitation import decision_to_action
    from prfaas_gym.estimate import best_per_cluster

    env = make(episode_requests=512)
    env.reset(seed=3)
    pol = Conductor()
    pol.reset(env.profile, 0)
    copies = 0
    actions = set()
    while env.request_info is not None:
        info, view = env.request_info, env.view
        want = pol.decide(info, view)
        a = decision_to_action(want)
        assert env.action_masks()[a]
        got = env.decision(a)
        assert (got.placement, got.prefill_instance, got.copy_prefix_from) == \
            (want.placement, want.prefill_instance, want.copy_prefix_from)
        # a copy only ever lowers a cluster's estimate; without one it is the plain minimum
        bl, tl, br, tr, cl, cr = env._episode.best
        pl, ptl, pr, ptr = best_per_cluster(env.profile, info, view)
        assert tl <= ptl and tr <= ptr
        assert cl >= 0 or (bl, tl) == (pl, ptl)
        assert cr >= 0 or (br, tr) == (pr, ptr)
        copies += want.copy_prefix_from is not None
        actions.add(a)
        env.step(a)
    assert copies > 10 and {0, 1} <= actions  # the episode exercised copies and both clusters


def test_step_takes_integer_actions_only():
    env = make(episode_requests=8)
    env.reset(seed=0)
    for bad in (1.5, float("nan"), float("inf"), 3, -1):
        with pytest.raises(ValueError):
            env.step(bad)
    env.step(np.int64(2))  # what SB3 passes
    env.step(2.0)  # an integral float is the integer it names
    assert env.sim.counts()["rejected"] == 2


def _conductor_rewards(reward: str, seed: int, max_drain_s: float | None,
                       check_sum: bool = True) -> np.ndarray:
    from agents.heuristics import Conductor

    env = make(episode_requests=256, reward=reward, max_drain_s=max_drain_s)
    env.reset(seed=seed)
    pol = Conductor()
    pol.reset(env.profile, 0)
    rewards = []
    while env.request_info is not None:
        _, r, _, _, info = env.step_decision(pol.decide(env.request_info, env.view))
        rewards.append(r)
    if check_sum:
        assert rewards[-1] == pytest.approx(
            info["episode_metrics"]["slo_met"] / 256 - sum(rewards[:-1]))
    return np.array(rewards)


@pytest.mark.parametrize("seed, max_drain_s", [(0, None), (1, None), (2, 1.0)])
def test_first_token_reward_pays_the_same_return_earlier(seed, max_drain_s):
    """The first_token reward pays each SLO-meeting request when its first token arrives:
    the same (undiscounted) return as the completion reward, with credit no later at any
    step; a drain cut short (max_drain_s=1) takes back requests that had not completed."""
    done = _conductor_rewards("completion", seed, max_drain_s)
    first = _conductor_rewards("first_token", seed, max_drain_s)
    assert len(first) == len(done)
    assert first.sum() == pytest.approx(done.sum()) and done.sum() > 0.3
    ahead = np.cumsum(first)[:-1] - np.cumsum(done)[:-1]
    assert ahead.min() >= -1e-12 and ahead.max() > 0.02
    steps = np.arange(len(done))
    assert (steps * first).sum() / first.sum() < (steps * done).sum() / done.sum() - 5
    if max_drain_s is not None:  # decodes cut off at the end were paid early, then taken back
        assert first[-1] < 0


@pytest.mark.parametrize("seed", [0, 5])
def test_vs_conductor_pays_the_conductor_nothing_and_a_departure_what_it_gained(seed):
    """reward="vs_conductor": routing as the conductor does is paid exactly 0 at every step
    (its twin sees the same events in the same order); another policy's return is its SLO
    attainment less the conductor's over the same requests and link."""
    assert not _conductor_rewards("vs_conductor", seed, None, check_sum=False).any()
    alone = _conductor_rewards("completion", seed, None).sum()
    env = make(episode_requests=256, reward="vs_conductor")
    env.reset(seed=seed)
    total, ended = 0.0, False
    while not ended:  # prefill everything locally
        _, r, ended, _, info = env.step(0)
        total += r
    own = info["episode_metrics"]["slo_met"] / 256
    assert total == pytest.approx(own - alone) and abs(total) > 0.05


def test_vs_conductor_twin_keeps_step_over_reused_episodes_of_any_length():
    """SB3 resets one env again and again (seed None): the twin and its count start over
    with each episode, down to a one-request episode, whose single step drains both."""
    from agents.heuristics import Conductor

    for n in (1, 2, 40):
        env = make(episode_requests=n, reward="vs_conductor")
        env.reset(seed=7)
        for _ in range(3):
            pol = Conductor()
            pol.reset(env.profile, None)
            steps, ended = 0, False
            while not ended:
                _, r, ended, _, _ = env.step_decision(pol.decide(env.request_info, env.view))
                assert r == 0.0
                steps += 1
            assert steps == n
            env.reset()


def test_vs_conductor_refuses_a_tick_policy():
    from agents.registry import make_heuristic

    with pytest.raises(PrfaasInputError, match="^reward: .*tick_policy"):
        make(reward="vs_conductor", tick_policy=make_heuristic("prfaas-dual"))


def test_unknown_reward_is_refused():
    from prfaas_gym.errors import PrfaasInputError

    with pytest.raises(PrfaasInputError, match="unknown reward 'ttft'"):
        make(reward="ttft")


def test_load_randomisation_of_a_trace_without_rate_scales_the_train_split_own_rate(
        tmp_path, shared_traces, monkeypatch):
    """``rate_scale: [1, 1]`` on a trace played at its own times leaves the train split's
    arrivals as they are (the base is the split's own rate, not the whole trace's, which
    would mix in the held-out part)."""
    import yaml

    from prfaas_gym.scenario import load_scenario, scenario_dir

    monkeypatch.setenv("PRFAAS_TRACES", str(shared_traces))
    d = yaml.safe_load((scenario_dir() / "mooncake-conversation.yaml").read_text())
    d["workload"]["trace"].pop("rate")
    d["randomize"] = {"rate_scale": [1.0, 1.0]}
    p = tmp_path / "own-rate.yaml"
    p.write_text(yaml.safe_dump(d))
    sc = load_scenario(p)
    assert sc.mean_rate("train") == sc.split_trace("train").mean_rate
    assert sc.mean_rate("train") != pytest.approx(sc.split_trace("all").mean_rate, rel=1e-3)
    env = PrfaasRouteEnv(sc, episode_requests=64)
    env.reset(seed=3)
    got = env.sim.workload.requests
    train = sc.split_trace("train").requests
    i = next(k for k, r in enumerate(train) if r.block_hashes == got[0].block_hashes
             and r.prompt_tokens == got[0].prompt_tokens)
    gaps = np.diff([r.arrival_s for r in got])
    assert gaps == pytest.approx(np.diff([r.arrival_s for r in train[i:i + 64]]))


@pytest.mark.parametrize("kwargs, name", [
    ({"episode_requests": 0}, "episode_requests"),      # was: silently the scenario's 256
    ({"episode_requests": True}, "episode_requests"),
    ({"episode_requests": -5}, "episode_requests"),     # was: "n ... got -160" at reset
    ({"max_drain_s": "x"}, "max_drain_s"),
    ({"max_drain_s": -1.0}, "max_drain_s"),
    ({"max_drain_s": float("nan")}, "max_drain_s"),
    ({"tick_policy": "prfaas-dual"}, "tick_policy"),    # a name, not a policy object
    ({"split": "test"}, "split"),
])
def test_bad_constructor_arguments_are_named(kwargs, name):
    with pytest.raises(PrfaasInputError, match=rf"^{name}: "):
        PrfaasRouteEnv("paper-case-study", **kwargs)


def test_max_drain_may_be_unlimited_or_a_numpy_number():
    assert PrfaasRouteEnv("paper-case-study", max_drain_s=float("inf")).max_drain_s == float("inf")
    assert PrfaasRouteEnv("paper-case-study", max_drain_s=np.float32(5)).max_drain_s == 5.0


def test_each_action_maps_to_its_decision_and_an_infeasible_one_falls_back() -> None:
    """The documented fallbacks: a cluster with no instance sends the request to the other
    cluster, and to reject if neither has one (the runtime's router relies on this when a
    mask is stale)."""
    from prfaas_gym.actions import LOCAL, NO_CHOICE, REJECT_ACTION, REMOTE, action_to_decision
    from prfaas_gym.contract import Decision, Placement

    both = (5, 1.0, 3, 2.0, -1, 0)  # local instance 5; remote 3 with a copy from 0
    assert action_to_decision(LOCAL, both) == Decision(Placement.LOCAL, prefill_instance=5)
    assert action_to_decision(REMOTE, both) == Decision(Placement.REMOTE, prefill_instance=3,
                                                        copy_prefix_from=0)
    assert action_to_decision(REJECT_ACTION, both) == Decision(Placement.REJECT)
    remote_only = (-1, math.inf, 3, 2.0, -1, -1)
    assert action_to_decision(LOCAL, remote_only) == Decision(Placement.REMOTE,
                                                              prefill_instance=3)
    local_only = (5, 1.0, -1, math.inf, -1, -1)
    assert action_to_decision(REMOTE, local_only) == Decision(Placement.LOCAL,
                                                              prefill_instance=5)
    for a in (LOCAL, REMOTE):
        assert action_to_decision(a, NO_CHOICE) == Decision(Placement.REJECT)


def test_first_token_reward_takes_back_every_request_that_then_misses_tpot() -> None:
    """With a TPOT SLO nobody meets, a first_token payment must be taken back when its
    request completes: the credit held at any step is at most the requests still decoding
    (bounded by the decode slots), not every first token so far, and the return is 0."""
    import dataclasses

    from prfaas_gym.scenario import load_scenario

    sc = load_scenario("bursty-fluctuating")
    sc = dataclasses.replace(sc, profile=sc.profile.with_slo(tpot_s=1e-6))
    from agents.heuristics import Conductor

    env = PrfaasRouteEnv(sc, episode_requests=256, reward="first_token")
    env.reset(seed=0)
    pol = Conductor(tpot_slack=1e9)  # routes on TTFT; never rejects for the TPOT SLO
    pol.reset(env.profile, 0)
    rewards = []
    while env.request_info is not None:
        _, r, _, _, _ = env.step_decision(pol.decide(env.request_info, env.view))
        rewards.append(r)
    held = np.cumsum(rewards) * 256
    slots = sc.profile.deployment.n_decode * sc.profile.local_hw.decode.max_batch
    assert held[-1] == pytest.approx(0.0, abs=1e-9)
    assert 1 <= held.max() <= slots, (held.max(), slots)
    assert env.sim.n_ttft_met > slots  # enough first tokens that paying them all would show


# ---------------------------------------------------------------------------------------------
# Domain randomisation of cluster sizes: both ends drawn, the scenario's prefill share kept, a decode node always left


def _env(tmp_path: Path, randomize: dict[str, Any], **deployment: int) -> PrfaasRouteEnv:
    d = yaml.safe_load((scenario_dir() / "bursty-fluctuating.yaml").read_text())
    d["randomize"] = randomize
    d["deployment"].update(deployment)
    p = tmp_path / "rand.yaml"
    p.write_text(yaml.safe_dump(d))
    return PrfaasRouteEnv(load_scenario(p), episode_requests=16)


def _deployments(env: PrfaasRouteEnv, seeds: range) -> list[tuple[int, int, int]]:
    out = []
    for seed in seeds:
        env.reset(seed=seed)
        dep = env.profile.deployment
        out.append((dep.n_prfaas, dep.n_prefill, dep.n_decode))
    return out


def test_cluster_size_ranges_are_inclusive(tmp_path):
    """``n_prfaas: [1, 2]`` and ``n_local: [4, 5]`` draw both ends (integers, inclusive)."""
    deps = _deployments(_env(tmp_path, {"n_prfaas": [1, 2], "n_local": [4, 5]}), range(16))
    assert {d[0] for d in deps} == {1, 2}
    assert {d[1] + d[2] for d in deps} == {4, 5}


def test_randomised_local_cluster_keeps_the_scenarios_prefill_share(tmp_path):
    """bursty-fluctuating runs 3 prefill : 5 decode; 8 and 16 local nodes split the same way."""
    assert set(_deployments(_env(tmp_path, {"n_local": [8, 8]}), range(3))) == {(4, 3, 5)}
    assert set(_deployments(_env(tmp_path, {"n_local": [16, 16]}), range(3))) == {(4, 6, 10)}


def test_a_prefill_heavy_scenario_still_gets_a_decode_node(tmp_path):
    """7 prefill : 1 decode shrunk to 2 or 3 local nodes keeps at least one of each."""
    env = _env(tmp_path, {"n_local": [2, 3]}, n_prefill=7, n_decode=1)
    deps = _deployments(env, range(8))
    assert {d[1] + d[2] for d in deps} == {2, 3}
    assert all(d[1] >= 1 and d[2] >= 1 for d in deps), deps
