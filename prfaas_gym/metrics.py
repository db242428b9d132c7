"""The result schema, one definition everywhere (simulator and runtime).

TTFT = first output token - arrival; TPOT = (last token - first token) / (output - 1)
(0 for one-token outputs). A request meets its SLO when TTFT <= slo.ttft_s and
TPOT <= slo.tpot_s. Goodput = SLO-meeting completions per second of the run's span
(first arrival to the later of the last arrival and the last completion); throughput likewise
for all completions. ``slo_attainment`` = SLO-meeting completions / all requests (rejected
and failed requests count as misses). ``link_utilization`` = bytes the remote-to-local link
sent / bytes its bandwidth trace could carry, both over the span (or, when requests failed
or a drain cut short by ``max_drain_s`` left some in flight, up to the link's last simulated
instant, which may be later); it is at most 1. ``prefix_hit_rate`` = cached prefix tokens
reused / prompt tokens, both of the requests that reached a prefill queue (a rejected
request looks nothing up). ``offload_fraction`` = offloaded / routed requests, 0 when none
was routed. ``link`` names the bandwidth trace the run used, its mean capacity over one
period and the RTT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prfaas_gym.simulator import Simulator

RESULT_KEYS = ("requests", "completed", "rejected", "failed", "in_flight", "goodput_rps",
               "throughput_rps", "ttft_s", "tpot_s", "slo_attainment", "offload_fraction",
               "link_utilization", "sim_requests_per_s")


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON can hold it: a NaN or infinite float (a metric no request
    defines) becomes None, numpy scalars and arrays become Python numbers and lists, tuples
    become lists. Every results file is written through it (with ``allow_nan=False``)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def distribution(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """mean, p50, p90, p99 (None for an empty sample); the percentiles are numpy's default
    (linear) ones, bit for bit."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    s = np.sort(a).tolist()
    if math.isfinite(s[0]) and math.isfinite(s[-1]):
        p50, p90, p99 = (_linear_percentile(s, q) for q in _QUANTILES)
    else:  # nan sorts last; numpy's nan/inf rules apply
        p50, p90, p99 = np.percentile(a, [50, 90, 99]).tolist()
    return {"mean": float(a.mean()), "p50": p50, "p90": p90, "p99": p99}


_QUANTILES = (0.5, 0.9, 0.99)  # np.percentile's q / 100


def _linear_percentile(s: list[float], q: float) -> float:
    """``np.percentile(s, 100 * q)`` of an ascending finite list, with numpy's arithmetic
    (``np.percentile`` itself costs ~40 us on a small sample; the env summarises every
    episode)."""
    n = len(s)
    vi = (n - 1) * q
    if vi >= n - 1:
        return s[-1]
    lo = math.floor(vi)
    t = vi - lo
    a, b = s[lo], s[lo + 1]
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def latencies(completed: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, TPOT) arrays of completed jobs."""
    n = len(completed)
    ttft = np.empty(n)
    tpot = np.empty(n)
    for k, j in enumerate(completed):
        ttft[k] = j.t_first_token - j.request.arrival_s
        tpot[k] = (j.t_done - j.t_first_token) / (j.output_tokens - 1) if j.output_tokens > 1 else 0.0
    return ttft, tpot


def summarize(sim: Simulator, wall_s: float | None = None) -> dict[str, Any]:
    """The result dict of a finished (or stopped) simulation."""
    c = sim.counts()
    slo = sim.profile.slo
    ttft, tpot = latencies(sim.completed)
    met = int(np.count_nonzero((ttft <= slo.ttft_s) & (tpot <= slo.tpot_s)))
    reqs = sim.workload.requests
    t0 = reqs[0].arrival_s if reqs else 0.0
    t_last_arr = sim.jobs[-1].request.arrival_s if sim.jobs else t0
    t_last_done = max((j.t_done for j in sim.completed), default=t0)
    span = max(t_last_arr, t_last_done) - t0
    routed = c["arrived"] - c["rejected"]
    link = sim.links[0]
    link.advance(max(link.t, t0 + span))
    # Every byte of a completed request crossed before it completed; a request still in
    # flight when the drain was cut, or one that failed when its KV landed, may have sent
    # bytes after the span, up to the link's clock.
    end = link.t if c["in_flight"] or c["failed"] else t0 + span
    deliverable = sim.bandwidth.integral(t0, end) if end > t0 else 0.0
    out_tokens = sum(j.output_tokens for j in sim.completed)
    result: dict[str, Any] = {
        "requests": c["arrived"],
        "completed": c["completed"],
        "rejected": c["rejected"],
        "failed": c["failed"],
        "in_flight": c["in_flight"],
        "slo_met": met,
        "goodput_rps": met / span if span > 0 else 0.0,
        "throughput_rps": c["completed"] / span if span > 0 else 0.0,
        "output_tokens_per_s": out_tokens / span if span > 0 else 0.0,
        "ttft_s": distribution(ttft),
        "tpot_s": distribution(tpot),
        "slo_attainment": met / c["arrived"] if c["arrived"] else math.nan,
        "offload_fraction": sim.n_offloaded / routed if routed else 0.0,
        "link_utilization": link.bytes_sent / deliverable if deliverable > 0 else 0.0,
        "link_bytes": link.bytes_sent,
        "link": {"trace": sim.bandwidth.name, "mean_gbps": sim.bandwidth.mean_gbps,
                 "rtt_s": link.rtt_s},
        "kv_link_bytes": sim.kv_link_bytes,
        "cache_copy_bytes": {"remote_to_local": sim.copy_bytes[0], "local_to_remote": sim.copy_bytes[1]},
        "prefix_hit_rate": sim.hit_tokens_total / sim.prompt_tokens_total if sim.prompt_tokens_total else 0.0,
        "role_switches": sim.n_role_switches,
        # landed after the last arrival: they can shorten the drain, not serve an arrival sooner
        "role_switches_in_drain": sum(1 for t in sim.role_switch_times if t > t_last_arr),
        "role_switch_times_s": list(sim.role_switch_times),  # simulated clock, as timeseries
        "span_s": span,
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "sim_requests_per_s": c["arrived"] / wall_s if wall_s else None,
        "wall_s": wall_s,
    }
    return result
