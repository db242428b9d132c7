"""The result schema's latency summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas_gym.metrics import distribution


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 101, 256, 1000])
def test_percentiles_are_numpys_bit_for_bit(n):
    rng = np.random.default_rng(n)
    samples = [rng.lognormal(0.0, 2.0, n), rng.uniform(-5.0, 5.0, n),
               rng.integers(0, 4, n).astype(float), np.round(rng.exponential(3.0, n), 2)]
    for a in samples:
        d = distribution(a)
        assert [d["p50"], d["p90"], d["p99"]] == np.percentile(a, [50, 90, 99]).tolist()
        assert d["mean"] == float(np.mean(a))


def test_empty_and_nan_samples():
    assert distribution([]) == {"mean": None, "p50": None, "p90": None, "p99": None}
    d = distribution([1.0, float("nan"), 2.0])
    assert all(math.isnan(d[k]) for k in ("mean", "p50", "p90", "p99"))
