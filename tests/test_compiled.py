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
    if tr:
        obs, _ = env.reset()
out["env"] = trace
print(json.dumps(out, default=str))
"""


def _probe(pure: bool) -> dict:
    env = {**os.environ, "PRFAAS_PURE_PYTHON": "1" if pure else "0"}
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=root, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_pure_python_switch_loads_the_sources():
    out = _probe(pure=True)
    assert out["describe"] == "pure Python"
    assert out["simulator_file"].endswith("simulator.py")


@pytest.mark.skipif(not _compiled.compiled_modules(),
                    reason="installed without compilation (PRFAAS_PURE_PYTHON=1 at install)")
def test_compiled_modules_agree_with_their_source_exactly():
    compiled, pure = _probe(pure=False), _probe(pure=True)
    assert compiled["describe"].startswith("compiled with mypyc")
    assert not compiled["simulator_file"].endswith(".py")
    # compared as JSON text: exact floats, and a NaN equals a NaN
    assert json.dumps(compiled["runs"]) == json.dumps(pure["runs"])
    assert json.dumps(compiled["env"]) == json.dumps(pure["env"])


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
