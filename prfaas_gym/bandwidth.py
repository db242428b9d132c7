"""Inter-datacenter link bandwidth: piecewise-constant capacity traces, loaders, generators.

A :class:`BandwidthTrace` is a periodic, piecewise-constant capacity series in **bytes per
second**. Segment ``i`` covers trace time ``[times_s[i], times_s[i+1])`` (the last one ends at
``period_s``) and the series wraps around after ``period_s``. All query methods take *episode*
time ``t >= 0``, which maps to trace time ``(offset_s + t) mod period_s``, so one trace can
drive many episodes that start at different points of it.

Sources of traces:

* real measurements: :func:`load_pensieve` (``time_s Mbps`` text, Pensieve/Genet ABR traces),
  :func:`load_pantheon` (Genet's Pantheon JSON, with the path's RTT), :func:`load_csv`
  (``time_s,gbps`` CSV), dispatched by :func:`load_bandwidth` / :func:`load_bandwidth_dir`;
* synthetic, seeded: :func:`markov_levels`, :func:`mean_reverting` (Ornstein-Uhlenbeck),
  :func:`with_drops` (sudden drops and outages);
* YAML specs: :func:`synthetic_from_spec` (one trace) and :func:`bandwidth_sampler_from_spec`
  (a :class:`BandwidthSampler` that randomises trace, start offset and mean per episode).

Spec kinds (keys other than the listed ones are an error)::

    {kind: constant, gbps: 100}
    {kind: markov, levels_gbps: [20, 60, 100], mean_hold_s: 30, duration_s: 3600, dt_s: 1}
    {kind: ou, mean_gbps: 50, cv: 0.3, tau_s: 20, duration_s: 3600, dt_s: 1, floor_frac: 0.05}
    {kind: trace, path: FILE, format: pensieve|pantheon|csv, scale_to_gbps: 100}
    {kind: trace_dir, path: DIR, format: ..., scale_to_gbps: 100, limit: 50}

Every kind also takes ``rtt_s`` (overrides the trace's RTT) and ``drops: {rate_per_s, depth,
mean_duration_s}``. A plain number is shorthand for ``{kind: constant, gbps: NUMBER}``. The
sampler spec adds ``variants`` (synthetic kinds: how many traces to generate, default 8),
``mean_gbps_range: [lo, hi]`` and ``random_offset`` (default true).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from prfaas_gym.data_paths import resolve_path
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import MAX_GBPS, MAX_RTT_S, is_finite_number

__all__ = [
    "BANDWIDTH_FORMATS",
    "BandwidthSampler",
    "BandwidthTrace",
    "LinkPart",
    "bandwidth_sampler_from_spec",
    "bytes_per_s_to_gbps",
    "constant",
    "gbps_to_bytes_per_s",
    "load_bandwidth",
    "load_bandwidth_dir",
    "load_csv",
    "load_pantheon",
    "load_pensieve",
    "markov_levels",
    "mean_reverting",
    "synthetic_from_spec",
    "with_drops",
]

BANDWIDTH_FORMATS: tuple[str, ...] = ("pensieve", "pantheon", "csv")
SPEC_KINDS: tuple[str, ...] = ("constant", "markov", "ou", "trace", "trace_dir")

#: Query times this close below a segment boundary count as being on it (float noise guard).
_SNAP_S = 1e-9
#: The finest sample spacing or generator step a link may have. A transfer in flight is
#: re-timed at every boundary it crosses, so microsecond steps would make a run cross a
#: billion of them and never finish; the shipped traces' finest spacing is 42 ms.
MIN_SEGMENT_S = 1e-3


#: Pantheon/Genet JSON files start with this placeholder throughput (Mbit/s).
_PANTHEON_PLACEHOLDER_MBPS = 0.1
#: Files :func:`load_bandwidth_dir` never treats as traces.
_DOC_SUFFIXES = frozenset({".md", ".rst", ".yaml", ".yml", ".py", ".pdf", ".png", ".svg",
                           ".ipynb", ".gz", ".zip", ".tar"})
_DOC_STEMS = ("readme", "license", "licence", "source", "notice", "changelog")


def _closer_than_min_segment(gap: float, magnitude: float) -> bool:
    """Whether two sample times ``gap`` seconds apart break :data:`MIN_SEGMENT_S`, allowing
    for the float noise of times of ``magnitude`` (epoch seconds carry ~1e-7 s of it; at
    most 1 us is forgiven)."""
    return gap < MIN_SEGMENT_S - min(4.0 * float(np.spacing(magnitude)), 1e-6)


def gbps_to_bytes_per_s(gbps: float) -> float:
    """Gbit/s (decimal) to bytes/s."""
    return float(gbps) * 1e9 / 8.0


def bytes_per_s_to_gbps(bps: float) -> float:
    """Bytes/s to Gbit/s (decimal)."""
    return float(bps) * 8.0 / 1e9


# --------------------------------------------------------------------------------------------
# The trace
# --------------------------------------------------------------------------------------------


def _normalised_offset(offset: float, period: float, where: str) -> float:
    if not math.isfinite(offset):
        raise PrfaasInputError(f"offset_s must be finite, got {offset!r}", where)
    offset = offset % period
    return 0.0 if offset >= period else offset  # float rounding of a tiny negative offset


@dataclass(frozen=True, eq=False, repr=False)
class BandwidthTrace:
    """Periodic piecewise-constant link capacity (bytes/s); see the module docstring.

    Arrays are copied to read-only float64 at construction; invalid data raises
    :class:`PrfaasInputError`. ``offset_s`` is normalised into ``[0, period_s)``.
    """

    times_s: np.ndarray
    bytes_per_s: np.ndarray
    period_s: float
    rtt_s: float = 0.0
    name: str = ""
    offset_s: float = 0.0

    # caches (not dataclass fields): _times (list), _cum (array, len n+1), _n, _period,
    # _offset, _total (bytes per period). Capacities are read with ``bytes_per_s.item(i)``:
    # converting them to a list cost more per episode (a fresh rescaled trace each) than
    # the few hundred lookups an episode makes.

    def __post_init__(self) -> None:
        where = self.name or "bandwidth trace"
        try:
            times = np.array(self.times_s, dtype=np.float64, copy=True).reshape(-1)
            caps = np.array(self.bytes_per_s, dtype=np.float64, copy=True).reshape(-1)
            period = float(self.period_s)
            rtt = float(self.rtt_s)
            offset = float(self.offset_s)
        except (TypeError, ValueError) as exc:
            raise PrfaasInputError(f"non-numeric bandwidth trace data ({exc})", where) from None
        n = times.size
        if n == 0:
            raise PrfaasInputError("a bandwidth trace needs at least one segment", where)
        if caps.size != n:
            raise PrfaasInputError(f"times_s has {n} entries but bytes_per_s has {caps.size}",
                                   where)
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(caps))):
            raise PrfaasInputError("times and capacities must be finite", where)
        if times[0] != 0.0:
            raise PrfaasInputError(f"times_s[0] must be 0, got {times[0]!r}", where)
        if n > 1:
            bad = np.flatnonzero(np.diff(times) <= 0)
            if bad.size:
                j = int(bad[0]) + 1
                raise PrfaasInputError(f"times_s[{j}] = {times[j]!r} is not after "
                                       f"times_s[{j - 1}] = {times[j - 1]!r}", where)
        if np.any(caps < 0):
            j = int(np.flatnonzero(caps < 0)[0])
            raise PrfaasInputError(f"bytes_per_s[{j}] = {caps[j]!r} is negative", where)
        if not math.isfinite(period) or period <= times[-1]:
            raise PrfaasInputError(f"period_s ({period!r}) must be finite and after the last "
                                   f"segment start ({times[-1]!r})", where)
        if not math.isfinite(rtt) or not 0 <= rtt <= MAX_RTT_S:
            raise PrfaasInputError(f"rtt_s must be a number in [0, {MAX_RTT_S:g}] (seconds), "
                                   f"got {rtt!r}", where)
        offset = _normalised_offset(offset, period, where)
        times.setflags(write=False)
        sa = object.__setattr__
        sa(self, "times_s", times)
        sa(self, "period_s", period)
        sa(self, "rtt_s", rtt)
        sa(self, "name", str(self.name))
        sa(self, "offset_s", offset)
        sa(self, "_times", times.tolist())
        sa(self, "_n", n)
        sa(self, "_period", period)
        sa(self, "_offset", offset)
        self._set_capacities(caps)

    def _set_capacities(self, caps: np.ndarray) -> None:
        """Install validated capacities and their caches (construction only)."""
        caps.setflags(write=False)
        durations = np.diff(np.append(self.times_s, self._period))
        cum = np.concatenate(([0.0], np.cumsum(caps * durations)))
        cum.setflags(write=False)
        sa = object.__setattr__
        sa(self, "bytes_per_s", caps)
        sa(self, "_cum", cum)
        sa(self, "_total", cum.item(-1))

    # -- construction helpers ---------------------------------------------------------------

    @classmethod
    def constant(cls, gbps: float, rtt_s: float = 0.0, name: str = "",
                 period_s: float = 1.0) -> BandwidthTrace:
        """One segment of ``gbps`` Gbit/s (``next_change_after`` is always ``inf``)."""
        gbps = float(gbps)
        if not math.isfinite(gbps) or gbps < 0:
            raise PrfaasInputError(f"constant bandwidth must be finite and >= 0 Gbit/s, "
                                   f"got {gbps!r}", name or None)
        return cls(np.zeros(1), np.array([gbps_to_bytes_per_s(gbps)]), period_s,
                   rtt_s=rtt_s, name=name or f"constant-{gbps:g}gbps")

    @classmethod
    def from_samples(cls, times_s: Sequence[float] | np.ndarray,
                     bytes_per_s: Sequence[float] | np.ndarray, *,
                     last_duration_s: float | None = None, rtt_s: float = 0.0,
                     name: str = "", where: str | Path | None = None) -> BandwidthTrace:
        """Samples at increasing times (any origin), at least :data:`MIN_SEGMENT_S` apart:
        shifted to start at 0; the last sample lasts ``last_duration_s`` (default: the
        median sample spacing, 1 s for one sample). Errors name ``where`` (default
        ``name``)."""
        where = where or name or None
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        if t.size == 0:
            raise PrfaasInputError("no bandwidth samples", where)
        magnitude = float(np.max(np.abs(t)))
        t = t - t[0]
        if t.size > 1:
            gaps = np.diff(t)
            i = int(np.argmin(gaps))
            if _closer_than_min_segment(float(gaps[i]), magnitude):
                raise PrfaasInputError(
                    f"samples {i} and {i + 1} are {gaps[i]:.3g} s apart; at least "
                    f"{MIN_SEGMENT_S:g} s", where)
        if last_duration_s is None:
            last_duration_s = float(np.median(np.diff(t))) if t.size > 1 else 1.0
        if not (last_duration_s > 0 and math.isfinite(last_duration_s)):
            raise PrfaasInputError(f"last segment duration must be > 0, got {last_duration_s!r}",
                                   where)
        return cls(t, bytes_per_s, float(t[-1]) + last_duration_s, rtt_s=rtt_s, name=name)

    # -- hot-path queries -------------------------------------------------------------------

    def capacity_at(self, t: float) -> float:
        """Capacity (bytes/s) at episode time ``t`` (right-continuous)."""
        times = self._times
        n = self._n
        if n == 1:
            return self.bytes_per_s.item(0)
        x = self._offset + t
        p = self._period
        u = x % p
        i = bisect_right(times, u) - 1
        end = times[i + 1] if i + 1 < n else p
        if end - u <= (_SNAP_S if x < 1e6 else x * 1e-15):
            i = i + 1 if i + 1 < n else 0
        return self.bytes_per_s.item(i)

    def next_change_after(self, t: float) -> float:
        """Episode time of the first segment boundary strictly after ``t``.

        ``math.inf`` for a one-segment trace. Boundaries between equal-capacity segments
        count too (call :meth:`compact` to merge them).
        """
        n = self._n
        if n == 1:
            return math.inf
        times = self._times
        x = self._offset + t
        p = self._period
        u = x % p
        i = bisect_right(times, u) - 1
        end = times[i + 1] if i + 1 < n else p
        if end - u <= (_SNAP_S if x < 1e6 else x * 1e-15):
            # numerically on the boundary: we are already in the next segment
            i += 1
            if i == n:
                i = 0
                u -= p
            end = times[i + 1] if i + 1 < n else p
        nxt = t + (end - u)
        return nxt if nxt > t else math.nextafter(t, math.inf)

    def segment_at(self, t: float) -> tuple[float, float]:
        """``(capacity_at(t), next_change_after(t))`` with one lookup."""
        n = self._n
        if n == 1:
            return self.bytes_per_s.item(0), math.inf
        times = self._times
        x = self._offset + t
        p = self._period
        u = x % p
        i = bisect_right(times, u) - 1
        end = times[i + 1] if i + 1 < n else p
        if end - u <= (_SNAP_S if x < 1e6 else x * 1e-15):
            i += 1
            if i == n:
                i = 0
                u -= p
            end = times[i + 1] if i + 1 < n else p
        nxt = t + (end - u)
        return self.bytes_per_s.item(i), (nxt if nxt > t else math.nextafter(t, math.inf))

    def _split(self, x: float) -> tuple[int, float]:
        """Absolute trace time ``x`` -> (period index k, position u in [0, period))."""
        p = self._period
        k = math.floor(x / p)
        u = x - k * p
        if u >= p:
            k += 1
            u -= p
        elif u < 0:
            k -= 1
            u += p
        return k, max(u, 0.0)

    def _g(self, u: float) -> float:
        """Bytes delivered from trace time 0 to ``u`` in [0, period]."""
        i = bisect_right(self._times, u) - 1
        return self._cum.item(i) + self.bytes_per_s.item(i) * (u - self._times[i])

    def integral(self, t0: float, t1: float) -> float:
        """Bytes deliverable in episode time ``[t0, t1]`` (0 if ``t1 <= t0``)."""
        if not t1 > t0:
            return 0.0
        if t1 == math.inf:
            return math.inf if self._total > 0 else 0.0
        k0, u0 = self._split(self._offset + t0)
        k1, u1 = self._split(self._offset + t1)
        val = (k1 - k0) * self._total + self._g(u1) - self._g(u0)
        return val if val > 0.0 else 0.0

    def _g_inverse(self, g: float) -> float:
        """Earliest trace position u in [0, period] with ``_g(u) >= g`` (0 < g <= total)."""
        cum = self._cum
        i = int(np.searchsorted(cum, g, side="left")) - 1  # bisect_left
        if i >= self._n:  # g above the total by rounding
            g = cum.item(-1)
            i = int(np.searchsorted(cum, g, side="left")) - 1
        i = max(i, 0)
        cap = self.bytes_per_s.item(i)
        if cap <= 0.0:
            return self._times[i]
        return self._times[i] + (g - cum.item(i)) / cap

    def time_to_deliver(self, t: float, nbytes: float) -> float:
        """Earliest episode time ``t' >= t`` with ``integral(t, t') >= nbytes``.

        ``math.inf`` if the trace never delivers that much (all-zero capacity).
        """
        if not nbytes > 0:
            return t
        total = self._total
        if total <= 0.0:
            return math.inf
        p = self._period
        _, u0 = self._split(self._offset + t)
        g0 = self._g(u0)
        rest_of_period = total - g0
        if nbytes <= rest_of_period:
            return t + max(self._g_inverse(g0 + nbytes) - u0, 0.0)
        need = nbytes - rest_of_period
        m = math.floor(need / total)
        r = need - m * total
        if r <= 0.0:
            m -= 1
            r = total
        return t + (p - u0) + m * p + self._g_inverse(r)

    # -- summaries and transforms -----------------------------------------------------------

    @property
    def n_segments(self) -> int:
        return self._n

    @property
    def mean_bytes_per_s(self) -> float:
        """Time-weighted mean capacity over one period (bytes/s)."""
        return self._total / self._period

    @property
    def mean_gbps(self) -> float:
        return bytes_per_s_to_gbps(self.mean_bytes_per_s)

    def gbps_at(self, t: float) -> float:
        return bytes_per_s_to_gbps(self.capacity_at(t))

    def scaled(self, factor: float) -> BandwidthTrace:
        """Every capacity multiplied by ``factor`` (>= 0)."""
        factor = float(factor)
        if not math.isfinite(factor) or factor < 0:
            raise PrfaasInputError(f"scale factor must be finite and >= 0, got {factor!r}",
                                   self.name or None)
        caps = self.bytes_per_s * factor
        if not np.all(np.isfinite(caps)):
            raise PrfaasInputError(f"scale factor {factor!r} overflows the capacities",
                                   self.name or None)
        new = copy.copy(self)  # times are shared: only the capacities are re-derived
        new._set_capacities(caps)
        return new

    def scaled_to_mean(self, gbps: float) -> BandwidthTrace:
        """Rescaled so the time-weighted mean is ``gbps`` Gbit/s (shape kept)."""
        gbps = float(gbps)
        if not math.isfinite(gbps) or gbps < 0:
            raise PrfaasInputError(f"target mean must be finite and >= 0 Gbit/s, got {gbps!r}",
                                   self.name or None)
        mean = self.mean_bytes_per_s
        if mean <= 0.0:
            raise PrfaasInputError("cannot rescale a bandwidth trace whose mean is zero",
                                   self.name or None)
        return self.scaled(gbps_to_bytes_per_s(gbps) / mean)

    def with_offset(self, offset_s: float) -> BandwidthTrace:
        """Same trace, episodes start at trace time ``offset_s`` (taken modulo the period)."""
        where = self.name or "bandwidth trace"
        try:
            offset = float(offset_s)
        except (TypeError, ValueError) as exc:
            raise PrfaasInputError(f"non-numeric offset_s ({exc})", where) from None
        offset = _normalised_offset(offset, self._period, where)
        new = copy.copy(self)  # shares the validated read-only arrays and their caches
        object.__setattr__(new, "offset_s", offset)
        object.__setattr__(new, "_offset", offset)
        return new

    def window(self, start_frac: float, end_frac: float) -> BandwidthTrace:
        """The part of one period from ``start_frac`` to ``end_frac`` of it (``0 <= start <
        end <= 1``), re-based to trace time 0 and repeating on its own, with offset 0: how a
        recorded link is cut into disjoint train/val/eval parts."""
        lo, hi = float(start_frac), float(end_frac)
        if not 0.0 <= lo < hi <= 1.0:
            raise PrfaasInputError(f"a window needs 0 <= start < end <= 1, got [{lo!r}, "
                                   f"{hi!r}]", self.name or None)
        a, b = lo * self._period, hi * self._period
        times, caps = self.times_s, self.bytes_per_s
        first = bisect_right(self._times, a) - 1  # the segment in effect at ``a``
        inside = np.flatnonzero((times > a) & (times < b))
        return BandwidthTrace(np.concatenate(([0.0], times[inside] - a)),
                              np.concatenate(([caps[first]], caps[inside])), b - a,
                              rtt_s=self.rtt_s, name=f"{self.name}[{lo:.0%}-{hi:.0%}]")

    def with_rtt(self, rtt_s: float) -> BandwidthTrace:
        return dataclasses.replace(self, rtt_s=rtt_s)

    def with_name(self, name: str) -> BandwidthTrace:
        return dataclasses.replace(self, name=name)

    def compact(self) -> BandwidthTrace:
        """Adjacent segments with equal capacity merged (same capacity function)."""
        caps = self.bytes_per_s
        if self._n == 1:
            return self
        keep = np.concatenate(([True], caps[1:] != caps[:-1]))
        if keep.all():
            return self
        return dataclasses.replace(self, times_s=self.times_s[keep], bytes_per_s=caps[keep])

    def __repr__(self) -> str:
        return (f"BandwidthTrace(name={self.name!r}, segments={self._n}, "
                f"period_s={self._period:g}, mean_gbps={self.mean_gbps:.4g}, "
                f"rtt_s={self.rtt_s:g}, offset_s={self._offset:g})")


constant = BandwidthTrace.constant


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PrfaasInputError("file not found", path) from None
    except IsADirectoryError:
        raise PrfaasInputError("is a directory, not a bandwidth trace file (a folder of "
                               "traces goes in a scenario's bandwidth section: {kind: "
                               "trace_dir, path: DIR}, one trace drawn per episode)",
                               path) from None
    except UnicodeDecodeError as exc:
        raise PrfaasInputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                               path) from None
    except OSError as exc:
        raise PrfaasInputError(f"cannot read: {exc.strerror or exc}", path) from None


def _parse_number(token: str, what: str, lineno: int, path: Path) -> float:
    try:
        val = float(token)
    except ValueError:
        raise PrfaasInputError(f"line {lineno}: {what} {token!r} is not a number",
                               path) from None
    if not math.isfinite(val):
        raise PrfaasInputError(f"line {lineno}: {what} {token!r} is not finite", path)
    return val


def _check_sample(times: list[float], t: float, bw: float, unit: str, lineno: int,
                  path: Path) -> None:
    if times and t <= times[-1]:
        raise PrfaasInputError(f"line {lineno}: time {t!r} is not after the previous time "
                               f"{times[-1]!r}", path)
    # from_samples' spacing rule, here with the line that breaks it
    if times and _closer_than_min_segment(t - times[-1], max(abs(times[0]), abs(t))):
        raise PrfaasInputError(f"line {lineno}: time {t!r} is {t - times[-1]:.3g} s after the "
                               f"previous time; at least {MIN_SEGMENT_S:g} s", path)
    if bw < 0:
        raise PrfaasInputError(f"line {lineno}: bandwidth {bw!r} {unit} is negative", path)
    if bw > MAX_GBPS * (1000.0 if unit == "Mbit/s" else 1.0):
        raise PrfaasInputError(f"line {lineno}: bandwidth {bw!r} {unit} is more than a "
                               f"link carries ({MAX_GBPS:g} Gbit/s at most: the wrong unit?)",
                               path)


def load_pensieve(path: str | Path) -> BandwidthTrace:
    """Pensieve "cooked" trace: ``time_s  throughput_Mbps`` per line, whitespace separated.

    Sample ``i`` holds until sample ``i+1``; the last one for the median spacing. Blank lines
    and ``#`` comments are skipped.
    """
    path = Path(path)
    times: list[float] = []
    vals: list[float] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        tok = s.split()
        if len(tok) != 2:
            raise PrfaasInputError(f"line {lineno}: expected 2 columns (time_s Mbps), "
                                   f"got {len(tok)}", path)
        t = _parse_number(tok[0], "time", lineno, path)
        mbps = _parse_number(tok[1], "bandwidth", lineno, path)
        _check_sample(times, t, mbps, "Mbit/s", lineno, path)
        times.append(t)
        vals.append(mbps)
    if not times:
        raise PrfaasInputError("empty bandwidth trace (no samples)", path)
    return BandwidthTrace.from_samples(times, np.asarray(vals) * (1e6 / 8.0), name=path.name,
                                       where=path)


def load_csv(path: str | Path) -> BandwidthTrace:
    """CSV with header ``time_s,gbps`` (Gbit/s); sample semantics as :func:`load_pensieve`."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path)))
    header: list[str] | None = None
    times: list[float] = []
    vals: list[float] = []
    try:
        for row in reader:
            lineno = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None:
                header = [c.lower() for c in cells]
                if header != ["time_s", "gbps"]:
                    raise PrfaasInputError(f"line {lineno}: expected header 'time_s,gbps', "
                                           f"got {','.join(cells)!r}", path)
                continue
            if len(cells) != 2:
                raise PrfaasInputError(f"line {lineno}: expected 2 columns (time_s,gbps), "
                                       f"got {len(cells)}", path)
            t = _parse_number(cells[0], "time", lineno, path)
            gbps = _parse_number(cells[1], "bandwidth", lineno, path)
            _check_sample(times, t, gbps, "Gbit/s", lineno, path)
            times.append(t)
            vals.append(gbps)
    except csv.Error as exc:
        raise PrfaasInputError(f"line {reader.line_num}: malformed CSV ({exc})", path) from None
    if header is None:
        raise PrfaasInputError("empty file (expected header 'time_s,gbps')", path)
    if not times:
        raise PrfaasInputError("no samples after the header", path)
    return BandwidthTrace.from_samples(times, np.asarray(vals) * (1e9 / 8.0), name=path.name,
                                       where=path)


