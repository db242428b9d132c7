"""The mypyc-compiled modules: the pure-Python switch, agreement with the source, staleness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prfaas_gym import _compiled

# One short simulation per routing style plus an env rollout, summarised as JSON; run in a
# subprocess so that PRFAAS_PURE_PYTHON takes effect at import.
_PROBE = r"""
import json, numpy as np, gymnasium as gym
import prfaas_gym, prfaas_gym.simulator as simmod
from prfaas_gym import _compiled
from prfaas_gym.scenario import load_scenario
from prfaas_gym.simulator import Simulator
from agents.registry import policy_factory
out = {"describe": _compiled.describe(), "simulator_file": simmod.__file__, "runs": []}
for name, pol in [("bursty-fluctuating", "prfaas-dual"), ("bursty-fluctuating", "conductor")]:
    sc = load_scenario(name)
    sim = Simulator(sc.profile, sc.workload(0, n=600), sc.bandwidth(0), sc.sim)
    res = sim.run(policy_factory(pol, sc)(), seed=0)
    res.pop("sim_requests_per_s", None)
    out["runs"].append([res, sim.timeseries])
env = gym.make("PrfaasRoute-v0", scenario="bursty-fluctuating", episode_requests=64)
obs, _ = env.reset(seed=2)
rng = np.random.default_rng(0)
trace = [obs.tolist()]
for _ in range(150):
    obs, r, te, tr, info = env.step(int(rng.integers(3)))
    trace.append(obs.tolist() + [r])
    if te or tr:
        obs, _ = env.reset()
out["env"] = trace
print(json.dumps(out, default=str))
"""


# "save PATH": step an env with a role-switching tick policy 150 times (past several
# ticks), pickle it to PATH, then print its next 20 steps;
# "load PATH": unpickle and print the next 20 steps.
_PICKLE_PROBE = r"""
import json, pickle, sys
import prfaas_gym
from prfaas_gym.env import PrfaasRouteEnv
from agents.prfaas_dual import PrfaasDual
mode, path = sys.argv[1], sys.argv[2]
if mode == "save":
    env = PrfaasRouteEnv("bursty-fluctuating", episode_requests=300,
                         tick_policy=PrfaasDual(threshold_tokens=12_000))
    env.reset(seed=4)
    for k in range(150):
        env.step(k % 3)
    with open(path, "wb") as f:
        pickle.dump(env, f)
else:
    with open(path, "rb") as f:
        env = pickle.load(f)
out = []
for k in range(20):
    obs, r, te, tr, info = env.step((k + 1) % 3)
    out.append(obs.tolist() + [r])
print(json.dumps(out))
"""


def _run(code: str, pure: bool, *args: str) -> str:
    env = {**os.environ, "PRFAAS_PURE_PYTHON": "1" if pure else "0"}
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _probe(pure: bool) -> dict:
    return json.loads(_run(_PROBE, pure))


def test_pure_python_switch_loads_the_sources():
    out = _probe(pure=True)
    assert out["describe"] == "pure Python"
    assert out["simulator_file"].endswith("simulator.py")


_NOT_COMPILED = pytest.mark.skipif(
    not _compiled.compiled_modules(),
    reason="no compiled modules in use (installed with PRFAAS_PURE_PYTHON=1, or it is set now)")


@_NOT_COMPILED
def test_compiled_modules_agree_with_their_source_exactly():
    compiled, pure = _probe(pure=False), _probe(pure=True)
    assert compiled["describe"].startswith("compiled with mypyc")
    assert not compiled["simulator_file"].endswith(".py")
    # compared as JSON text: exact floats, and a NaN equals a NaN
    assert json.dumps(compiled["runs"]) == json.dumps(pure["runs"])
    assert json.dumps(compiled["env"]) == json.dumps(pure["env"])


@_NOT_COMPILED
@pytest.mark.parametrize("save_pure", [False, True], ids=["compiled-to-pure", "pure-to-compiled"])
def test_an_env_pickled_in_one_mode_continues_identically_in_the_other(tmp_path, save_pure):
    path = str(tmp_path / "env.pkl")
    continued = _run(_PICKLE_PROBE, save_pure, "save", path)
    assert _run(_PICKLE_PROBE, not save_pure, "load", path) == continued


def test_a_source_edited_after_the_build_is_reported_stale(tmp_path):
    ext = tmp_path / "simulator.cpython-311-x86_64-linux-gnu.so"
    src = tmp_path / "simulator.py"
    ext.write_bytes(b"")
    src.write_text("")
    os.utime(ext, (1000.0, 1000.0))
    os.utime(src, (1001.0, 1001.0))  # within the installer's slack: not stale
    assert _compiled.stale_extensions({"simulator": ext}) == []
    os.utime(src, (1100.0, 1100.0))
    assert _compiled.stale_extensions({"simulator": ext}) == [(src, ext)]


def test_constructors_accept_what_a_user_passes_and_store_plain_types():
    np = pytest.importorskip("numpy")
    from prfaas_gym.contract import ClusterView, Decision, LinkView, Placement, RequestInfo
    from prfaas_gym.request import Request, Workload

    d = Decision(np.int64(1), prefill_instance=np.int64(2))
    assert d == Decision(Placement.REMOTE, 2) and type(d.placement) is Placement
    assert type(d.prefill_instance) is int
    r = Request(np.int64(0), 1, np.int64(700), np.int32(5), [3, 4], np.int64(512), None)
    assert r == Request(0, 1.0, 700, 5, (3, 4), 512)
    assert type(r.arrival_s) is float and type(r.prompt_tokens) is int
    assert RequestInfo(0, np.float32(0.5), 10, [1]).block_hashes == (1,)
    assert LinkView(transfers_in_flight=np.int64(2), rtt_s=0).transfers_in_flight == 2
    v = ClusterView(prefill_cluster=(0, 1), prefill_wait_s=np.zeros(2))
    assert v.prefill_cluster == [0, 1] and type(v.prefill_wait_s) is list
    assert Workload((r,)).requests == [r]
    with pytest.raises(ValueError):
        Decision(7)  # no such placement
    with pytest.raises(TypeError):
        Request(1.5, 0.0, 10, 1)  # an id is an integer
