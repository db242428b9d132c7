"""The versioned featurizer: ``(RequestInfo, ClusterView) -> float32 observation``.

The observation does not depend on how many instances a deployment has (per-cluster
aggregates and the best instance of each cluster, not one slot per instance), so a policy
trained on one cluster size can route another. Each feature is listed in
:data:`FEATURES` with its unit and normalisation; :func:`spec_hash` fingerprints the list, the
version and the normalisation constants so a checkpoint trained with another spec is refused.

Normalisation constants come from the deployment (:class:`FeatureScales`): times are divided
by the TTFT SLO, TPOT by the TPOT SLO, token counts by ``token_scale``, request rates by the
planner's ``lambda_ref``. Every feature is clipped to ``[-CLIP, CLIP]``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
from mypy_extensions import mypyc_attr

from prfaas_gym._compiled import object_state, pickle_by_constructor, restore_state
from prfaas_gym.contract import ClusterView, RequestInfo
from prfaas_gym.estimate import best_per_cluster_with_copy
from prfaas_gym.profile import Profile

# v2: link backlog = produced-but-unsent bytes; decode KV = in use
# v3: the best instance's est. TTFT counts a prefix copy from the best holder
FEATURIZER_VERSION: Final = 3
CLIP: Final = 10.0
_FLOAT32: Final = np.dtype(np.float32)  # a dtype object: np.float32 is re-resolved per call

#: (name, meaning and unit before normalisation, normalisation)
FEATURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("log_prompt", "ln(1 + prompt tokens)", "/ ln(1 + token_scale * 4)"),
    ("local_hit_frac", "best usable cached prefix in the local cluster / prompt", "-"),
    ("remote_hit_frac", "best usable cached prefix in the PrfaaS cluster / prompt", "-"),
    ("incr_local", "prompt - local hit (tokens)", "/ token_scale"),
    ("incr_remote", "prompt - remote hit (tokens)", "/ token_scale"),
    ("ttft_local", "est. TTFT on the best local instance, with a prefix copy where it pays (s)",
     "/ slo_ttft"),
    ("ttft_remote", "est. TTFT on the best PrfaaS instance, with a prefix copy where it pays (s)",
     "/ slo_ttft"),
    ("prefill_local", "prefill compute time on the local hardware (s)", "/ slo_ttft"),
    ("prefill_remote", "prefill compute time on the PrfaaS hardware (s)", "/ slo_ttft"),
    ("wait_local_mean", "mean est. wait of available local prefill instances (s)", "/ slo_ttft"),
    ("wait_local_min", "min est. wait of available local prefill instances (s)", "/ slo_ttft"),
    ("wait_remote_mean", "mean est. wait of PrfaaS instances (s)", "/ slo_ttft"),
    ("wait_remote_min", "min est. wait of PrfaaS instances (s)", "/ slo_ttft"),
    ("queue_local", "queued prefill tokens, local, per available instance", "/ token_scale"),
    ("queue_remote", "queued prefill tokens, PrfaaS, per instance", "/ token_scale"),
    ("link_capacity", "link capacity now (Gbps)", "/ nominal capacity"),
    ("link_util", "measured link throughput / capacity", "-"),
    ("link_backlog", "KV bytes produced but not yet sent / capacity (s)", "/ slo_ttft"),
    ("link_flows", "transfers in flight on the link", "/ 16"),
    ("kv_ship_s", "this request's KV bytes / link capacity (s)", "/ slo_ttft"),
    ("decode_util", "decode batch occupancy (running / max batch), mean", "-"),
    ("decode_waiting", "requests waiting for a decode slot per decode instance", "/ max batch"),
    ("decode_kv", "decode KV memory in use (prompt + generated) / capacity, mean", "-"),
    ("prefill_role_frac", "local nodes in the prefill role / local nodes", "-"),
    ("arrival_rate", "recent arrival rate (req/s)", "/ lambda_ref"),
    ("recent_offload", "recent fraction of requests sent to PrfaaS", "-"),
    ("recent_ttft_p90", "P90 TTFT of recent requests (s)", "/ slo_ttft"),
    ("recent_tpot", "mean TPOT of recent requests (s)", "/ slo_tpot"),
    ("recent_slo", "SLO attainment of recent completions", "-"),
    ("has_remote", "1 if a PrfaaS instance is available", "-"),
    ("has_local", "1 if a local prefill instance is available", "-"),
    ("threshold_ratio", "ln(prompt - best hit) - ln(threshold_ref)", "-"),
)
N_FEATURES: Final = len(FEATURES)


@dataclass(frozen=True, slots=True)
class FeatureScales:
    """Normalisation constants, recorded with every checkpoint."""

    slo_ttft_s: float
    slo_tpot_s: float
    token_scale: float = 32768.0
    link_capacity_gbps: float = 100.0
    lambda_ref: float = 1.0
    threshold_ref: float = 19642.0

    @staticmethod
    def for_profile(profile: Profile, lambda_ref: float = 1.0,
                    threshold_ref: float = 19642.0) -> FeatureScales:
        return FeatureScales(profile.slo.ttft_s, profile.slo.tpot_s, 32768.0,
                             profile.link.capacity_gbps, max(lambda_ref, 1e-6),
                             max(threshold_ref, 1.0))


def spec_of(version: int, features: tuple[tuple[str, str, str], ...]) -> dict:
    """An observation spec as a JSON-able dict (names, order, units, normalisation)."""
    return {"version": version, "clip": CLIP,
            "features": [{"index": i, "name": n, "unit": u, "norm": z}
                         for i, (n, u, z) in enumerate(features)]}


def hash_of(spec_dict: dict) -> str:
    """sha256 of a spec (feature list, order, version, clip), 16 hex digits."""
    return hashlib.sha256(json.dumps(spec_dict, sort_keys=True).encode()).hexdigest()[:16]


def spec() -> dict:
    """This featurizer's observation spec (:func:`spec_of` its version and features)."""
    return spec_of(FEATURIZER_VERSION, FEATURES)


