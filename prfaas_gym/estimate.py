"""The one TTFT estimate every router and the featurizer share.

For an available prefill instance ``i``::

    est_ttft[i] = wait_s[i] + T_i(new_i, hit_i) + transfer_i
    new_i = prompt - hit_i,  transfer_i = KV last-layer tail + RTT + link backlog (remote only)
"""

from __future__ import annotations

import math

from prfaas_gym.contract import Cluster, ClusterView, RequestInfo
from prfaas_gym.profile import Profile


def estimate_ttft(profile: Profile, request: RequestInfo, view: ClusterView, i: int,
                  hit: int | None = None) -> float:
    """Estimated TTFT of ``request`` on prefill instance ``i`` with ``hit`` cached tokens
    (default: the instance's own usable prefix hit)."""
    h = view.prefix_hit_tokens[i] if hit is None else hit
    new = request.prompt_tokens - h
    remote = view.prefill_cluster[i] == Cluster.REMOTE
    hw = profile.prfaas_hw if remote else profile.local_hw
    t = view.prefill_wait_s[i] + hw.prefill.time_with_cache(new, h)
    if remote:
        link = view.link
        cap = max(link.capacity_gbps, 1e-9) * 1e9 / 8
        kv = profile.model.kv_bytes(new)
        backlog = link.bytes_queued / cap
        t += kv / profile.model.layers / cap + link.rtt_s + max(0.0, backlog - view.prefill_wait_s[i])
    return t


def best_instance(profile: Profile, request: RequestInfo, view: ClusterView,
                  cluster: Cluster | None) -> tuple[int, float]:
    """(instance, est. TTFT) minimising the estimate among available instances of
    ``cluster`` (any cluster if None); (-1, inf) when there is none."""
    best, best_t = -1, math.inf
    for i, c in enumerate(view.prefill_cluster):
        if not view.prefill_available[i] or (cluster is not None and c != cluster):
            continue
        t = estimate_ttft(profile, request, view, i)
        if t < best_t:
            best, best_t = i, t
    return best, best_t
