"""benchmarks/reward_delay.py: the first_token reward pays the same return, sooner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "reward_delay.py"
_spec = importlib.util.spec_from_file_location("reward_delay", _PATH)
reward_delay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reward_delay)


def test_first_token_pays_the_served_requests_sooner():
    done, decided = reward_delay.rollout("bursty-fluctuating", "completion", 0)
    first, decided_ft = reward_delay.rollout("bursty-fluctuating", "first_token", 0)
    assert decided == decided_ft and 0 < decided < len(done)
    assert np.isclose(done.sum(), first.sum())
    steps = np.arange(len(done))
    lag = lambda r: (steps * r).sum() / r.sum() - decided  # noqa: E731
    assert 0 < lag(first) < lag(done) - 10
    assert first[-1] < done[-1]