def spec_hash() -> str:
    """sha256 of :func:`spec`."""
    return hash_of(spec())


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # picklable when compiled
class Featurizer:
    """Builds observations for one deployment profile."""

    def __init__(self, profile: Profile, scales: FeatureScales) -> None:
        self.profile = profile
        self.scales = scales
        self._ln_norm = math.log1p(scales.token_scale * 4)
        self._ln_thr = math.log(scales.threshold_ref)

    def __getstate__(self) -> dict[str, object]:  # the same in compiled and pure runs
        return object_state(self)

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_state(self, state)

    def spec_record(self) -> dict:
        return {**spec(), "hash": spec_hash(), "scales": asdict(self.scales)}

    def best(self, request: RequestInfo, view: ClusterView
             ) -> tuple[int, float, int, float, int, int]:
        """The action space's choice per cluster (:data:`prfaas_gym.actions.Best`)."""
        return best_per_cluster_with_copy(self.profile, request, view)

    def __call__(self, request: RequestInfo, view: ClusterView,
                 best: tuple[int, float, int, float, int, int] | None = None) -> np.ndarray:
        s = self.scales
        p = self.profile
        bl, tl, br, tr, _, _ = best if best is not None else self.best(request, view)
        prompt = request.prompt_tokens
        hits = view.prefix_hit_tokens
        av = view.prefill_available
        waits = view.prefill_wait_s
        qtok = view.prefill_queued_tokens
        lh = rh = 0
        lw_sum = rw_sum = lq = rq = 0.0
        lw_min = rw_min = math.inf
        nl = nr = 0
        # two explicit branches: list-indexed per-cluster accumulators cost ~2 us more here
        for i, c in enumerate(view.prefill_cluster):
            h = hits[i]
            if c:  # remote
                if h > rh:
                    rh = h
                if av[i]:
                    w = waits[i]
                    nr += 1
                    rw_sum += w
                    rq += qtok[i]
                    if w < rw_min:
                        rw_min = w
            else:
                if h > lh:
                    lh = h
                if av[i]:
                    w = waits[i]
                    nl += 1
                    lw_sum += w
                    lq += qtok[i]
                    if w < lw_min:
                        lw_min = w
        slo = s.slo_ttft_s
        link = view.link
        cap_bps = max(link.capacity_gbps, 1e-9) * 1e9 / 8
        d_util = d_wait = d_kv = 0.0
        nd = 0
        running, waiting = view.decode_running, view.decode_waiting
        kv_used, kv_cap, mb = view.decode_kv_used_bytes, view.decode_kv_capacity_bytes, \
            view.decode_max_batch
        for j, a in enumerate(view.decode_available):
            if a:
                nd += 1
                d_util += running[j] / mb[j]
                d_wait += waiting[j] / mb[j]
                d_kv += kv_used[j] / kv_cap[j]
        nd = nd or 1
        n_nodes = len(view.decode_available)
        incr_best = max(prompt - max(lh, rh), 1)
        miss = 3.0  # "unavailable" stands in as 3 SLOs away
        tok = s.token_scale
        x: list[float] = [
            math.log1p(prompt) / self._ln_norm,
            lh / prompt,
            rh / prompt,
            (prompt - lh) / tok,
            (prompt - rh) / tok,
            tl / slo if bl >= 0 else miss,
            tr / slo if br >= 0 else miss,
            p.local_hw.prefill.time_with_cache(prompt - lh, lh) / slo,
            p.prfaas_hw.prefill.time_with_cache(prompt - rh, rh) / slo,
            lw_sum / nl / slo if nl else miss,
            lw_min / slo if nl else miss,
            rw_sum / nr / slo if nr else miss,
            rw_min / slo if nr else miss,
            lq / (nl or 1) / tok,
            rq / (nr or 1) / tok,
            link.capacity_gbps / s.link_capacity_gbps,
            link.utilization,
            link.bytes_queued / cap_bps / slo,
            link.transfers_in_flight / 16.0,
            p.model.kv_bytes(prompt - rh) / cap_bps / slo,
            d_util / nd,
            d_wait / nd,
            d_kv / nd,
            sum(av[len(av) - n_nodes:]) / (n_nodes or 1),
            view.arrival_rate / s.lambda_ref,
            view.offload_fraction,
            view.ttft_p90_s / slo,
            view.tpot_mean_s / s.slo_tpot_s,
            view.slo_attainment,
            1.0 if br >= 0 else 0.0,
            1.0 if bl >= 0 else 0.0,
            math.log(incr_best) - self._ln_thr,
        ]
        # clip here, natively, before the float32 cast (the same result: rounding is monotone)
        for k in range(len(x)):
            v = x[k]
            if v > CLIP:
                x[k] = CLIP
            elif v < -CLIP:
                x[k] = -CLIP
        return np.fromiter(x, _FLOAT32, N_FEATURES)  # no shape discovery, unlike np.array


pickle_by_constructor(FeatureScales)
