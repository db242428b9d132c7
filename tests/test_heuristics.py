"""The heuristics' routing rules on hand-built views: each rule decides the case it names.

Scenario-level tests show the heuristics serve workloads; these pin the rules themselves,
so a rule that silently stops applying (a rejection that never fires, a cached prefix that
is not counted) fails here rather than shifting a benchmark figure by a few percent.
"""

from __future__ import annotations

from agents.heuristics import Conductor, PrfaasThreshold, RandomRouter
from prfaas_gym.contract import ClusterView, LinkView, Placement, RequestInfo
from prfaas_gym.profile import load_profile

GIB = 2.0**30


def _view(hits: tuple[int, int] = (0, 0), decode_running: int = 0) -> ClusterView:
    """single-host numbering: prefill 0 remote, 1 local; decode 0 (a node in the prefill
    role: unavailable) and 1. Idle queues, a fast link."""
    return ClusterView(
        prefill_cluster=[1, 0], prefill_available=[True, True],
        prefill_queued_tokens=[0.0, 0.0], prefill_queued_requests=[0, 0],
        prefill_wait_s=[0.0, 0.0], prefix_hit_tokens=[hits[0], hits[1]],
        decode_available=[False, True], decode_running=[0, decode_running],
        decode_waiting=[0, 0], decode_kv_used_bytes=[0.0, 0.0],
        decode_kv_capacity_bytes=[20 * GIB] * 2, decode_max_batch=[32, 32],
        link=LinkView(capacity_gbps=10.0, rtt_s=0.01))


def test_conductor_rejects_when_the_decode_step_would_miss_the_tpot_slo() -> None:
    # slow decode: 0.010 + 0.0003 b + 2e-8 ctx s a step. One more request on an idle node
    # (b = 1, ctx 4,512) steps in ~10.4 ms; on a full one (b = 32, ctx 144,384) in 22.5 ms.
    profile = load_profile("single-host").with_slo(ttft_s=30.0, tpot_s=0.02)
    c = Conductor()
    c.reset(profile)
    req = RequestInfo(0, 0.0, 4000)
    assert c.decide(req, _view(decode_running=0)).placement != Placement.REJECT
    assert c.decide(req, _view(decode_running=31)).placement == Placement.REJECT
    # the same full batch is fine under a looser TPOT SLO: the TPOT rule, not the TTFT one
    loose = Conductor()
    loose.reset(profile.with_slo(tpot_s=0.03))
    assert loose.decide(req, _view(decode_running=31)).placement != Placement.REJECT


def test_prfaas_threshold_compares_the_length_left_after_the_local_cached_prefix() -> None:
    p = PrfaasThreshold(threshold_tokens=3000)
    p.reset(load_profile("single-host"))
    req = RequestInfo(0, 0.0, 4000)
    assert p.decide(req, _view()).placement == Placement.REMOTE              # 4000 > 3000
    assert p.decide(req, _view(hits=(0, 1280))).placement == Placement.LOCAL  # 2720 <= 3000
    # a prefix cached remotely does not shorten the local prefill
    assert p.decide(req, _view(hits=(1280, 0))).placement == Placement.REMOTE


def test_random_router_without_a_seed_repeats_itself() -> None:
    """``seed=None`` (``Simulator.run``'s default) draws as seed 0 does, never from the OS's
    entropy, so a run without a seed is reproducible; another seed draws otherwise."""
    profile = load_profile("single-host")
    picks = []
    for seed in (None, None, 0, 1):
        r = RandomRouter()
        r.reset(profile, seed)
        picks.append([r.decide(RequestInfo(k, 0.0, 100), _view()).prefill_instance
                      for k in range(40)])
    assert picks[0] == picks[1] == picks[2] != picks[3]
    assert set(picks[0]) == {0, 1}