def _json_numbers(obj: Any, key: str, path: Path) -> list[float]:
    if not isinstance(obj, list):
        raise PrfaasInputError(f"'{key}' must be a list of numbers", path)
    out: list[float] = []
    for j, v in enumerate(obj):
        if not is_finite_number(v):
            raise PrfaasInputError(f"{key}[{j}] = {v!r} is not a finite number", path)
        out.append(float(v))
    return out


def load_pantheon(path: str | Path) -> BandwidthTrace:
    """Genet/Pantheon JSON: ``timestamps`` (s), ``bandwidths`` (Mbit/s), ``delays`` (one-way ms).

    The leading 0.1 Mbit/s placeholder bin is dropped; ``rtt_s = 2 * delays[0] / 1000``
    (0 if ``delays`` is absent or empty).
    """
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise PrfaasInputError(f"line {exc.lineno}: invalid JSON ({exc.msg})", path) from None
    except RecursionError:
        raise PrfaasInputError("invalid JSON (nested too deeply)", path) from None
    if not isinstance(data, dict):
        raise PrfaasInputError("expected a JSON object with 'timestamps' and 'bandwidths'", path)
    for key in ("timestamps", "bandwidths"):
        if key not in data:
            raise PrfaasInputError(f"missing key '{key}'", path)
    ts = _json_numbers(data["timestamps"], "timestamps", path)
    bw = _json_numbers(data["bandwidths"], "bandwidths", path)
    if len(ts) != len(bw):
        raise PrfaasInputError(f"'timestamps' has {len(ts)} entries but 'bandwidths' has "
                               f"{len(bw)}", path)
    if not ts:
        raise PrfaasInputError("empty bandwidth trace (no samples)", path)
    placeholder = len(ts) > 1 and abs(bw[0] - _PANTHEON_PLACEHOLDER_MBPS) < 1e-9
    first = 1 if placeholder else 0  # the first sample kept
    # the spacing rule of from_samples, on the samples kept, named by the file's indices
    magnitude = max(abs(ts[first]), abs(ts[-1]))
    for j in range(1, len(ts)):
        if ts[j] <= ts[j - 1]:
            raise PrfaasInputError(f"timestamps[{j}] = {ts[j]!r} is not after "
                                   f"timestamps[{j - 1}] = {ts[j - 1]!r}", path)
        if j > first and _closer_than_min_segment(ts[j] - ts[j - 1], magnitude):
            raise PrfaasInputError(f"timestamps[{j - 1}] and timestamps[{j}] are "
                                   f"{ts[j] - ts[j - 1]:.3g} s apart; at least "
                                   f"{MIN_SEGMENT_S:g} s", path)
    for j, v in enumerate(bw):
        if v < 0:
            raise PrfaasInputError(f"bandwidths[{j}] = {v!r} is negative", path)
        if v > MAX_GBPS * 1000.0:
            raise PrfaasInputError(f"bandwidths[{j}] = {v!r} Mbit/s is more than a link "
                                   f"carries ({MAX_GBPS:g} Gbit/s at most: the wrong unit?)",
                                   path)
    rtt = 0.0
    delays = data.get("delays")
    if delays is not None:
        if isinstance(delays, (int, float)) and not isinstance(delays, bool):
            delays = [delays]
        d = _json_numbers(delays, "delays", path)
        if d:
            if d[0] < 0:
                raise PrfaasInputError(f"delays[0] = {d[0]!r} is negative", path)
            if d[0] > 1e6:  # a typo guard, as for bandwidths: 1000 s one way
                raise PrfaasInputError(f"delays[0] = {d[0]!r} ms is more than 1,000,000 ms",
                                       path)
            rtt = 2.0 * d[0] / 1000.0
    spacing = float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0
    if placeholder:
        ts, bw = ts[1:], bw[1:]
    return BandwidthTrace.from_samples(ts, np.asarray(bw) * (1e6 / 8.0),
                                       last_duration_s=spacing, rtt_s=rtt, name=path.name,
                                       where=path)


