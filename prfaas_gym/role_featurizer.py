"""The role featurizer of ``PrfaasRoles-v0``: ``ClusterView -> float32 observation``.

A role decision concerns the deployment, not one request, so every feature is a cluster
aggregate of the view a tick sees (no request in it). Normalisation reuses
:class:`~prfaas_gym.featurizer.FeatureScales` (times / TTFT SLO, TPOT / TPOT SLO, tokens /
``token_scale``, rates / ``lambda_ref``); every feature is clipped to ``[-CLIP, CLIP]``.
:func:`role_spec_hash` fingerprints the list so a role checkpoint trained with another spec
is refused.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from prfaas_gym.contract import ClusterView
from prfaas_gym.featurizer import CLIP, FeatureScales, hash_of, spec_of

ROLE_FEATURIZER_VERSION: Final = 1

#: (name, meaning and unit before normalisation, normalisation)
ROLE_FEATURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("prefill_nodes", "local nodes available in the prefill role / local nodes", "-"),
    ("decode_nodes", "local nodes available in the decode role / local nodes", "-"),
    ("switching_nodes", "local nodes draining or switching / local nodes", "-"),
    ("wait_local_mean", "mean est. wait of available local prefill instances (s)", "/ slo_ttft"),
    ("wait_remote_mean", "mean est. wait of available PrfaaS instances (s)", "/ slo_ttft"),
    ("queue_local", "queued prefill tokens, local, per available instance", "/ token_scale"),
    ("queue_remote", "queued prefill tokens, PrfaaS, per available instance", "/ token_scale"),
    ("link_capacity", "link capacity now (Gbps)", "/ nominal capacity"),
    ("link_util", "measured link throughput / capacity", "-"),
    ("link_backlog", "KV bytes produced but not yet sent / capacity (s)", "/ slo_ttft"),
    ("link_flows", "transfers in flight on the link", "/ 16"),
    ("decode_util", "decode batch occupancy (running / max batch), mean", "-"),
    ("decode_waiting", "requests waiting for a decode slot per decode instance", "/ max batch"),
    ("decode_kv", "decode KV memory in use / capacity, mean", "-"),
    ("arrival_rate", "recent arrival rate (req/s)", "/ lambda_ref"),
    ("recent_offload", "recent fraction of requests sent to PrfaaS", "-"),
    ("recent_ttft_p90", "P90 TTFT of recent requests (s)", "/ slo_ttft"),
    ("recent_tpot", "mean TPOT of recent requests (s)", "/ slo_tpot"),
    ("recent_slo", "SLO attainment of recent completions", "-"),
)
N_ROLE_FEATURES: Final = len(ROLE_FEATURES)
_MISS: Final = 3.0  # "no available instance" stands in as 3 SLOs of wait


def role_spec() -> dict:
    """The role observation spec as a JSON-able dict (names, order, units, normalisation)."""
    return spec_of(ROLE_FEATURIZER_VERSION, ROLE_FEATURES)


def role_spec_hash() -> str:
    """sha256 of :func:`role_spec`, 16 hex digits."""
    return hash_of(role_spec())


class RoleFeaturizer:
    """Builds role observations with the normalisation constants ``scales``."""

    def __init__(self, scales: FeatureScales) -> None:
        self.scales = scales

    def __call__(self, view: ClusterView) -> np.ndarray:
        s = self.scales
        slo = s.slo_ttft_s
        R, nodes = view.n_remote, view.n_local_nodes
        n_nodes = nodes or 1

        def cluster(indices: range) -> tuple[float, float, int]:
            avail = [i for i in indices if view.prefill_available[i]]
            if not avail:
                return _MISS, 0.0, 0
            wait = sum(view.prefill_wait_s[i] for i in avail) / len(avail) / slo
            queued = sum(view.prefill_queued_tokens[i] for i in avail) / len(avail)
            return wait, queued / s.token_scale, len(avail)

        wait_l, queue_l, n_prefill = cluster(range(R, R + nodes))
        wait_r, queue_r, _ = cluster(range(R))
        dec = [j for j in range(nodes) if view.decode_available[j]]
        nd = len(dec) or 1
        link = view.link
        cap_bps = max(link.capacity_gbps, 1e-9) * 1e9 / 8
        x = [
            n_prefill / n_nodes,
            len(dec) / n_nodes,
            (nodes - n_prefill - len(dec)) / n_nodes,
            wait_l,
            wait_r,
            queue_l,
            queue_r,
            link.capacity_gbps / s.link_capacity_gbps,
            link.utilization,
            link.bytes_queued / cap_bps / slo,
            link.transfers_in_flight / 16.0,
            sum(view.decode_running[j] / view.decode_max_batch[j] for j in dec) / nd,
            sum(view.decode_waiting[j] / view.decode_max_batch[j] for j in dec) / nd,
            sum(view.decode_kv_used_bytes[j] / view.decode_kv_capacity_bytes[j]
                for j in dec) / nd,
            view.arrival_rate / s.lambda_ref,
            view.offload_fraction,
            view.ttft_p90_s / slo,
            view.tpot_mean_s / s.slo_tpot_s,
            view.slo_attainment,
        ]
        out = np.nan_to_num(np.array(x, dtype=np.float32), nan=0.0, posinf=CLIP, neginf=-CLIP)
        return np.clip(out, -CLIP, CLIP, out=out)
