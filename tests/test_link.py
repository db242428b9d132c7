"""The link: B/R + RTT, max-min fair sharing, and bandwidth changes mid-transfer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas_gym.bandwidth import BandwidthTrace
from prfaas_gym.link import Link


def drain(link: Link) -> dict[str, float]:
    """Run the link's own events until idle; name -> finish time."""
    done = {}
    while link.flows:
        t = link.next_event_time()
        assert t < math.inf
        for f in link.pop_finished(t):
            done[f.payload] = t
    return done


def trace(times, gbps) -> BandwidthTrace:
    return BandwidthTrace(np.asarray(times, float), np.asarray(gbps, float) * 1e9 / 8,
                          period_s=1e9)


def test_single_transfer_takes_bytes_over_rate():
    link = Link(BandwidthTrace.constant(8.0), rtt_s=0.01)  # 1e9 B/s
    link.add_flow(0.0, 2e9, "a")
    assert drain(link)["a"] == pytest.approx(2.0)


@pytest.mark.parametrize("gbps", [8.0, 80.0])
def test_simulator_delivers_kv_after_bytes_over_rate_plus_rtt(gbps):
    """Link-bound (8 Gbps): B/R + RTT from prefill start. Compute-bound (80 Gbps): the body
    streams during prefill and only the last layer's share follows it: end + B/(L R) + RTT."""
    from prfaas_gym.contract import Decision, Placement
    from prfaas_gym.profile import load_profile
    from prfaas_gym.request import Request, Workload
    from prfaas_gym.simulator import SimConfig, Simulator

    prof = load_profile("single-host").with_link(capacity_gbps=gbps, rtt_s=0.05)
    w = Workload([Request(0, 0.0, 4096, 4)])
    sim = Simulator(prof, w, config=SimConfig(telemetry_interval_s=0))
    r = sim.next_request()
    job = sim.apply(r, Decision(Placement.REMOTE))
    sim.finish()
    rate = gbps * 1e9 / 8
    kv = prof.model.kv_bytes(4096)
    link_bound = job.t_prefill_start + kv / rate
    compute_bound = job.t_prefill_end + kv / prof.model.layers / rate
    assert (link_bound > compute_bound) == (gbps == 8.0)
    assert job.t_kv_arrival == pytest.approx(max(link_bound, compute_bound) + 0.05, rel=1e-9)


def test_fair_share_staggered_flows():
    link = Link(BandwidthTrace.constant(8.0), rtt_s=0.0)
    link.add_flow(0.0, 2e9, "a")
    t = link.next_event_time()
    assert t == pytest.approx(2.0)
    link.add_flow(0.5, 1e9, "b")  # a has 1.5e9 left; both at 0.5e9 B/s
    done = drain(link)
    assert done["b"] == pytest.approx(2.5)
    assert done["a"] == pytest.approx(3.0)


def test_bandwidth_drop_mid_transfer():
    link = Link(trace([0.0, 1.0], [8.0, 4.0]), rtt_s=0.0)
    link.add_flow(0.0, 2e9, "a")  # 1e9 by t=1, then 1e9 at 0.5e9 B/s
    assert drain(link)["a"] == pytest.approx(3.0)


def test_outage_then_recovery():
    link = Link(trace([0.0, 1.0, 3.0], [8.0, 0.0, 8.0]), rtt_s=0.0)
    link.add_flow(0.0, 2e9, "a")
    assert drain(link)["a"] == pytest.approx(4.0)


def test_capped_flow_leaves_the_rest_to_others():
    link = Link(BandwidthTrace.constant(8.0), rtt_s=0.0)
    capped = link.add_flow(0.0, 1e9, "capped", cap=0.25e9)
    link.add_flow(0.0, 1.5e9, "free")
    assert capped.rate == pytest.approx(0.25e9)
    done = drain(link)
    assert done["free"] == pytest.approx(2.0)  # 0.75e9 B/s
    assert done["capped"] == pytest.approx(4.0)


def test_held_bytes_wait_for_release():
    link = Link(BandwidthTrace.constant(8.0), rtt_s=0.0)
    f = link.add_flow(0.0, 1e9, "kv", cap=0.1e9, held_bytes=0.5e9)  # 0.5e9 body over 5 s
    t = link.next_event_time()
    assert t == pytest.approx(5.0)
    assert link.pop_finished(t) == []  # body sent, tail still held
    link.release(6.0, f)
    assert drain(link)["kv"] == pytest.approx(6.5)
    assert link.bytes_sent == pytest.approx(1e9)


def test_a_flow_whose_tail_is_held_leaves_the_whole_link_to_others() -> None:
    """Once a KV flow has sent the body its prefill produced, it waits for the prefill to
    end and takes no share of the link: a concurrent flow gets the full capacity."""
    link = Link(BandwidthTrace.constant(8.0), rtt_s=0.0)  # 1e9 B/s
    held = link.add_flow(0.0, 1e9, "held", cap=0.1e9, held_bytes=0.5e9)  # body sent by t=5
    assert link.pop_finished(link.next_event_time()) == [] and link.t == 5.0
    free = link.add_flow(5.0, 2e9, "free")
    assert free.rate == 1e9 and held.rate == 0.0
    assert link.next_event_time() == 7.0  # B / R after it started
    assert [f.payload for f in link.pop_finished(7.0)] == ["free"]
    link.release(8.0, held)
    assert drain(link) == {"held": 8.5}
