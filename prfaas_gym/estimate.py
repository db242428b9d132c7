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


def estimate_all(profile: Profile, request: RequestInfo, view: ClusterView) -> list[float]:
    """:func:`estimate_ttft` for every prefill instance (``inf`` where unavailable), computing
    each distinct (cluster, hit) prefill time once."""
    prompt = request.prompt_tokens
    hits = view.prefix_hit_tokens
    waits = view.prefill_wait_s
    avail = view.prefill_available
    link = view.link
    cap = max(link.capacity_gbps, 1e-9) * 1e9 / 8
    backlog = link.bytes_queued / cap
    model = profile.model
    remote_pf = profile.prfaas_hw.prefill
    local_pf = profile.local_hw.prefill
    memo: dict[tuple[int, int], float] = {}
    out = []
    for i, c in enumerate(view.prefill_cluster):
        if not avail[i]:
            out.append(math.inf)
            continue
        h = hits[i]
        key = (c, h)  # most instances share (cluster, 0): one prefill-time evaluation each
        base = memo.get(key)
        if base is None:
            new = prompt - h
            if c == 1:  # Cluster.REMOTE
                base = remote_pf.time_with_cache(new, h) + model.kv_bytes(new) / model.layers / cap \
                    + link.rtt_s
            else:
                base = local_pf.time_with_cache(new, h)
            memo[key] = base
        w = waits[i]
        if c == 1 and backlog > w:
            out.append(base + backlog)
        else:
            out.append(base + w)
    return out


def best_instance(profile: Profile, request: RequestInfo, view: ClusterView,
                  cluster: Cluster | None) -> tuple[int, float]:
    """(instance, est. TTFT) minimising the estimate among available instances of
    ``cluster`` (any cluster if None); (-1, inf) when there is none."""
    best, best_t = -1, math.inf
    est = estimate_all(profile, request, view)
    for i, c in enumerate(view.prefill_cluster):
        t = est[i]
        if t < best_t and (cluster is None or c == cluster):
            best, best_t = i, t
    return best, best_t


def best_per_cluster(profile: Profile, request: RequestInfo,
                     view: ClusterView) -> tuple[int, float, int, float]:
    """(best local instance, its est. TTFT, best remote instance, its est. TTFT); -1 / inf
    where a cluster has no available instance."""
    bl, tl, br, tr = -1, math.inf, -1, math.inf
    est = estimate_all(profile, request, view)
    for i, c in enumerate(view.prefill_cluster):
        t = est[i]
        if c == 1:
            if t < tr:
                br, tr = i, t
        elif t < tl:
            bl, tl = i, t
    return bl, tl, br, tr
