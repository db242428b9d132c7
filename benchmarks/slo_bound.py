"""An upper bound on the SLO attainment of *any* routing policy, and so on its goodput ratio
to the best heuristic: how far the learned-policy targets of issue 3 can be reached at all.

For the scenario's eval-split workloads (the held-out ones of ``heldout.py``, seeds 0..K-1)
it keeps three resources and relaxes everything else. A request meets its TTFT SLO only if
its whole prefill runs inside ``[arrival, arrival + SLO]``, and, when the prefill is remote,
its KV crosses the link inside that interval too. So in a time window ``[a, b]`` the
requests arriving in ``[a, b - SLO]`` that meet it fit into the window's remote prefill
time (PrfaaS instances x length), link bytes (the bandwidth trace's integral) and local
prefill time. Each request is charged its least possible prefill: with the longest prefix
any earlier request could have left cached (an unbounded cache, copies free, the
usable-block rule applied). The most requests that fit is bounded by the dual of that
three-constraint linear program (any non-negative prices give a bound; the script takes
the best of a grid), and the rest must miss. Windows of one partition of time are
disjoint, so their forced misses add up; the bound takes the best of several window
lengths and offsets. Work already queued at a window's start, decode, copies, RTT and
queueing order are ignored, each of which only loosens the bound; the deployment is the
scenario's (its local prefill/decode split is fixed, as for every policy the env trains).

The goodput bound divides the bounded SLO-meeting count by the shortest possible span
(first to last arrival) and compares it, per seed, with the conductor's measured goodput.
The script also splits the TTFT of the conductor's TTFT misses into its parts (queueing,
prefill, KV still in transit after the prefill, waiting to join a decode batch), and counts
them by where they prefilled and, for remote ones, whether the link fell under half its
capacity at the decision while their KV crossed: where the time goes when capacity is not
what binds.

    python benchmarks/slo_bound.py --scenario bursty-fluctuating --seeds 5
    python benchmarks/slo_bound.py --scenario mooncake-conversation --seeds 5 --requests 1000
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from agents.compare import add_eval_arguments, ci95, fmt_ci, given_sources, run_policy
from agents.heuristics import Conductor
from prfaas_gym.bandwidth import gbps_to_bytes_per_s
from prfaas_gym.cli import run_script, scenario_from_args
from prfaas_gym.contract import Placement
from prfaas_gym.request import Workload
from prfaas_gym.scenario import Scenario
from prfaas_gym.simulator import Job, Simulator

WINDOWS_S = (11.0, 12.0, 14.0, 17.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
OFFSETS = 4  # offsets per window length, evenly spaced over one window
_GRID = np.concatenate([[0.0], np.geomspace(0.05, 20.0, 10)])  # prices x 1 / mean demand


def max_cached_tokens(w: Workload, interval_blocks: int) -> np.ndarray:
    """Per request, the longest usable prefix an earlier request could have left cached."""
    seen: set[int] = set()
    bs = w.block_size
    out = np.zeros(len(w.requests))
    for k, r in enumerate(w.requests):
        m = 0
        for h in r.block_hashes:
            if h not in seen:
                break
            m += 1
        m = min(m, (r.prompt_tokens - 1) // bs)
        out[k] = (m - m % interval_blocks) * bs if m > 0 else 0
        seen.update(r.block_hashes)
    return out


def fitting_bound(remote_s: np.ndarray, link_b: np.ndarray, local_s: np.ndarray,
                  caps: tuple[float, float, float]) -> float:
    """Upper bound on how many requests fit, each either remote (remote prefill seconds and
    link bytes) or local (local prefill seconds), under the three capacities: the LP dual
    ``sum(price * cap) + sum(max(0, 1 - min(remote price, local price)))`` minimised over
    a grid of prices (every price vector gives a valid bound)."""
    n = len(remote_s)
    best = float(n)
    cr, cl, cb = caps
    gr = _GRID / max(remote_s.mean(), 1e-12)
    gl = _GRID / max(link_b.mean(), 1e-12)
    gb = _GRID / max(local_s.mean(), 1e-12)
    # [grid_r, grid_l, request]: the remote price of each request
    rem = gr[:, None, None] * remote_s + gl[None, :, None] * link_b
    for mb in gb:
        loc = mb * local_s
        slack = np.maximum(0.0, 1.0 - np.minimum(rem, loc)).sum(axis=-1)
        total = gr[:, None] * cr + gl[None, :] * cl + mb * cb + slack
        best = min(best, float(total.min()))
    return best


def forced_misses(arrival: np.ndarray, remote_s: np.ndarray, link_b: np.ndarray,
                  local_s: np.ndarray, n_remote: int, n_local: int, link_bytes,
                  slo: float, length: float, offset: float) -> int:
    """Requests that must miss the TTFT SLO in one partition of time into windows."""
    t0 = arrival.min() - offset
    idx = np.floor((arrival - t0) / length).astype(np.int64)
    misses = 0
    for win in np.unique(idx):
        a = t0 + win * length
        b = a + length
        sel = (idx == win) & (arrival <= b - slo)
        k = int(sel.sum())
        if not k:
            continue
        caps = (n_remote * length, link_bytes(a, b), n_local * length)
        fit = fitting_bound(remote_s[sel], link_b[sel], local_s[sel], caps)
        misses += max(0, k - int(np.floor(fit + 1e-9)))
    return misses


def bound(sc: Scenario, seed: int, n: int | None) -> tuple[float, float, int]:
    """(attainment bound, goodput bound in req/s, requests) for one eval-split workload.
    The goodput bound is NaN where the requests all arrive at one instant: the shortest
    span is then 0, and no finite bound follows."""
    w = sc.workload(seed, n=n, split="eval")
    bw = sc.bandwidth(seed, "eval")
    p, dep = sc.profile, sc.profile.deployment
    arrival = np.array([r.arrival_s for r in w.requests])
    prompt = np.array([r.prompt_tokens for r in w.requests], dtype=float)
    hit = max_cached_tokens(w, p.model.snapshot_interval_blocks)
    new = prompt - hit
    remote = np.array([p.prfaas_hw.prefill.time_with_cache(x, h) for x, h in zip(new, hit)])
    local = np.array([p.local_hw.prefill.time_with_cache(x, h) for x, h in zip(new, hit)])
    link_b = np.array([p.model.kv_bytes(x) for x in new])
    slo = p.slo.ttft_s
    best = min(forced_misses(arrival, remote, link_b, local, dep.n_prfaas, dep.n_prefill,
                             bw.integral, slo, L, L * k / OFFSETS)
               for L in WINDOWS_S for k in range(OFFSETS))
    count = len(w.requests)
    span = arrival.max() - arrival.min()
    met = count - best
    return met / count, met / span if span > 0 else math.nan, count


def link_kind(sim: Simulator, j: Job) -> str:
    """Where a TTFT miss went: prefilled locally, or remotely with the link's mean capacity
    while its KV crossed (prefill start to arrival) under half of (``fell``) or at least
    half of (``held``) the capacity at its arrival."""
    if not j.t_kv_arrival > j.t_prefill_end or j.placement != Placement.REMOTE:
        return "local"
    t0, t1 = j.t_prefill_start, j.t_kv_arrival
    bw = sim.bandwidth
    mean_bps = bw.integral(t0, t1) / (t1 - t0)
    return "remote, link fell" if mean_bps < 0.5 * gbps_to_bytes_per_s(
        bw.gbps_at(j.request.arrival_s)) else "remote, link held"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(ap)
    args = ap.parse_args()
    sc = scenario_from_args(args)
    print(f"{sc.name}{given_sources(args)}, eval split, seeds 0..{args.seeds - 1}")
    print("| seed | requests | attainment bound | conductor attainment | goodput bound / "
          "conductor |")
    print("|---|---|---|---|---|")
    atts, ratios = [], []
    zero_span, served_none = [], []
    parts = np.zeros(4)
    misses = 0
    kinds = {"local": 0, "remote, link held": 0, "remote, link fell": 0}
    for s in range(args.seeds):
        att, gp, count = bound(sc, s, args.requests)
        res, sim = run_policy(sc, Conductor(), s, "eval", args.requests)
        for j in sim.completed:
            a = j.request.arrival_s
            if j.t_first_token - a > sc.profile.slo.ttft_s:
                misses += 1
                parts += np.nan_to_num([j.t_prefill_start - a, j.t_prefill_end - j.t_prefill_start,
                                        j.t_kv_arrival - j.t_prefill_end,
                                        j.t_first_token - j.t_kv_arrival])
                kinds[link_kind(sim, j)] += 1
        if math.isnan(gp):
            zero_span.append(s)
        if not res["goodput_rps"] > 0:
            served_none.append(s)
        ratio = gp / res["goodput_rps"] if res["goodput_rps"] > 0 else math.nan
        atts.append(att)
        ratios.append(ratio)
        print(f"| {s} | {count} | {att:.3f} | {res['slo_attainment']:.3f} | "
              f"{fmt_ci(ratio, math.nan)} |")
    if zero_span:
        print(f"note: on seed(s) {zero_span} every eval-split request arrives at one instant: "
              "the span is 0, so no goodput bound exists (n/a) and the ratio leaves them out",
              file=sys.stderr)
    if served_none:
        print(f"note: the conductor served nothing within SLO on seed(s) {served_none}: no "
              "ratio exists (n/a) and the mean leaves them out", file=sys.stderr)
    a, ah = ci95(atts)
    r, rh = ci95(ratios)  # NaN (no bound, or the conductor served nothing) is left out
    if not math.isnan(r):
        goodput = f"goodput <= {fmt_ci(r, rh)}x the conductor's"
    elif len(zero_span) == len(ratios):
        goodput = "no goodput bound on any seed"
    else:  # bounds exist, but nothing to divide them by
        goodput = "no goodput ratio on any seed"
    print(f"\nany policy: SLO attainment <= {fmt_ci(a, ah)}, {goodput} (mean ± 95% CI over "
          "seeds)")
    if misses:
        q, pf, kv, dj = parts / misses
        print(f"conductor: {misses} TTFT misses; their mean TTFT {sum(parts) / misses:.1f} s = "
              f"queueing {q:.1f} + prefill {pf:.1f} + KV after prefill {kv:.1f} + "
              f"decode join {dj:.1f}")
        print("by where they went: " + ", ".join(f"{k} {v}" for k, v in kinds.items())
              + " (link fell: its mean capacity while the KV crossed was under half its "
              "capacity at the request's arrival; held: it was not)")


if __name__ == "__main__":
    sys.exit(run_script(main))
