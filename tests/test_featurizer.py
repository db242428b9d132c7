"""The observation a policy sees: each feature against its documented definition.

The spec hash covers feature names and order only, so a feature computed from the wrong
input (the local hit for the remote increment, a mean for a minimum) would change what every
trained policy sees without any checkpoint noticing. Here one hand-built view, with numbers
chosen so that such swaps show, is featurized and compared feature by feature with the
definitions in ``prfaas_gym.featurizer.FEATURES``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas_gym.contract import ClusterView, LinkView, RequestInfo
from prfaas_gym.featurizer import CLIP, FEATURES, N_FEATURES, FeatureScales, Featurizer
from prfaas_gym.profile import load_profile

PROMPT = 4000
GIB = 2.0**30


def _setup() -> tuple[Featurizer, RequestInfo, ClusterView]:
    # 2 remote prefill instances; 4 local nodes, of which nodes 0-1 prefill and 2-3 decode
    profile = load_profile("single-host").with_deployment(n_prfaas=2, n_prefill=2, n_decode=2)
    scales = FeatureScales.for_profile(profile, lambda_ref=2.0, threshold_ref=3000.0)
    view = ClusterView(
        time_s=100.0, snapshot_time_s=99.5,
        prefill_cluster=[1, 1, 0, 0, 0, 0],
        prefill_available=[True, True, True, True, False, False],
        prefill_queued_tokens=[1000.0, 3000.0, 500.0, 1500.0, 0.0, 0.0],
        prefill_queued_requests=[1, 2, 1, 1, 0, 0],
        prefill_wait_s=[0.4, 1.0, 0.2, 0.6, 0.0, 0.0],
        prefix_hit_tokens=[640, 1280, 0, 192, 0, 0],
        decode_available=[False, False, True, True],
        decode_running=[0, 0, 8, 16],
        decode_waiting=[0, 0, 2, 6],
        decode_kv_used_bytes=[0.0, 0.0, 1.0 * GIB, 3.0 * GIB],
        decode_kv_capacity_bytes=[20 * GIB] * 4,
        decode_max_batch=[32] * 4,
        link=LinkView(capacity_gbps=5.0, measured_gbps=2.0, utilization=0.4, bytes_queued=1e8,
                      transfers_in_flight=3, rtt_s=0.01),
        arrival_rate=2.5, offload_fraction=0.3, ttft_p90_s=1.5, tpot_mean_s=0.02,
        slo_attainment=0.9)
    return Featurizer(profile, scales), RequestInfo(7, 100.0, PROMPT), view


def _expected(f: Featurizer, req: RequestInfo, view: ClusterView) -> dict[str, float]:
    """Each feature from its definition (``FEATURES``: meaning, unit, normalisation)."""
    p, s = f.profile, f.scales
    slo, tok = s.slo_ttft_s, s.token_scale
    bl, tl, br, tr, _, _ = f.best(req, view)
    lh, rh = 192, 1280  # the best local / remote hits above
    cap_bps = 5.0e9 / 8
    return {
        "log_prompt": math.log1p(PROMPT) / math.log1p(tok * 4),
        "local_hit_frac": lh / PROMPT,
        "remote_hit_frac": rh / PROMPT,
        "incr_local": (PROMPT - lh) / tok,
        "incr_remote": (PROMPT - rh) / tok,
        "ttft_local": tl / slo,
        "ttft_remote": tr / slo,
        "prefill_local": p.local_hw.prefill.time_with_cache(PROMPT - lh, lh) / slo,
        "prefill_remote": p.prfaas_hw.prefill.time_with_cache(PROMPT - rh, rh) / slo,
        "wait_local_mean": (0.2 + 0.6) / 2 / slo,   # available local instances only
        "wait_local_min": 0.2 / slo,
        "wait_remote_mean": (0.4 + 1.0) / 2 / slo,
        "wait_remote_min": 0.4 / slo,
        "queue_local": (500 + 1500) / 2 / tok,
        "queue_remote": (1000 + 3000) / 2 / tok,
        "link_capacity": 5.0 / 10.0,                # / the profile's nominal 10 Gbps
        "link_util": 0.4,
        "link_backlog": 1e8 / cap_bps / slo,
        "link_flows": 3 / 16,
        "kv_ship_s": p.model.kv_bytes(PROMPT - rh) / cap_bps / slo,
        "decode_util": (8 / 32 + 16 / 32) / 2,      # available decode instances only
        "decode_waiting": (2 / 32 + 6 / 32) / 2,
        "decode_kv": (1 / 20 + 3 / 20) / 2,
        "prefill_role_frac": 2 / 4,
        "arrival_rate": 2.5 / 2.0,
        "recent_offload": 0.3,
        "recent_ttft_p90": 1.5 / slo,
        "recent_tpot": 0.02 / s.slo_tpot_s,
        "recent_slo": 0.9,
        "has_remote": 1.0 if br >= 0 else 0.0,
        "has_local": 1.0 if bl >= 0 else 0.0,
        "threshold_ratio": math.log(PROMPT - rh) - math.log(3000.0),
    }


def test_every_feature_matches_its_definition() -> None:
    f, req, view = _setup()
    expected = _expected(f, req, view)
    assert list(expected) == [name for name, _, _ in FEATURES] and len(expected) == N_FEATURES
    obs = f(req, view)
    assert obs.dtype == np.float32 and obs.shape == (N_FEATURES,)
    for i, (name, value) in enumerate(expected.items()):
        want = float(np.float32(min(max(value, -CLIP), CLIP)))
        assert obs[i] == pytest.approx(want, rel=1e-6, abs=1e-7), f"feature {i} {name}"
    # the view is one where the choices matter: both clusters can serve, the numbers differ
    assert obs[9] != obs[10] and obs[3] != obs[4] and obs[29] == obs[30] == 1.0


def test_a_cluster_with_nothing_available_reads_as_three_slos_away() -> None:
    f, req, view = _setup()
    view.prefill_available = [False, False, True, True, False, False]  # no remote instance
    obs = f(req, view)
    names = [name for name, _, _ in FEATURES]
    for name in ("ttft_remote", "wait_remote_mean", "wait_remote_min"):
        assert obs[names.index(name)] == 3.0, name
    assert obs[names.index("has_remote")] == 0.0 and obs[names.index("has_local")] == 1.0
    assert obs[names.index("queue_remote")] == 0.0
