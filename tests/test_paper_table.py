"""The simulator agrees with the planner and with the paper's Table 6."""

from __future__ import annotations

import pytest

from agents.compare import run_policy
from agents.registry import policy_factory
from prfaas_gym.planner import plan_for_paper
from prfaas_gym.scenario import load_scenario

CONFIGS = {  # scenario -> (planner config, paper mean TTFT, paper P90 TTFT)
    "paper-case-study": ("prfaas", 2.22, 3.51),
    "paper-homogeneous": ("homogeneous", 4.44, 9.73),
    "paper-naive": ("naive", 1.74, 3.51),
}


@pytest.fixture(scope="module")
def plans():
    return plan_for_paper("paper-case-study")


def _run(name: str, rate: float, n: int) -> dict:
    sc = load_scenario(name)
    result, _ = run_policy(sc, policy_factory(sc.policy, sc)(), seed=0, n=n, rate=rate)
    return result


@pytest.fixture(scope="module")
def overload(plans):
    return {name: _run(name, 2 * plans[cfg].lambda_max, 3000)
            for name, (cfg, _, _) in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_overload_completion_rate_matches_planner(name, plans, overload):
    cfg = CONFIGS[name][0]
    res = overload[name]
    assert res["completed"] == res["requests"]
    assert res["throughput_rps"] == pytest.approx(plans[cfg].lambda_max, rel=0.10)


def test_prfaas_beats_homogeneous_at_overload(overload):
    ratio = overload["paper-case-study"]["throughput_rps"] / \
        overload["paper-homogeneous"]["throughput_rps"]
    assert ratio >= 1.4


@pytest.mark.parametrize("name", list(CONFIGS))
def test_light_load_ttft_matches_paper(name):
    _, mean, p90 = CONFIGS[name]
    res = _run(name, 0.05, 8000)
    assert res["ttft_s"]["mean"] == pytest.approx(mean, rel=0.05)
    assert res["ttft_s"]["p90"] == pytest.approx(p90, rel=0.05)
    assert res["slo_attainment"] == pytest.approx(1.0)