_LOADERS = {"pensieve": load_pensieve, "pantheon": load_pantheon, "csv": load_csv}


def _infer_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "pantheon"
    if suffix == ".csv":
        return "csv"
    return "pensieve"


def _check_format(format: str | None, where: Any) -> str | None:
    if format is None:
        return None
    if not isinstance(format, str) or format.lower() not in BANDWIDTH_FORMATS:
        raise PrfaasInputError(f"unknown bandwidth format {format!r}; expected one of "
                               f"{', '.join(BANDWIDTH_FORMATS)}", where)
    return format.lower()


def load_bandwidth(path: str | Path, format: str | None = None) -> BandwidthTrace:
    """Load one trace file; ``format`` in :data:`BANDWIDTH_FORMATS` or inferred from the
    suffix (``.json`` pantheon, ``.csv`` csv, anything else pensieve)."""
    path = Path(path)
    fmt = _check_format(format, path) or _infer_format(path)
    return _LOADERS[fmt](path)


def _is_trace_file(rel: Path, fmt: str | None) -> bool:
    if any(part.startswith((".", "__")) for part in rel.parts):
        return False
    suffix = rel.suffix.lower()
    if suffix in _DOC_SUFFIXES or rel.name.lower().startswith(_DOC_STEMS):
        return False
    if fmt is None:
        return True
    return _infer_format(rel) == fmt


