"""Heuristic routers from the literature, all behind the same :class:`Policy` contract.

Every heuristic estimates, per available prefill instance ``i``, the TTFT a request would see
there from the (possibly stale) :class:`ClusterView` and the profile's cost model::

    est_ttft[i] = wait_s[i] + T_i(new_i, hit_i) + transfer_i
    new_i = prompt - hit_i,  transfer_i = KV tail + RTT + link backlog (remote only)

Decode instances are left to the executor's decode-side balancer (least loaded when the KV
arrives) unless a heuristic says otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from prfaas_gym.contract import (
    REJECT,
    Cluster,
    ClusterView,
    Decision,
    Placement,
    Policy,
    RequestInfo,
)
from prfaas_gym.estimate import (
    best_instance,
    best_per_cluster,
    best_per_cluster_with_copy,
    estimate_ttft,
)
from prfaas_gym.profile import Profile

__all__ = ["Conductor", "LeastLoaded", "LocalOnly", "PrfaasThreshold", "RandomRouter",
           "RemoteAll", "best_instance", "decision_for", "estimate_ttft"]


def decision_for(i: int, view: ClusterView, copy_from: int | None = None) -> Decision:
    if i < 0:
        return REJECT
    place = Placement.REMOTE if view.prefill_cluster[i] == Cluster.REMOTE else Placement.LOCAL
    return Decision(place, prefill_instance=i, copy_prefix_from=copy_from)


def route_to(profile: Profile, request: RequestInfo, view: ClusterView,
             cluster: Cluster) -> Decision:
    """The min-estimated-TTFT instance of ``cluster``, or of the other cluster if it has none."""
    bl, _, br, _ = best_per_cluster(profile, request, view)
    first, other = (br, bl) if cluster == Cluster.REMOTE else (bl, br)
    return decision_for(first if first >= 0 else other, view)


class LocalOnly(Policy):
    """Homogeneous PD: every request prefills in the local cluster (min estimated TTFT)."""

    name = "local-only"

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        return route_to(self.profile, request, view, Cluster.LOCAL)


class RemoteAll(Policy):
    """Naive heterogeneous: every request prefills in the PrfaaS cluster."""

    name = "remote-all"

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        return route_to(self.profile, request, view, Cluster.REMOTE)


class PrfaasThreshold(Policy):
    """PrfaaS with a static routing threshold: a request whose incremental prefill length in
    the local cluster (prompt minus the best usable cached prefix on a local instance) exceeds
    ``threshold_tokens`` goes remote, the rest local.
    The threshold comes from the planner (:func:`prfaas_gym.planner.best_threshold`) on the
    scenario's workload unless given."""

    name = "prfaas-threshold"

    def __init__(self, threshold_tokens: float = 19_642.0) -> None:
        self.threshold_tokens = float(threshold_tokens)

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        local_hit, _ = view.best_hits()
        incremental = request.prompt_tokens - local_hit
        cluster = Cluster.REMOTE if incremental > self.threshold_tokens else Cluster.LOCAL
        return route_to(self.profile, request, view, cluster)


class LeastLoaded(Policy):
    """Join the prefill instance with the fewest queued tokens, either cluster."""

    name = "least-loaded"

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        best, best_q = -1, math.inf
        for i, q in enumerate(view.prefill_queued_tokens):
            if view.prefill_available[i] and q < best_q:
                best, best_q = i, q
        return decision_for(best, view)


class RandomRouter(Policy):
    """Uniformly random available prefill instance, drawn from ``seed`` (``None``: seed 0,
    so a run without a seed is as reproducible as one with)."""

    name = "random"

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        super().reset(profile, seed)
        self.rng = np.random.default_rng(0 if seed is None else seed)

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        avail = [i for i, a in enumerate(view.prefill_available) if a]
        if not avail:
            return REJECT
        return decision_for(avail[int(self.rng.integers(len(avail)))], view)


class Conductor(Policy):
    """Mooncake's Conductor: per request, minimum estimated TTFT over every prefill instance,
    counting prefix reuse and, where a better prefix lives elsewhere, the transfer of the
    missing prefix from its best holder
    (:func:`~prfaas_gym.estimate.best_per_cluster_with_copy`). **Early rejection**: reject at
    arrival when the predicted TTFT exceeds the TTFT SLO, or when the predicted TPOT of the
    least-loaded decode instance (its step time with one more request) exceeds the TPOT SLO,
    so that no prefill is wasted on a request that would miss anyway.
    ``ttft_slack``: multiply the SLO by this before comparing (1.0 = reject exactly at it)."""

    name = "conductor"

    def __init__(self, ttft_slack: float = 1.0, tpot_slack: float = 1.0) -> None:
        self.ttft_slack = ttft_slack
        self.tpot_slack = tpot_slack

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        p = self.profile
        bl, tl, br, tr, cl, cr = best_per_cluster_with_copy(p, request, view)
        # the lower estimate; on a tie the lower instance index (the first minimum)
        if br >= 0 and (bl < 0 or tr < tl or (tr == tl and br < bl)):
            best, best_t, copy = br, tr, cr
        else:
            best, best_t, copy = bl, tl, cl
        if best < 0 or best_t > p.slo.ttft_s * self.ttft_slack:
            return REJECT
        if self._predicted_tpot(view, request) > p.slo.tpot_s * self.tpot_slack:
            return REJECT
        return decision_for(best, view, copy if copy >= 0 else None)

    def _predicted_tpot(self, view: ClusterView, request: RequestInfo) -> float:
        dec = self.profile.local_hw.decode
        best = math.inf
        for j, a in enumerate(view.decode_available):
            if not a:
                continue
            b = view.decode_running[j] + view.decode_waiting[j] + 1
            if b > view.decode_max_batch[j]:
                # it will wait for a slot; its TPOT is then a full batch's step time
                b = view.decode_max_batch[j]
            ctx = b * (request.prompt_tokens + 512)  # rough: similar requests, half-way through
            best = min(best, dec.step_s(b, ctx))
        return best
