"""The shared TTFT estimate (prfaas_gym.estimate) against its module docstring's formula,
worked out by hand on the single-host profile.

Every router and the featurizer rank instances by this estimate, so a term dropped from it
(the link backlog a remote KV stream queues behind, the RTT) silently skews offloading.
"""

from __future__ import annotations

import pytest

from prfaas_gym.contract import ClusterView, LinkView, RequestInfo
from prfaas_gym.estimate import (
    best_per_cluster,
    best_per_cluster_with_copy,
    copy_s,
    estimate_all,
    estimate_ttft,
)
from prfaas_gym.profile import Profile, load_profile

# single-host.yaml: remote ("fast") prefill T(n) = 0.01 + 5e-5 n + 1e-9 n^2, local ("slow")
# T(n) = 0.02 + 1.2e-4 n + 2e-9 n^2; 32 layers; KV bytes of n tokens = (8 + 0.0625 n) MiB.
MIB = 1024 * 1024
PROMPT = 8000
RTT_S = 0.025  # the view's RTT (not the profile's 0.01 s): the estimate reads telemetry
GBPS = 10.0
LINK_BPS = GBPS * 1e9 / 8  # 1.25e9 B/s
BACKLOG_BYTES = 2.5e9  # 2.0 s of queued bytes at 10 Gbps


def t_fast(n: float) -> float:
    return 0.01 + 5e-5 * n + 1e-9 * n * n


def t_slow(n: float) -> float:
    return 0.02 + 1.2e-4 * n + 2e-9 * n * n


def kv_bytes(n: float) -> float:
    return (8 + 0.0625 * n) * MIB


def remote_service(new: int, hit: int) -> float:
    """service_i (remote) = T(new on top of hit) + the last layer's KV over the link + RTT,
    with T(new | hit) = T(hit + new) - T(hit) + T(0) for a warm prefix."""
    t = t_fast(new) if hit == 0 else t_fast(hit + new) - t_fast(hit) + t_fast(0)
    return t + kv_bytes(new) / 32 / LINK_BPS + RTT_S


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile("single-host")


def view(waits: list[float], hits: list[int] | None = None,
         backlog: float = BACKLOG_BYTES) -> ClusterView:
    """Instance 0 remote, instance 1 local (single-host's numbering)."""
    return ClusterView(
        prefill_cluster=[1, 0], prefill_available=[True, True],
        prefill_queued_tokens=[0.0, 0.0], prefill_queued_requests=[0, 0],
        prefill_wait_s=waits, prefix_hit_tokens=hits or [0, 0],
        link=LinkView(capacity_gbps=GBPS, bytes_queued=backlog, rtt_s=RTT_S),
        uplink=LinkView(capacity_gbps=GBPS, rtt_s=RTT_S))


REQ = RequestInfo(7, 0.0, PROMPT)


def test_hand_values_of_the_formula() -> None:
    # guards the hand arithmetic the other tests rest on
    assert t_fast(PROMPT) == pytest.approx(0.474, rel=1e-12)
    assert t_slow(PROMPT) == pytest.approx(1.108, rel=1e-12)
    assert kv_bytes(PROMPT) / 32 / LINK_BPS == pytest.approx(508 * MIB / 32 / 1.25e9, rel=1e-12)
    assert BACKLOG_BYTES / LINK_BPS == 2.0


def test_remote_estimate_waits_for_the_link_backlog(profile: Profile) -> None:
    """A remote instance whose queue is shorter than the link backlog: its KV stream cannot
    overtake the queued bytes, so delay = backlog / capacity (2 s), not its 0.3 s wait."""
    v = view([0.3, 0.5])
    expected = t_fast(PROMPT) + kv_bytes(PROMPT) / 32 / LINK_BPS + RTT_S + 2.0
    assert estimate_ttft(profile, REQ, v, 0) == pytest.approx(expected, rel=1e-12)
    assert estimate_all(profile, REQ, v)[0] == pytest.approx(expected, rel=1e-12)


def test_remote_estimate_takes_the_longer_of_wait_and_backlog(profile: Profile) -> None:
    """delay = max(wait, backlog / capacity): a 3 s queue dominates a 2 s backlog (they are
    not added)."""
    v = view([3.0, 0.0])
    expected = remote_service(PROMPT, 0) + 3.0
    assert estimate_ttft(profile, REQ, v, 0) == pytest.approx(expected, rel=1e-12)


def test_remote_estimate_includes_the_rtt(profile: Profile) -> None:
    """With no backlog and no wait, the remote estimate is prefill + last-layer tail + RTT."""
    v = view([0.0, 0.0], backlog=0.0)
    expected = t_fast(PROMPT) + kv_bytes(PROMPT) / 32 / LINK_BPS + RTT_S
    assert estimate_ttft(profile, REQ, v, 0) == pytest.approx(expected, rel=1e-12)
    assert estimate_all(profile, REQ, v)[0] == pytest.approx(expected, rel=1e-12)


def test_remote_estimate_with_a_cached_prefix(profile: Profile) -> None:
    """A remote hit shortens the prefill and ships only the new tokens' KV."""
    hit = 2048
    v = view([0.0, 0.0], hits=[hit, 0])
    expected = remote_service(PROMPT - hit, hit) + 2.0
    assert estimate_ttft(profile, REQ, v, 0) == pytest.approx(expected, rel=1e-12)
    assert estimate_all(profile, REQ, v)[0] == pytest.approx(expected, rel=1e-12)


def test_local_estimate_ignores_the_link(profile: Profile) -> None:
    """A local instance: T_local(prompt) + its own wait; no link backlog, tail or RTT."""
    v = view([0.3, 0.5])
    expected = t_slow(PROMPT) + 0.5
    assert estimate_ttft(profile, REQ, v, 1) == pytest.approx(expected, rel=1e-12)
    assert estimate_all(profile, REQ, v)[1] == pytest.approx(expected, rel=1e-12)


def test_best_per_cluster_reports_the_hand_estimates(profile: Profile) -> None:
    """Routers' per-cluster choice carries the same estimates (backlog and RTT included)."""
    v = view([0.3, 0.5])
    remote = remote_service(PROMPT, 0) + 2.0
    local = t_slow(PROMPT) + 0.5
    bl, tl, br, tr = best_per_cluster(profile, REQ, v)
    assert (bl, br) == (1, 0)
    assert tl == pytest.approx(local, rel=1e-12)
    assert tr == pytest.approx(remote, rel=1e-12)
    assert best_per_cluster_with_copy(profile, REQ, v)[:4] == (bl, tl, br, tr)


def test_cross_link_copy_time(profile: Profile) -> None:
    """copy_s across the link = (KV bytes of the prefix + backlog) / capacity + RTT; over RDMA
    within a cluster = KV bytes / RDMA rate."""
    tokens = 4096
    v = view([0.0, 0.0])
    across = (kv_bytes(tokens) + BACKLOG_BYTES) / LINK_BPS + RTT_S
    assert copy_s(profile, v, 0, 1, tokens) == pytest.approx(across, rel=1e-12)
    two_local = ClusterView(prefill_cluster=[0, 0], prefill_available=[True, True],
                            prefill_wait_s=[0.0, 0.0], prefix_hit_tokens=[0, 0],
                            link=v.link, uplink=v.uplink)
    assert copy_s(profile, two_local, 0, 1, tokens) == pytest.approx(
        kv_bytes(tokens) / (200e9 / 8), rel=1e-12)