def load_bandwidth_dir(path: str | Path, format: str | None = None,
                       limit: int | None = None) -> list[BandwidthTrace]:
    """Every trace file under ``path`` (recursive, sorted by relative path, first ``limit``).

    Hidden files and documentation (``*.md``, README, SOURCE, LICENSE, YAML, ...) are
    skipped; with an explicit ``format`` only matching files are read (``*.json`` for
    pantheon, ``*.csv`` for csv, other files for pensieve). Trace names are the paths
    relative to ``path``.
    """
    root = Path(path)
    fmt = _check_format(format, root)
    if not root.is_dir():
        raise PrfaasInputError("not a directory" if root.exists() else "directory not found",
                               root)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise PrfaasInputError(f"limit must be a positive integer, got {limit!r}", root)
    files = sorted((p for p in root.rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    chosen = [p for p in files if _is_trace_file(p.relative_to(root), fmt)]
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        raise PrfaasInputError(f"no bandwidth trace files found (format {fmt or 'any'})", root)
    return [load_bandwidth(p, fmt).with_name(p.relative_to(root).as_posix()) for p in chosen]


# --------------------------------------------------------------------------------------------
# Synthetic generators
# --------------------------------------------------------------------------------------------


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _require(cond: bool, message: str, where: str) -> None:
    if not cond:
        raise PrfaasInputError(message, where)


def _positive(x: float, name: str, where: str) -> float:
    x = float(x)
    _require(math.isfinite(x) and x > 0, f"{name} must be finite and > 0, got {x!r}", where)
    return x


def _nonneg(x: float, name: str, where: str) -> float:
    x = float(x)
    _require(math.isfinite(x) and x >= 0, f"{name} must be finite and >= 0, got {x!r}", where)
    return x


_MAX_SEGMENTS = 10_000_000
_MAX_SEGMENTS_IN_ALL = 4 * _MAX_SEGMENTS  # over a sampler's variants: about 0.6 GB


def _check_segments(duration_s: float, dt_s: float, where: str) -> None:
    """Refuse a generated trace of more than ``_MAX_SEGMENTS`` steps before building it."""
    segments = duration_s / dt_s
    _require(segments <= _MAX_SEGMENTS, f"duration_s / dt_s is {segments:.3g} segments; at "
             f"most {_MAX_SEGMENTS:,}", where)


def markov_levels(rng: np.random.Generator, duration_s: float, levels_gbps: Sequence[float],
                  mean_hold_s: float, dt_s: float = 1.0, *,
                  where: str = "markov_levels") -> BandwidthTrace:
    """Markov-modulated capacity: hold a level for an exponential time (mean ``mean_hold_s``,
    rounded to a multiple of ``dt_s``, at least one), then jump to a different level chosen
    uniformly. The first level is uniform too. Period ``duration_s``. ``where`` locates
    errors (a scenario's ``bandwidth`` section)."""
    duration_s = _positive(duration_s, "duration_s", where)
    mean_hold_s = _positive(mean_hold_s, "mean_hold_s", where)
    dt_s = _positive(dt_s, "dt_s", where)
    _require(dt_s >= MIN_SEGMENT_S, f"dt_s must be >= {MIN_SEGMENT_S:g} s, got {dt_s:g}", where)
    levels = [_nonneg(v, "levels_gbps entry", where) for v in levels_gbps]
    _require(len(levels) > 0, "levels_gbps must not be empty", where)
    _check_segments(duration_s, dt_s, where)
    k = len(levels)
    end_step = duration_s / dt_s
    steps: list[int] = []
    idx: list[int] = []
    step = 0
    cur = int(rng.integers(k))
    while step < end_step:
        steps.append(step)
        idx.append(cur)
        hold = max(1, int(round(float(rng.exponential(mean_hold_s)) / dt_s)))
        step += hold
        if k > 1:
            nxt = int(rng.integers(k - 1))
            cur = nxt if nxt < cur else nxt + 1
    caps = np.asarray([levels[i] for i in idx]) * (1e9 / 8.0)
    return BandwidthTrace(np.asarray(steps, dtype=np.float64) * dt_s, caps, duration_s,
                          name="markov").compact()


def mean_reverting(rng: np.random.Generator, duration_s: float, mean_gbps: float, cv: float,
                   tau_s: float, dt_s: float = 1.0, floor_frac: float = 0.05, *,
                   where: str = "mean_reverting") -> BandwidthTrace:
    """Ornstein-Uhlenbeck capacity sampled every ``dt_s`` (piecewise constant between samples):
    mean ``mean_gbps``, stationary std ``cv * mean_gbps``, correlation time ``tau_s``, started
    from the stationary law and clipped below at ``floor_frac * mean_gbps``. ``where``
    locates errors."""
    duration_s = _positive(duration_s, "duration_s", where)
    mean = _nonneg(mean_gbps, "mean_gbps", where)
    cv = _nonneg(cv, "cv", where)
    tau_s = _positive(tau_s, "tau_s", where)
    dt_s = _positive(dt_s, "dt_s", where)
    _require(dt_s >= MIN_SEGMENT_S, f"dt_s must be >= {MIN_SEGMENT_S:g} s, got {dt_s:g}", where)
    floor_frac = _nonneg(floor_frac, "floor_frac", where)
    _check_segments(duration_s, dt_s, where)
    n = max(1, math.ceil(duration_s / dt_s - 1e-9))
    sigma = cv * mean
    a = math.exp(-dt_s / tau_s)
    noise = rng.standard_normal(n)
    innov = sigma * math.sqrt(max(0.0, 1.0 - a * a))
    x = np.empty(n)
    cur = mean + sigma * noise[0]
    x[0] = cur
    for j in range(1, n):
        cur = mean + a * (cur - mean) + innov * noise[j]
        x[j] = cur
    np.maximum(x, floor_frac * mean, out=x)
    times = np.arange(n, dtype=np.float64) * dt_s
    return BandwidthTrace(times, x * (1e9 / 8.0), duration_s, name="ou").compact()


def with_drops(rng: np.random.Generator, trace: BandwidthTrace, rate_per_s: float, depth: float,
               mean_duration_s: float) -> BandwidthTrace:
    """Sudden drops: a Poisson process (``rate_per_s``, over one period, in trace time) of
    intervals with exponential length (mean ``mean_duration_s``, wrapping around) during which
    capacity is multiplied by ``1 - depth``; overlapping drops do not compound. ``depth=1``
    gives outages (zero capacity). RTT, name and offset are kept."""
    where = "with_drops"
    rate = _nonneg(rate_per_s, "rate_per_s", where)
    _require(rate <= 1.0 / MIN_SEGMENT_S,
             f"rate_per_s must be <= {1.0 / MIN_SEGMENT_S:g}, got {rate:g}", where)
    depth = float(depth)
    _require(0.0 <= depth <= 1.0, f"depth must be in [0, 1], got {depth!r}", where)
    mean_dur = _positive(mean_duration_s, "mean_duration_s", where)
    _require(mean_dur >= MIN_SEGMENT_S,
             f"mean_duration_s must be >= {MIN_SEGMENT_S:g}, got {mean_dur:g}", where)
    p = trace.period_s
    count = int(rng.poisson(rate * p))
    starts = np.sort(rng.uniform(0.0, p, size=count))
    durs = rng.exponential(mean_dur, size=count)
    if count == 0 or depth == 0.0:
        return trace
    s_list: list[float] = []
    e_list: list[float] = []
    for s, d in zip(starts.tolist(), durs.tolist(), strict=True):
        e = s + d
        if d >= p:
            s_list.append(0.0)
            e_list.append(p)
        elif e > p:
            s_list += [s, 0.0]
            e_list += [p, e - p]
        else:
            s_list.append(s)
            e_list.append(e)
    s_arr = np.sort(np.asarray(s_list))
    e_arr = np.sort(np.asarray(e_list))
    edges = np.concatenate((trace.times_s, s_arr, e_arr[e_arr < p]))
    bounds = np.unique(edges)
    active = (np.searchsorted(s_arr, bounds, side="right")
              - np.searchsorted(e_arr, bounds, side="right")) > 0
    base_idx = np.searchsorted(trace.times_s, bounds, side="right") - 1
    caps = trace.bytes_per_s[base_idx] * np.where(active, 1.0 - depth, 1.0)
    return dataclasses.replace(trace, times_s=bounds, bytes_per_s=caps).compact()


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------

_COMMON_KEYS = ("kind", "rtt_s", "drops")
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("gbps",),
    "markov": ("levels_gbps", "mean_hold_s", "duration_s", "dt_s"),
    "ou": ("mean_gbps", "cv", "tau_s", "duration_s", "dt_s", "floor_frac"),
    "trace": ("path", "format", "scale_to_gbps"),
    "trace_dir": ("path", "format", "scale_to_gbps", "limit"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "constant": ("gbps",),
    "markov": ("levels_gbps", "mean_hold_s"),
    "ou": ("mean_gbps", "cv", "tau_s"),
    "trace": ("path",),
    "trace_dir": ("path",),
}
_SAMPLER_KEYS = ("variants", "mean_gbps_range", "random_offset")
_DROP_KEYS = ("rate_per_s", "depth", "mean_duration_s")
_DEFAULT_DURATION_S = 3600.0


def _spec_number(spec: Mapping[str, Any], key: str, where: str, *, default: Any = None,
                 minimum: float | None = None, strict: bool = False,
                 maximum: float | None = None) -> float:
    w = f"{where}.{key}"
    v = spec.get(key, default)
    if v is None:
        raise PrfaasInputError("missing required key", w)
    if not is_finite_number(v):
        raise PrfaasInputError(f"expected a finite number, got {v!r}", w)
    v = float(v)
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise PrfaasInputError(f"must be {'>' if strict else '>='} {minimum:g}, got {v:g}", w)
    if maximum is not None and v > maximum:
        raise PrfaasInputError(f"must be <= {maximum:g}, got {v:g}", w)
    return v


def _check_keys(spec: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in spec:
        if key not in allowed:
            raise PrfaasInputError(f"unknown key {key!r} (allowed: {', '.join(allowed)})",
                                   f"{where}.{key}")


def _as_mapping(spec: Any, where: str) -> dict[str, Any]:
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return {"kind": "constant", "gbps": spec}
    if not isinstance(spec, Mapping):
        raise PrfaasInputError(f"expected a mapping with a 'kind' key, got {type(spec).__name__}",
                               where)
    return dict(spec)


def _spec_kind(spec: Mapping[str, Any], where: str) -> str:
    kind = spec.get("kind")
    if kind is None:
        raise PrfaasInputError(f"missing required key (one of {', '.join(SPEC_KINDS)})",
                               f"{where}.kind")
    if kind not in SPEC_KINDS:
        raise PrfaasInputError(f"unknown kind {kind!r}; expected one of {', '.join(SPEC_KINDS)}",
                               f"{where}.kind")
    return str(kind)


def _resolve_path(spec: Mapping[str, Any], where: str, base_dir: str | Path | None) -> Path:
    raw = spec.get("path")
    if not isinstance(raw, (str, Path)) or not str(raw):
        raise PrfaasInputError(f"expected a path string, got {raw!r}", f"{where}.path")
    return resolve_path(raw, Path(base_dir) if base_dir is not None else None, f"{where}.path")


def _apply_common(trace: BandwidthTrace, spec: Mapping[str, Any], rng: np.random.Generator,
                  where: str) -> BandwidthTrace:
    if "rtt_s" in spec:
        trace = trace.with_rtt(_spec_number(spec, "rtt_s", where, minimum=0.0))
    drops = spec.get("drops")
    if drops is not None:
        dw = f"{where}.drops"
        if not isinstance(drops, Mapping):
            raise PrfaasInputError("expected a mapping {rate_per_s, depth, mean_duration_s}", dw)
        _check_keys(drops, _DROP_KEYS, dw)
        # each drop adds up to two boundaries: on average at most two per MIN_SEGMENT_S
        rate = _spec_number(drops, "rate_per_s", dw, minimum=0.0, maximum=1.0 / MIN_SEGMENT_S)
        depth = _spec_number(drops, "depth", dw, minimum=0.0)
        if depth > 1.0:
            raise PrfaasInputError(f"must be <= 1, got {depth:g}", f"{dw}.depth")
        dur = _spec_number(drops, "mean_duration_s", dw, minimum=MIN_SEGMENT_S)
        if rate * trace.period_s > _MAX_SEGMENTS:
            raise PrfaasInputError(
                f"{rate:g} drops a second over a {trace.period_s:g} s trace are "
                f"{rate * trace.period_s:.3g} drops; at most {_MAX_SEGMENTS:,}",
                f"{dw}.rate_per_s")
        trace = with_drops(rng, trace, rate, depth, dur)
    return trace


class LinkPart(NamedTuple):
    """The part of recorded links one split uses: part ``index`` of the partition of each
    trace's span (or of a folder's traces) at the fractions ``cuts`` (from 0 to 1)."""

    cuts: tuple[float, ...]
    index: int


def _refuse_empty(traces: list[BandwidthTrace], what: str, where: str) -> None:
    """KV sent over a link whose capacity is zero throughout would never arrive (nor can
    such a trace be rescaled): refuse it, naming the trace (and ``what`` part of it)."""
    for tr in traces:
        if tr.mean_bytes_per_s <= 0:
            raise PrfaasInputError(f"trace {tr.name!r}{what} carries nothing: its capacity "
                                   "is zero throughout", where)


def _recorded_part(traces: list[BandwidthTrace], kind: str,
                   part: LinkPart) -> list[BandwidthTrace]:
    """A folder whose every part is at least one file's worth (``n`` files times each
    part's fraction >= 1: 10 files at 70/10/20%) is partitioned by file, in an order fixed
    by a hash of each file's name, so that a folder sorted by source or date does not put
    one source in one part; otherwise every trace is cut by time
    (:meth:`BandwidthTrace.window`). The choice depends on the folder and the cuts only, so
    all parts make the same one and never overlap."""
    n, cuts = len(traces), part.cuts
    if kind == "trace_dir" and all((b - a) * n >= 1 - 1e-9 for a, b in zip(cuts, cuts[1:])):
        order = sorted(traces, key=lambda t: hashlib.sha256(t.name.encode()).hexdigest())
        lo, hi = (math.floor(round(c * n, 9)) for c in cuts[part.index:part.index + 2])
        return order[lo:hi]
    return [tr.window(cuts[part.index], cuts[part.index + 1]) for tr in traces]


def _generate(spec: dict[str, Any], kind: str, rng: np.random.Generator, where: str,
              base_dir: str | Path | None,
              part: LinkPart | None = None) -> list[BandwidthTrace]:
    """Traces for one validated spec (several for ``trace_dir``); of recorded traces only
    ``part`` when one is given (:func:`_recorded_part`)."""
    if kind == "constant":
        gbps = _spec_number(spec, "gbps", where, minimum=0.0, maximum=MAX_GBPS)
        traces = [BandwidthTrace.constant(gbps)]
    elif kind == "markov":
        levels = spec.get("levels_gbps")
        lw = f"{where}.levels_gbps"
        if isinstance(levels, (int, float)) and not isinstance(levels, bool):
            levels = [levels]
        if not isinstance(levels, (list, tuple)) or not levels:
            raise PrfaasInputError(f"expected a non-empty list of Gbit/s values, got {levels!r}",
                                   lw)
        for j, v in enumerate(levels):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and 0 <= v <= MAX_GBPS):
                raise PrfaasInputError(f"entry {j} ({v!r}) must be a number in [0, "
                                       f"{MAX_GBPS:g}] Gbit/s", lw)
        traces = [markov_levels(
            rng,
            _spec_number(spec, "duration_s", where, default=_DEFAULT_DURATION_S, minimum=0.0,
                         strict=True),
            [float(v) for v in levels],
            _spec_number(spec, "mean_hold_s", where, minimum=0.0, strict=True),
            _spec_number(spec, "dt_s", where, default=1.0, minimum=0.0, strict=True),
            where=where)]
    elif kind == "ou":
        traces = [mean_reverting(
            rng,
            _spec_number(spec, "duration_s", where, default=_DEFAULT_DURATION_S, minimum=0.0,
                         strict=True),
            _spec_number(spec, "mean_gbps", where, minimum=0.0, maximum=MAX_GBPS),
            _spec_number(spec, "cv", where, minimum=0.0),
            _spec_number(spec, "tau_s", where, minimum=0.0, strict=True),
            _spec_number(spec, "dt_s", where, default=1.0, minimum=0.0, strict=True),
            _spec_number(spec, "floor_frac", where, default=0.05, minimum=0.0),
            where=where)]
    else:
        fmt = _check_format(spec.get("format"), f"{where}.format")
        path = _resolve_path(spec, where, base_dir)
        if kind == "trace":
            traces = [load_bandwidth(path, fmt).with_name(str(spec["path"]))]
        else:
            limit = spec.get("limit")
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                      or limit < 1):
                raise PrfaasInputError(f"expected a positive integer, got {limit!r}",
                                       f"{where}.limit")
            traces = load_bandwidth_dir(path, fmt, limit)
    _refuse_empty(traces, "", where)
    if spec.get("scale_to_gbps") is not None:  # a key of the trace kinds only
        gbps = _spec_number(spec, "scale_to_gbps", where, minimum=0.0, strict=True,
                            maximum=MAX_GBPS)
        traces = [tr.scaled_to_mean(gbps) for tr in traces]
    if part is not None and kind in ("trace", "trace_dir"):
        traces = _recorded_part(traces, kind, part)
        _refuse_empty(traces, " (the part of the trace a split uses)", where)
    return [_apply_common(tr, spec, rng, where) for tr in traces]


def _validated(spec: Any, where: str, extra_keys: tuple[str, ...] = ()) -> tuple[dict, str]:
    spec = _as_mapping(spec, where)
    kind = _spec_kind(spec, where)
    _check_keys(spec, _COMMON_KEYS + _KIND_KEYS[kind] + extra_keys, where)
    for key in _REQUIRED[kind]:
        if spec.get(key) is None:
            raise PrfaasInputError("missing required key", f"{where}.{key}")
    return spec, kind


def synthetic_from_spec(spec: Mapping[str, Any] | float, rng: np.random.Generator | int | None,
                        where: str = "bandwidth",
                        base_dir: str | Path | None = None) -> BandwidthTrace:
    """One trace from a spec mapping (see the module docstring).

    For ``trace_dir`` one of the directory's traces is picked with ``rng``. A relative path
    is looked for in ``base_dir`` (the scenario's folder) first, then where
    :mod:`prfaas_gym.data_paths` says.
    """
    rng = _as_rng(rng)
    spec, kind = _validated(spec, where)
    traces = _generate(spec, kind, rng, where, base_dir)
    if len(traces) == 1:
        return traces[0]
    return traces[int(rng.integers(len(traces)))]


@dataclass
class BandwidthSampler:
    """Per-episode link randomisation over a fixed set of traces.

    :meth:`sample` picks a trace uniformly, a uniform start offset in ``[0, period)`` (if
    ``random_offset``) and, when ``mean_gbps_range = (lo, hi)`` is set, rescales it to a
    uniform random mean in that range.
    """

    traces: Sequence[BandwidthTrace]
    mean_gbps_range: tuple[float, float] | None = None
    random_offset: bool = True
    name: str = field(default="bandwidth")

    def __post_init__(self) -> None:
        self.traces = tuple(self.traces)
        if not self.traces:
            raise PrfaasInputError("needs at least one trace", self.name)
        for tr in self.traces:
            if not isinstance(tr, BandwidthTrace):
                raise PrfaasInputError(f"expected BandwidthTrace objects, got "
                                       f"{type(tr).__name__}", self.name)
        if self.mean_gbps_range is not None:
            r = self.mean_gbps_range
            w = f"{self.name}.mean_gbps_range"
            if (not isinstance(r, (list, tuple)) or len(r) != 2
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in r)):
                raise PrfaasInputError(f"expected [lo, hi] in Gbit/s, got {r!r}", w)
            lo, hi = float(r[0]), float(r[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= MAX_GBPS):
                raise PrfaasInputError(f"need 0 < lo <= hi <= {MAX_GBPS:g}, got [{lo:g}, "
                                       f"{hi:g}]", w)
            self.mean_gbps_range = (lo, hi)
            for tr in self.traces:
                if tr.mean_bytes_per_s <= 0:
                    raise PrfaasInputError(f"trace {tr.name!r} has zero mean and cannot be "
                                           "rescaled", w)

    def __len__(self) -> int:
        return len(self.traces)

    def sample(self, rng: np.random.Generator | int | None) -> BandwidthTrace:
        rng = _as_rng(rng)
        tr = self.traces[int(rng.integers(len(self.traces)))]
        if self.random_offset:
            tr = tr.with_offset(float(rng.uniform(0.0, tr.period_s)))
        if self.mean_gbps_range is not None:
            lo, hi = self.mean_gbps_range
            tr = tr.scaled_to_mean(float(rng.uniform(lo, hi)))
        return tr


def bandwidth_sampler_from_spec(spec: Mapping[str, Any] | float,
                                rng_seed_or_rng: np.random.Generator | int | None = None,
                                base_dir: str | Path | None = None,
                                where: str = "bandwidth",
                                part: LinkPart | None = None) -> BandwidthSampler:
    """A :class:`BandwidthSampler` from a spec (the trace spec plus ``variants``,
    ``mean_gbps_range`` and ``random_offset``).

    ``markov``/``ou`` (and ``constant`` with ``drops``) generate ``variants`` traces (default
    8) from the seed; ``trace``/``trace_dir`` use the file(s) as they are, or, given a
    :class:`LinkPart`, only that part: a share of a folder's files where every part's
    share is at least one file, else the same share of each trace's span (after
    ``scale_to_gbps``, which rescales the whole recording).
    """
    rng = _as_rng(rng_seed_or_rng)
    spec, kind = _validated(spec, where, _SAMPLER_KEYS)
    variants = spec.pop("variants", None)
    if variants is None:
        variants = 8
    elif isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
        raise PrfaasInputError(f"expected a positive integer, got {variants!r}",
                               f"{where}.variants")
    elif kind in ("trace", "trace_dir"):
        raise PrfaasInputError(f"only applies to synthetic kinds, not {kind!r}",
                               f"{where}.variants")
    rng_range = spec.pop("mean_gbps_range", None)
    random_offset = spec.pop("random_offset", True)
    if not isinstance(random_offset, bool):
        raise PrfaasInputError(f"expected true or false, got {random_offset!r}",
                               f"{where}.random_offset")
    if rng_range is not None and not isinstance(rng_range, (list, tuple)):
        raise PrfaasInputError(f"expected [lo, hi] in Gbit/s, got {rng_range!r}",
                               f"{where}.mean_gbps_range")
    if kind in ("markov", "ou") or (kind == "constant" and spec.get("drops") is not None):
        traces: list[BandwidthTrace] = []
        segments = 0
        for j in range(variants):
            traces += [tr.with_name(f"{tr.name}-{j}")
                       for tr in _generate(spec, kind, rng, where, base_dir)]
            segments += traces[-1].times_s.size
            # the first variant's size tells, before memory runs out, not after
            if max(segments, variants * traces[0].times_s.size) > _MAX_SEGMENTS_IN_ALL:
                raise PrfaasInputError(
                    f"{variants:,} variants (the default is 8) of about "
                    f"{traces[0].times_s.size:,} segments each are more than "
                    f"{_MAX_SEGMENTS_IN_ALL:,} segments in all: fewer variants, or a shorter "
                    "duration_s or a longer dt_s", f"{where}.variants")
    else:
        traces = _generate(spec, kind, rng, where, base_dir, part)
    return BandwidthSampler(traces, tuple(rng_range) if rng_range is not None else None,
                            random_offset, name=where)
