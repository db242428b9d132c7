"""benchmarks/slo_bound.py: its bound on how many requests fit is a valid upper bound."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "slo_bound.py"
_spec = importlib.util.spec_from_file_location("slo_bound", _PATH)
slo_bound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slo_bound)


def exact_max_fit(remote_s, link_b, local_s, caps) -> int:
    """Brute force: each request remote, local or dropped."""
    best = 0
    for choice in itertools.product((0, 1, 2), repeat=len(remote_s)):
        c = np.array(choice)
        r, lo = c == 0, c == 1
        if remote_s[r].sum() <= caps[0] and link_b[r].sum() <= caps[1] \
                and local_s[lo].sum() <= caps[2]:
            best = max(best, int(r.sum() + lo.sum()))
    return best


def test_fitting_bound_is_never_below_the_true_maximum():
    rng = np.random.default_rng(0)
    tight = 0
    for _ in range(60):
        n = 6
        remote_s, link_b = rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)
        local_s = rng.lognormal(1, 1, n)
        caps = tuple(rng.uniform(0.5, 6.0, 3))
        exact = exact_max_fit(remote_s, link_b, local_s, caps)
        bound = slo_bound.fitting_bound(remote_s, link_b, local_s, caps)
        assert exact <= bound + 1e-9 <= n + 1e-9
        tight += int(np.floor(bound + 1e-9)) == exact
    assert tight >= 30  # and it is informative, not just n


def test_forced_misses_when_a_window_cannot_hold_its_requests():
    # 10 requests at t=0..0.9 with a 1 s SLO; only local prefill (1 instance, 1 s each) and
    # no remote capacity: a 2 s window holds at most two of them
    arrival = np.linspace(0.0, 0.9, 10)
    ones = np.ones(10)
    misses = slo_bound.forced_misses(arrival, ones, ones, ones, n_remote=0, n_local=1,
                                     link_bytes=lambda a, b: 0.0, slo=1.0, length=2.0,
                                     offset=0.0)
    assert misses == 8
