"""Tests for prfaas_gym.bandwidth: trace arithmetic, loaders, generators, specs, sampler."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from prfaas_gym.bandwidth import (
    BANDWIDTH_FORMATS,
    BandwidthSampler,
    BandwidthTrace,
    bandwidth_sampler_from_spec,
    bytes_per_s_to_gbps,
    constant,
    load_bandwidth,
    load_bandwidth_dir,
    load_csv,
    load_pantheon,
    load_pensieve,
    markov_levels,
    mean_reverting,
    synthetic_from_spec,
    with_drops,
)
from prfaas_gym.errors import PrfaasInputError

TRACES = Path(__file__).parents[1].parent / "shared" / "traces"
ABR = TRACES / "genet-abr-bandwidth" / "abr_trace"
PANTHEON = TRACES / "genet-pantheon-cc" / "cc_trace"


def three_segment(offset_s: float = 0.0) -> BandwidthTrace:
    # [0, 2): 10 B/s, [2, 5): 0 B/s (outage), [5, 6): 30 B/s; period 6 s, 50 bytes per period
    return BandwidthTrace(np.array([0.0, 2.0, 5.0]), np.array([10.0, 0.0, 30.0]), 6.0,
                          name="three", offset_s=offset_s)


# ------------------------------------------------------------------ trace arithmetic


def test_integral_across_wrap_matches_hand_computation() -> None:
    tr = three_segment()
    assert tr.mean_bytes_per_s == pytest.approx(50.0 / 6.0)
    # [1, 5.5]: 1 s * 10 + 3 s * 0 + 0.5 s * 30 = 25
    assert tr.integral(1.0, 5.5) == pytest.approx(25.0)
    # [4, 7.5] wraps: [4,5) 0 + [5,6) 30 + [6,7.5) = 1.5 s * 10 = 15 -> 45
    assert tr.integral(4.0, 7.5) == pytest.approx(45.0)
    # [5.5, 20]: [5.5,6) 15 + [6,18) two full periods 100 + [18,20) 20 -> 135
    assert tr.integral(5.5, 20.0) == pytest.approx(135.0)
    assert tr.integral(3.0, 3.0) == 0.0
    assert tr.integral(3.0, 1.0) == 0.0
    # additivity over an arbitrary split, including far from zero
    for a, m, b in [(0.3, 7.7, 19.1), (1e5 + 0.2, 1e5 + 3.9, 1e5 + 12.0)]:
        assert tr.integral(a, b) == pytest.approx(tr.integral(a, m) + tr.integral(m, b))
    # with an offset: episode t maps to trace (4 + t) mod 6
    off = three_segment(offset_s=4.0)
    assert off.integral(0.0, 3.5) == pytest.approx(45.0)
    assert off.integral(0.0, 6.0) == pytest.approx(50.0)


def test_integral_matches_fine_riemann_sum() -> None:
    tr = three_segment(offset_s=1.25)
    dt = 1e-3
    ts = np.arange(0.0, 13.0, dt)
    approx = sum(tr.capacity_at(float(t)) for t in ts) * dt
    assert tr.integral(0.0, 13.0) == pytest.approx(approx, rel=1e-3)


def test_capacity_and_next_change_at_boundaries() -> None:
    tr = three_segment()
    assert tr.capacity_at(0.0) == 10.0
    assert tr.capacity_at(1.999) == 10.0
    assert tr.capacity_at(2.0) == 0.0  # right-continuous
    assert tr.capacity_at(5.0) == 30.0
    assert tr.capacity_at(6.0) == 10.0  # wrapped
    assert tr.capacity_at(8.5) == 0.0
    assert tr.next_change_after(0.0) == 2.0
    assert tr.next_change_after(2.0) == 5.0  # strictly after
    assert tr.next_change_after(4.2) == pytest.approx(5.0)
    assert tr.next_change_after(5.0) == 6.0  # wrap boundary (segment 0 starts again)
    assert tr.next_change_after(6.0) == pytest.approx(8.0)
    assert tr.next_change_after(13.0) == pytest.approx(14.0)


def test_capacity_and_next_change_with_offset() -> None:
    tr = three_segment(offset_s=4.5)  # episode 0 is trace 4.5 (outage)
    assert tr.capacity_at(0.0) == 0.0
    assert tr.next_change_after(0.0) == pytest.approx(0.5)
    assert tr.capacity_at(0.5) == 30.0
    assert tr.next_change_after(0.5) == pytest.approx(1.5)
    assert tr.capacity_at(1.5) == 10.0
    assert tr.next_change_after(1.5) == pytest.approx(3.5)
    assert tr.with_offset(-1.5).offset_s == pytest.approx(4.5)
    assert tr.with_offset(13.0).offset_s == pytest.approx(1.0)


def test_event_walk_is_consistent_and_progresses() -> None:
    # stepping boundary to boundary must visit segments in order, forever, without stalling
    tr = three_segment(offset_s=0.1)
    t = 0.0
    seen = []
    for _ in range(3000):
        nxt = tr.next_change_after(t)
        assert nxt > t
        seen.append(tr.capacity_at(t))
        assert tr.segment_at(t) == (seen[-1], nxt)
        t = nxt
    assert seen[:6] == [10.0, 0.0, 30.0, 10.0, 0.0, 30.0]
    assert seen[-3:] in ([10.0, 0.0, 30.0], [0.0, 30.0, 10.0], [30.0, 10.0, 0.0])
    assert t == pytest.approx(1000 * 6.0 - 0.1, abs=1e-6)  # 3000th boundary


def test_constant_trace() -> None:
    tr = constant(100.0, rtt_s=0.02)
    assert tr is not None and tr.rtt_s == 0.02
    assert tr.capacity_at(123.4) == pytest.approx(100e9 / 8)
    assert tr.next_change_after(5.0) == math.inf
    assert tr.integral(0.0, 2.0) == pytest.approx(2 * 100e9 / 8)
    assert BandwidthTrace.constant(40.0).mean_gbps == pytest.approx(40.0)


def test_scaled_to_mean_and_transforms() -> None:
    tr = three_segment().scaled_to_mean(100.0)
    assert tr.mean_bytes_per_s == pytest.approx(100e9 / 8)
    assert tr.mean_gbps == pytest.approx(100.0)
    # shape kept
    assert tr.bytes_per_s[2] / tr.bytes_per_s[0] == pytest.approx(3.0)
    assert tr.bytes_per_s[1] == 0.0
    zero = BandwidthTrace(np.array([0.0]), np.array([0.0]), 1.0)
    with pytest.raises(PrfaasInputError, match="zero"):
        zero.scaled_to_mean(10.0)
    assert three_segment().with_rtt(0.05).rtt_s == 0.05
    with pytest.raises(PrfaasInputError):
        three_segment().with_rtt(-1.0)


def test_window_is_the_part_of_one_period_rebased() -> None:
    tr = BandwidthTrace(np.array([0.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]), 10.0,
                        rtt_s=0.01, name="x").with_offset(3.0)
    w = tr.window(0.5, 0.9)  # trace time [5, 9): the tail of segment 1, then segment 2
    assert w.period_s == pytest.approx(4.0) and w.offset_s == 0.0 and w.rtt_s == 0.01
    assert list(w.times_s) == [0.0, 1.0] and list(w.bytes_per_s) == [2.0, 3.0]
    assert w.integral(0.0, 4.0) == pytest.approx(1 * 2.0 + 3 * 3.0)
    assert list(tr.window(0.0, 0.4).bytes_per_s) == [1.0]
    for lo, hi in ((0.5, 0.5), (-0.1, 0.5), (0.2, 1.1)):
        with pytest.raises(PrfaasInputError, match="window"):
            tr.window(lo, hi)


def test_time_to_deliver_inverts_integral() -> None:
    tr = three_segment(offset_s=1.0)
    for t0, nbytes in [(0.0, 5.0), (0.0, 10.0), (0.5, 49.0), (3.0, 50.0), (2.2, 333.0)]:
        t1 = tr.time_to_deliver(t0, nbytes)
        assert tr.integral(t0, t1) == pytest.approx(nbytes)
        # earliest: a hair earlier delivers less
        assert tr.integral(t0, t1 - 1e-6) < nbytes
    # ten bytes from trace time 1: 1 s at 10 B/s -> [1, 2), then outage [2, 5) and 30 B/s
    assert tr.time_to_deliver(0.0, 10.0) == pytest.approx(1.0)
    assert tr.time_to_deliver(0.0, 11.5) == pytest.approx(4.05)
    zero = BandwidthTrace(np.array([0.0]), np.array([0.0]), 1.0)
    assert zero.time_to_deliver(0.0, 1.0) == math.inf


def test_invalid_trace_arrays() -> None:
    with pytest.raises(PrfaasInputError, match="times_s\\[0\\]"):
        BandwidthTrace(np.array([1.0, 2.0]), np.array([1.0, 1.0]), 3.0)
    with pytest.raises(PrfaasInputError, match="not after"):
        BandwidthTrace(np.array([0.0, 2.0, 2.0]), np.array([1.0, 1.0, 1.0]), 3.0)
    with pytest.raises(PrfaasInputError, match="negative"):
        BandwidthTrace(np.array([0.0]), np.array([-1.0]), 3.0)
    with pytest.raises(PrfaasInputError, match="period_s"):
        BandwidthTrace(np.array([0.0, 2.0]), np.array([1.0, 1.0]), 2.0)


def test_trace_is_frozen_readonly_and_picklable() -> None:
    tr = three_segment(offset_s=2.5)
    with pytest.raises(ValueError):
        tr.bytes_per_s[0] = 5.0
    with pytest.raises(AttributeError):
        tr.period_s = 3.0  # type: ignore[misc]
    back = pickle.loads(pickle.dumps(tr))
    assert back.capacity_at(0.0) == tr.capacity_at(0.0)
    assert back.integral(0.0, 9.0) == pytest.approx(tr.integral(0.0, 9.0))


# ------------------------------------------------------------------ loaders


def _first_file(folder: Path) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        pytest.skip(f"no files under {folder}")
    return files[0]


@pytest.mark.skipif(not ABR.is_dir(), reason="shared Pensieve traces absent")
def test_load_real_pensieve_file() -> None:
    path = _first_file(ABR / "testing_trace" / "fcc-test")
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    tr = load_pensieve(path)
    assert tr.n_segments == len(rows)
    assert tr.times_s[0] == 0.0
    t0 = float(rows[0][0])
    assert tr.times_s[1] == pytest.approx(float(rows[1][0]) - t0)
    assert tr.capacity_at(0.0) == pytest.approx(float(rows[0][1]) * 1e6 / 8)
    spacing = np.median(np.diff([float(r[0]) for r in rows]))
    assert tr.period_s == pytest.approx(float(rows[-1][0]) - t0 + spacing)
    assert 0.01 < tr.mean_gbps * 1000 < 1000  # Mbit/s scale access link
    assert load_bandwidth(path).n_segments == tr.n_segments  # no suffix -> pensieve


@pytest.mark.skipif(not PANTHEON.is_dir(), reason="shared Pantheon traces absent")
def test_load_real_pantheon_file() -> None:
    path = _first_file(PANTHEON / "ethernet")
    raw = json.loads(path.read_text())
    tr = load_pantheon(path)
    assert tr.rtt_s == pytest.approx(2 * raw["delays"][0] / 1000)
    assert raw["bandwidths"][0] == pytest.approx(0.1)
    assert tr.n_segments == len(raw["timestamps"]) - 1  # placeholder bin dropped
    assert tr.capacity_at(0.0) == pytest.approx(raw["bandwidths"][1] * 1e6 / 8)
    assert tr.period_s == pytest.approx(raw["timestamps"][-1] - raw["timestamps"][1] + 0.5)
    assert load_bandwidth(path).rtt_s == tr.rtt_s


@pytest.mark.skipif(not PANTHEON.is_dir(), reason="shared Pantheon traces absent")
def test_load_dir_is_sorted_limited_and_skips_docs() -> None:
    root = PANTHEON.parent  # contains SOURCE.md
    a = load_bandwidth_dir(root, limit=5)
    b = load_bandwidth_dir(root, "pantheon", limit=5)
    assert [t.name for t in a] == [t.name for t in b]
    assert len(a) == 5 and [t.name for t in a] == sorted(t.name for t in a)
    assert all(t.name.endswith(".json") for t in a)


def test_pensieve_non_monotone_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad_trace.txt"
    path.write_text("0.0 1.0\n1.0 2.0\n2.0 2.0\n4.0 1.0\n\n# comment\n3.0 5.0\n")
    with pytest.raises(PrfaasInputError) as info:
        load_pensieve(path)
    msg = str(info.value)
    assert "bad_trace.txt" in msg
    assert "line 7: time 3.0 is not after the previous time 4.0" in msg


@pytest.mark.parametrize(("text", "needle"), [
    ("0 1\n1 -2\n", "line 2: bandwidth -2.0"),
    ("0 1\n1 abc\n", "line 2: bandwidth 'abc' is not a number"),
    ("0 1 3\n", "line 1: expected 2 columns"),
    ("\n\n", "empty"),
    ("0 1\n1 1e308\n", "line 2: bandwidth 1e+308 Mbit/s is more than a link carries"),
])
def test_pensieve_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "t.log"
    path.write_text(text)
    with pytest.raises(PrfaasInputError, match="t.log") as info:
        load_pensieve(path)
    assert needle in str(info.value)


def test_pensieve_shift_and_single_sample(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.write_text("10.0 8.0\n11.0 16.0\n13.0 8.0\n")
    tr = load_pensieve(path)
    assert list(tr.times_s) == [0.0, 1.0, 3.0]
    assert tr.period_s == pytest.approx(4.5)  # median spacing 1.5
    assert tr.capacity_at(1.0) == pytest.approx(2e6)
    one = tmp_path / "one"
    one.write_text("5 8\n")
    assert load_pensieve(one).next_change_after(0.0) == math.inf


def test_csv_loader_and_bad_header(tmp_path: Path) -> None:
    good = tmp_path / "link.csv"
    good.write_text("time_s,gbps\n0,100\n10,50\n20,0\n")
    tr = load_bandwidth(good)
    assert tr.period_s == pytest.approx(30.0)
    assert tr.capacity_at(15.0) == pytest.approx(50e9 / 8)
    assert tr.capacity_at(25.0) == 0.0
    assert load_csv(good).mean_gbps == pytest.approx(50.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("t,bw\n0,1\n")
    with pytest.raises(PrfaasInputError, match="bad.csv") as info:
        load_csv(bad)
    assert "line 1" in str(info.value) and "time_s,gbps" in str(info.value)
    mono = tmp_path / "mono.csv"
    mono.write_text("time_s,gbps\n0,1\n5,1\n5,2\n")
    with pytest.raises(PrfaasInputError, match="line 4: time 5.0 is not after"):
        load_csv(mono)


def test_sub_millisecond_sample_spacing_is_refused_with_its_file(tmp_path: Path) -> None:
    # a transfer is re-timed at every boundary: microsecond samples made a run hang
    p = tmp_path / "us.txt"
    p.write_text("0 1\n0.5 2\n0.500001 3\n")
    with pytest.raises(PrfaasInputError, match=r"us.txt: line 3: time 0.500001 is 1e-06 s after"):
        load_pensieve(p)
    p.write_text("0 1\n0.001 2\n")  # the finest spacing allowed
    assert load_pensieve(p).n_segments == 2
    epoch = tmp_path / "epoch.csv"  # 1 ms apart in epoch seconds: 0.000999... after rebasing
    epoch.write_text("time_s,gbps\n1700000000.000,10\n1700000000.001,20\n1700000000.002,10\n")
    assert load_csv(epoch).n_segments == 3
    with pytest.raises(PrfaasInputError, match="dt_s must be >= 0.001"):
        synthetic_from_spec({"kind": "ou", "mean_gbps": 25, "cv": 0.5, "tau_s": 0.001,
                             "duration_s": 0.001, "dt_s": 1e-6}, 0)
    with pytest.raises(PrfaasInputError, match="dt_s must be >= 0.001"):
        synthetic_from_spec({"kind": "markov", "levels_gbps": [10, 20], "mean_hold_s": 1,
                             "dt_s": 1e-4}, 0)


def test_pantheon_errors(tmp_path: Path) -> None:
    def write(obj: object) -> Path:
        p = tmp_path / "x.json"
        p.write_text(json.dumps(obj))
        return p

    with pytest.raises(PrfaasInputError, match="missing key 'bandwidths'"):
        load_pantheon(write({"timestamps": [0, 1]}))
    with pytest.raises(PrfaasInputError, match="2 entries but 'bandwidths' has 3"):
        load_pantheon(write({"timestamps": [0, 1], "bandwidths": [1, 2, 3]}))
    with pytest.raises(PrfaasInputError, match=r"timestamps\[2\]"):
        load_pantheon(write({"timestamps": [0, 1, 0.5], "bandwidths": [1, 2, 3]}))
    with pytest.raises(PrfaasInputError, match=r"bandwidths\[1\] = 2000000000.0 Mbit/s is more than"):
        load_pantheon(write({"timestamps": [0, 1], "bandwidths": [1, 2e9]}))
    with pytest.raises(PrfaasInputError, match=r"timestamps\[1\] and timestamps\[2\] are 0.0001 s"):
        # the file's indices, though the placeholder sample 0 is dropped
        load_pantheon(write({"timestamps": [0, 1, 1.0001, 2], "bandwidths": [0.1, 5, 6, 7]}))
    # the placeholder's own gap does not count: it is dropped
    assert load_pantheon(write({"timestamps": [0, 0.0005, 1.0005, 2.0005],
                                "bandwidths": [0.1, 5, 6, 7]})).n_segments == 3
    with pytest.raises(PrfaasInputError, match=r"delays\[0\] = 1e\+308 ms is more than"):
        load_pantheon(write({"timestamps": [0, 1], "bandwidths": [1, 2], "delays": [1e308]}))
    p = tmp_path / "broken.json"
    p.write_text("{\n  \"timestamps\": [0,\n")
    with pytest.raises(PrfaasInputError, match="broken.json.*invalid JSON"):
        load_pantheon(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PrfaasInputError, match=r"broken.json: invalid JSON \(nested too deeply"):
        load_pantheon(p)
    tr = load_pantheon(write({"timestamps": [0, 0.5, 1.0], "bandwidths": [8, 16, 8],
                              "delays": [20.0]}))
    assert tr.n_segments == 3 and tr.rtt_s == pytest.approx(0.04)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    assert BANDWIDTH_FORMATS == ("pensieve", "pantheon", "csv")
    with pytest.raises(PrfaasInputError, match="unknown bandwidth format"):
        load_bandwidth(tmp_path / "x", format="parquet")
    with pytest.raises(PrfaasInputError, match="not found"):
        load_bandwidth(tmp_path / "nope.csv")
    with pytest.raises(PrfaasInputError, match="no bandwidth trace files"):
        load_bandwidth_dir(tmp_path)


# ------------------------------------------------------------------ generators


def test_generators_are_seeded_and_deterministic() -> None:
    a = markov_levels(np.random.default_rng(7), 600.0, [20, 60, 100], 30.0)
    b = markov_levels(np.random.default_rng(7), 600.0, [20, 60, 100], 30.0)
    c = markov_levels(np.random.default_rng(8), 600.0, [20, 60, 100], 30.0)
    assert np.array_equal(a.times_s, b.times_s) and np.array_equal(a.bytes_per_s, b.bytes_per_s)
    assert not (np.array_equal(a.times_s, c.times_s)
                and np.array_equal(a.bytes_per_s, c.bytes_per_s))
    assert a.period_s == 600.0
    assert set(np.round(a.bytes_per_s * 8 / 1e9, 6)) <= {20.0, 60.0, 100.0}
    assert np.all(np.diff(a.bytes_per_s) != 0)  # always jumps to a different level
    assert np.allclose(a.times_s, np.round(a.times_s))  # holds are multiples of dt_s

    o1 = mean_reverting(np.random.default_rng(3), 3600.0, 50.0, 0.3, 20.0)
    o2 = mean_reverting(np.random.default_rng(3), 3600.0, 50.0, 0.3, 20.0)
    assert np.array_equal(o1.bytes_per_s, o2.bytes_per_s)
    assert o1.bytes_per_s.min() >= 0.05 * 50e9 / 8 - 1e-6
    assert o1.mean_gbps == pytest.approx(50.0, rel=0.2)
    g = o1.bytes_per_s * 8 / 1e9
    assert 0.15 < g.std() / g.mean() < 0.45


def test_drops_depth_one_make_outages() -> None:
    base = constant(100.0, rtt_s=0.03, period_s=1000.0)
    tr = with_drops(np.random.default_rng(1), base, rate_per_s=0.01, depth=1.0,
                    mean_duration_s=10.0)
    assert tr.rtt_s == 0.03
    assert np.any(tr.bytes_per_s == 0.0)
    assert set(tr.bytes_per_s.tolist()) == {0.0, 100e9 / 8}
    assert 0 < tr.mean_gbps < 100.0
    zero_seg = int(np.flatnonzero(tr.bytes_per_s == 0.0)[0])
    assert tr.capacity_at(float(tr.times_s[zero_seg])) == 0.0
    same = with_drops(np.random.default_rng(1), base, 0.01, 1.0, 10.0)
    assert np.array_equal(same.times_s, tr.times_s)
    half = with_drops(np.random.default_rng(1), base, 0.01, 0.5, 10.0)
    assert set(half.bytes_per_s.tolist()) == {50e9 / 8, 100e9 / 8}
    # drops keep the underlying shape outside the drop intervals
    mk = markov_levels(np.random.default_rng(2), 500.0, [10, 40], 20.0)
    dr = with_drops(np.random.default_rng(5), mk, 0.02, 1.0, 5.0)
    for t in np.linspace(0, 499, 200):
        c = dr.capacity_at(float(t))
        assert c == 0.0 or c == mk.capacity_at(float(t))


# ------------------------------------------------------------------ specs and sampler


def test_synthetic_from_spec_kinds(tmp_path: Path) -> None:
    assert synthetic_from_spec({"kind": "constant", "gbps": 100}, 0).mean_gbps == 100.0
    mk = synthetic_from_spec({"kind": "markov", "levels_gbps": [20, 60, 100],
                              "mean_hold_s": 30, "duration_s": 3600}, 1)
    assert mk.period_s == 3600.0
    ou = synthetic_from_spec({"kind": "ou", "mean_gbps": 50, "cv": 0.3, "tau_s": 20,
                              "duration_s": 3600, "rtt_s": 0.04,
                              "drops": {"rate_per_s": 0.005, "depth": 0.9,
                                        "mean_duration_s": 10}}, 2)
    assert ou.rtt_s == 0.04
    again = synthetic_from_spec({"kind": "ou", "mean_gbps": 50, "cv": 0.3, "tau_s": 20,
                                 "duration_s": 3600, "rtt_s": 0.04,
                                 "drops": {"rate_per_s": 0.005, "depth": 0.9,
                                           "mean_duration_s": 10}}, 2)
    assert np.array_equal(ou.bytes_per_s, again.bytes_per_s)
    (tmp_path / "l.csv").write_text("time_s,gbps\n0,1\n1,3\n")
    tr = synthetic_from_spec({"kind": "trace", "path": "l.csv", "scale_to_gbps": 100}, 0,
                             base_dir=tmp_path)
    assert tr.mean_gbps == pytest.approx(100.0)


@pytest.mark.parametrize(("spec", "where"), [
    ({"kind": "nope"}, "bandwidth.kind"),
    ({"gbps": 3}, "bandwidth.kind"),
    ({"kind": "constant", "gbps": 3, "bogus": 1}, "bandwidth.bogus"),
    ({"kind": "constant"}, "bandwidth.gbps"),
    ({"kind": "constant", "gbps": "fast"}, "bandwidth.gbps"),
    ({"kind": "markov", "levels_gbps": [], "mean_hold_s": 3}, "bandwidth.levels_gbps"),
    # a petabit per second at most: a unit typo (bit/s for Gbit/s) is refused
    ({"kind": "constant", "gbps": 2e6}, "bandwidth.gbps"),
    ({"kind": "markov", "levels_gbps": [10, 2e6], "mean_hold_s": 3}, "bandwidth.levels_gbps"),
    ({"kind": "ou", "mean_gbps": 2e6, "cv": 0.1, "tau_s": 5}, "bandwidth.mean_gbps"),
    ({"kind": "ou", "mean_gbps": 5, "cv": 0.1, "tau_s": 0}, "bandwidth.tau_s"),
    ({"kind": "constant", "gbps": 3, "drops": {"rate_per_s": 1, "depth": 2,
                                               "mean_duration_s": 1}}, "bandwidth.drops.depth"),
    ({"kind": "constant", "gbps": 3, "drops": {"rate": 1}}, "bandwidth.drops.rate"),
    # drops finer than a millisecond made a run re-time transfers at every one, and hang
    ({"kind": "constant", "gbps": 3, "drops": {"rate_per_s": 2e5, "depth": 0.5,
                                               "mean_duration_s": 1}}, "bandwidth.drops.rate_per_s"),
    ({"kind": "constant", "gbps": 3, "drops": {"rate_per_s": 1, "depth": 0.5,
                                               "mean_duration_s": 1e-6}},
     "bandwidth.drops.mean_duration_s"),
    # 1000 drops a second over a 1e5 s period: 1e8 drops, more than memory allows
    ({"kind": "ou", "mean_gbps": 5, "cv": 0.1, "tau_s": 5, "duration_s": 1e5, "dt_s": 10,
      "drops": {"rate_per_s": 1000, "depth": 0.5, "mean_duration_s": 1}},
     "bandwidth.drops.rate_per_s"),
    ({"kind": "trace", "path": "x.csv", "format": "xml"}, "bandwidth.format"),
])
def test_spec_errors_name_key_path(spec: dict, where: str) -> None:
    with pytest.raises(PrfaasInputError) as info:
        synthetic_from_spec(spec, 0)
    assert info.value.where == where


def test_sampler_offsets_differ_by_seed() -> None:
    sampler = bandwidth_sampler_from_spec({"kind": "markov", "levels_gbps": [20, 100],
                                           "mean_hold_s": 30, "duration_s": 600,
                                           "variants": 3}, 0)
    assert len(sampler) == 3
    offsets = {sampler.sample(np.random.default_rng(s)).offset_s for s in range(6)}
    assert len(offsets) == 6
    a = sampler.sample(np.random.default_rng(11))
    b = sampler.sample(np.random.default_rng(11))
    assert a.offset_s == b.offset_s and a.name == b.name
    # same seed -> same set of generated variants
    again = bandwidth_sampler_from_spec({"kind": "markov", "levels_gbps": [20, 100],
                                         "mean_hold_s": 30, "duration_s": 600,
                                         "variants": 3}, 0)
    for x, y in zip(sampler.traces, again.traces, strict=True):
        assert np.array_equal(x.bytes_per_s, y.bytes_per_s)


def test_sampler_mean_range_and_constant() -> None:
    sampler = BandwidthSampler([constant(10.0), three_segment()], mean_gbps_range=(20, 80))
    rng = np.random.default_rng(4)
    means = [sampler.sample(rng).mean_gbps for _ in range(50)]
    assert all(20 - 1e-9 <= m <= 80 + 1e-9 for m in means)
    assert len({round(m, 6) for m in means}) > 40
    s2 = bandwidth_sampler_from_spec({"kind": "constant", "gbps": 100}, 3)
    assert len(s2) == 1 and s2.sample(1).mean_gbps == pytest.approx(100.0)
    with pytest.raises(PrfaasInputError, match="bandwidth.mean_gbps_range"):
        bandwidth_sampler_from_spec({"kind": "constant", "gbps": 1,
                                     "mean_gbps_range": [5, 1]}, 0)
    with pytest.raises(PrfaasInputError, match=r"need 0 < lo <= hi <= 1e\+06, got \[10, 1e\+09\]"):
        bandwidth_sampler_from_spec({"kind": "constant", "gbps": 1,
                                     "mean_gbps_range": [10, 1e9]}, 0)
    with pytest.raises(PrfaasInputError) as info:
        bandwidth_sampler_from_spec({"kind": "trace", "path": "x", "variants": 2}, 0)
    assert info.value.where == "bandwidth.variants"


@pytest.mark.skipif(not ABR.is_dir(), reason="shared Pensieve traces absent")
def test_sampler_from_trace_dir() -> None:
    sampler = bandwidth_sampler_from_spec(
        {"kind": "trace_dir", "path": "genet-abr-bandwidth/abr_trace/testing_trace/fcc-test",
         "format": "pensieve", "scale_to_gbps": 100, "limit": 4,
         "mean_gbps_range": [50, 150]}, 0, base_dir=TRACES)
    assert len(sampler) == 4
    assert all(t.mean_gbps == pytest.approx(100.0) for t in sampler.traces)
    tr = sampler.sample(np.random.default_rng(0))
    assert 50 <= tr.mean_gbps <= 150 and 0 <= tr.offset_s < tr.period_s


# ---------------------------------------------------------------------------------------------
# Generated links have the statistics their docstrings promise; samplers spread episodes


def _time_at_level(tr: BandwidthTrace, gbps: float) -> float:
    durations = np.diff(np.append(tr.times_s, tr.period_s))
    at = np.isclose([bytes_per_s_to_gbps(c) for c in tr.bytes_per_s], gbps)
    return float(durations[at].sum() / tr.period_s)


def test_markov_levels_always_jump_to_a_different_level() -> None:
    """Each hold ends in a jump to another level: two levels alternate, about half the time
    each, with a segment per hold (about duration / mean_hold_s of them)."""
    tr = markov_levels(np.random.default_rng(1), 3600.0, [20.0, 80.0], 30.0)
    caps = tr.bytes_per_s
    assert np.all(caps[1:] != caps[:-1])
    assert 80 <= tr.n_segments <= 160  # ~120 holds of 30 s in an hour
    assert _time_at_level(tr, 20.0) == pytest.approx(0.5, abs=0.15)


def test_ou_link_is_clipped_at_floor_frac_times_the_mean() -> None:
    """The floor is a fraction of the mean (``floor_frac * mean_gbps``), not Gbit/s."""
    tr = mean_reverting(np.random.default_rng(2), 2000.0, 50.0, 3.0, 20.0, floor_frac=0.1)
    gbps = np.array([bytes_per_s_to_gbps(c) for c in tr.bytes_per_s])
    assert gbps.min() == pytest.approx(5.0)
    assert np.count_nonzero(np.isclose(gbps, 5.0)) > 0


def test_ou_link_has_the_stationary_spread_it_is_asked_for() -> None:
    """Stationary std = ``cv * mean_gbps`` (floor far away): the AR(1) innovation keeps it."""
    tr = mean_reverting(np.random.default_rng(3), 100_000.0, 50.0, 0.2, 20.0)
    gbps = np.array([bytes_per_s_to_gbps(c) for c in tr.bytes_per_s])
    durations = np.diff(np.append(tr.times_s, tr.period_s))  # compact() merges equal steps
    mean = np.average(gbps, weights=durations)
    std = np.sqrt(np.average((gbps - mean) ** 2, weights=durations))
    assert mean == pytest.approx(50.0, rel=0.03)
    assert std == pytest.approx(10.0, rel=0.06)


def test_sampler_offsets_cover_the_whole_period() -> None:
    """Episodes start anywhere in the trace, not only in its first second."""
    tr = BandwidthTrace(np.array([0.0, 50.0]), np.array([1e9, 2e9]), 100.0)
    sampler = BandwidthSampler([tr])
    offsets = [sampler.sample(np.random.default_rng(s)).offset_s for s in range(40)]
    assert min(offsets) < 25.0 and max(offsets) > 75.0


def test_generated_variants_are_distinct_traces() -> None:
    """``variants: k`` generates k different traces from one seed, not k copies of one."""
    spec = {"kind": "ou", "mean_gbps": 25.0, "cv": 0.5, "tau_s": 30.0, "duration_s": 600,
            "variants": 4}
    traces = bandwidth_sampler_from_spec(spec, 7).traces
    assert len(traces) == 4
    caps = {tuple(t.bytes_per_s.tolist()) for t in traces}
    assert len(caps) == 4
    again = bandwidth_sampler_from_spec(spec, 7).traces  # still reproducible from the seed
    assert [tuple(t.bytes_per_s.tolist()) for t in again] == \
        [tuple(t.bytes_per_s.tolist()) for t in traces]
