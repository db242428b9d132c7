"""The one TTFT estimate every router and the featurizer share.

For an available prefill instance ``i`` holding ``hit_i`` cached tokens of the request::

    est_ttft[i] = service_i + delay_i
    service_i   = T_i(prompt - hit_i, hit_i)                       (local)
                = T_i(prompt - hit_i, hit_i) + KV last-layer tail + RTT   (remote)
    delay_i     = wait_s[i]                                        (local)
                = max(wait_s[i], link backlog / capacity)          (remote: the KV stream
                  cannot overtake the bytes already queued on the link)

With a prefix copy (Mooncake's Conductor): where the instance ``h`` holding the most of the
request's prefix holds more than ``i`` does, ``i`` may first copy that prefix from ``h``::

    est_ttft_copy[i] = copy_s(h -> i) + est_ttft[i] with hit_i = hit_h
    copy_s           = KV bytes(hit_h) / RDMA rate                 (same cluster)
                     = (KV bytes(hit_h) + link backlog) / link capacity + RTT  (across the link)

and the copy is taken when it lowers the estimate.
"""

from __future__ import annotations

import math

from prfaas_gym.contract import Cluster, ClusterView, LinkView, RequestInfo
from prfaas_gym.profile import Profile


def _link_bytes_per_s(link: LinkView) -> float:
    return max(link.capacity_gbps, 1e-9) * 1e9 / 8


def _service_s(profile: Profile, remote: bool, prompt: int, hit: int, link: LinkView,
               cap: float) -> float:
    """The queue-independent part of the estimate (see the module docstring)."""
    new = prompt - hit
    if not remote:
        return profile.local_hw.prefill.time_with_cache(new, hit)
    model = profile.model
    return profile.prfaas_hw.prefill.time_with_cache(new, hit) \
        + model.kv_bytes(new) / model.layers / cap + link.rtt_s


def _delay_s(remote: bool, wait: float, backlog_s: float) -> float:
    """``delay_i`` of the module docstring: the instance's wait, and for a remote one no less
    than the link backlog (its KV stream cannot overtake the bytes already queued)."""
    return backlog_s if remote and backlog_s > wait else wait


def estimate_ttft(profile: Profile, request: RequestInfo, view: ClusterView, i: int,
                  hit: int | None = None) -> float:
    """Estimated TTFT of ``request`` on prefill instance ``i`` with ``hit`` cached tokens
    (default: the instance's own usable prefix hit)."""
    h = view.prefix_hit_tokens[i] if hit is None else hit
    remote = view.prefill_cluster[i] == 1  # Cluster.REMOTE
    link = view.link
    cap = _link_bytes_per_s(link)
    delay = _delay_s(remote, view.prefill_wait_s[i], link.bytes_queued / cap)
    return _service_s(profile, remote, request.prompt_tokens, h, link, cap) + delay


def estimate_all(profile: Profile, request: RequestInfo, view: ClusterView) -> list[float]:
    """:func:`estimate_ttft` for every prefill instance (``inf`` where unavailable), computing
    the no-hit service time once per cluster (most instances hold none of the prefix)."""
    prompt = request.prompt_tokens
    hits = view.prefix_hit_tokens
    waits = view.prefill_wait_s
    avail = view.prefill_available
    link = view.link
    cap = _link_bytes_per_s(link)
    backlog = link.bytes_queued / cap
    cold = [-1.0, -1.0]  # [local, remote] service time without a hit; -1: not computed yet
    out = []
    for i, c in enumerate(view.prefill_cluster):
        if not avail[i]:
            out.append(math.inf)
            continue
        h = hits[i]
        remote = c == 1
        if h:
            base = _service_s(profile, remote, prompt, h, link, cap)
        else:
            base = cold[c]
            if base < 0.0:
                base = cold[c] = _service_s(profile, remote, prompt, 0, link, cap)
        out.append(base + _delay_s(remote, waits[i], backlog))
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


def copy_s(profile: Profile, view: ClusterView, holder: int, dst: int, tokens: int) -> float:
    """Estimated time to copy ``tokens`` of cached prefix from instance ``holder`` to ``dst``
    (see the module docstring)."""
    nbytes = profile.model.kv_bytes(tokens)
    src_cluster = view.prefill_cluster[holder]
    if src_cluster == view.prefill_cluster[dst]:
        return nbytes / (profile.deployment.rdma_gbps * 1e9 / 8)
    lv = view.link if src_cluster == 1 else view.uplink  # remote -> local rides the link
    return (nbytes + lv.bytes_queued) / _link_bytes_per_s(lv) + lv.rtt_s


def best_per_cluster_with_copy(profile: Profile, request: RequestInfo, view: ClusterView
                               ) -> tuple[int, float, int, float, int, int]:
    """:func:`best_per_cluster` where an instance may first copy the prefix from its best
    holder (the first instance with the most cached tokens of the request) when that lowers
    its estimate: (best local, its est. TTFT, best remote, its est. TTFT, copy source for the
    local choice, for the remote choice); a copy source is -1 where no copy pays."""
    hits = view.prefix_hit_tokens
    holder, top = -1, 0
    for i, h in enumerate(hits):
        if h > top:
            holder, top = i, h
    avail = view.prefill_available
    waits = view.prefill_wait_s
    prompt = request.prompt_tokens
    link = view.link
    cap = _link_bytes_per_s(link)
    backlog = link.bytes_queued / cap
    est = estimate_all(profile, request, view)
    # per cluster [local, remote], computed on first use (-1: not yet): the service time
    # with the holder's hit, and the copy from the holder
    warm = [-1.0, -1.0]
    move = [-1.0, -1.0]
    bl, tl, br, tr, cl, cr = -1, math.inf, -1, math.inf, -1, -1
    for i, c in enumerate(view.prefill_cluster):
        if not avail[i]:
            continue
        remote = c == 1
        t = est[i]
        src = -1
        if top > hits[i]:  # the holder has more of the prefix than i: a copy may pay
            base = warm[c]
            if base < 0.0:
                base = warm[c] = _service_s(profile, remote, prompt, top, link, cap)
                move[c] = copy_s(profile, view, holder, i, top)
            tc = move[c] + (base + _delay_s(remote, waits[i], backlog))
            if tc < t:
                t, src = tc, holder
        if remote:
            if t < tr:
                br, tr, cr = i, t, src
        elif t < tl:
            bl, tl, cl = i, t, src
    return bl, tl, br, tr, cl, cr


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
