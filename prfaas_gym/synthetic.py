"""Seeded synthetic workloads: arrival processes, length distributions, prefix sharing.

Every sampler takes a :class:`numpy.random.Generator` first, so a workload is a pure function
of its seed. The pieces compose:

* arrivals (sorted float64 seconds, ``n`` of them, starting near 0): :func:`poisson`,
  :func:`uniform`, :func:`gamma_renewal`, :func:`mmpp`, :func:`diurnal`, :func:`spikes`,
  plus :func:`quantize` (floor onto a time grid, as traces that batch arrivals do);
* lengths (int64 token counts >= 1): :func:`truncated_lognormal`, :func:`bounded_pareto`,
  :func:`empirical`, :func:`empirical_quantiles`, :func:`mixture`, :func:`constant` (and
  :func:`empirical_from_trace` to read a trace's lengths);
* prefix sharing on a :class:`Draft` (request columns before block hashes exist):
  :func:`independent`, :func:`with_system_prompts`, :func:`with_sessions`, then
  :func:`to_workload` assigns Mooncake-style block hashes;
* :func:`generate` builds a :class:`~prfaas_gym.request.Workload` from a YAML-style spec;
  :func:`spec_mean_rate` / :func:`with_rate` read / change its mean request rate.

Spec schema (``generate``; unknown keys are errors, reported as ``where.key.path``)::

    arrivals:                         # required
      process: poisson                # poisson | uniform | gamma | mmpp | diurnal | spikes
      rate: 2.0                       # req/s (poisson, uniform, gamma, diurnal; spikes: base)
      cv: 3.0                         # gamma: coefficient of variation of inter-arrival gaps
      rate_on: 8.0                    # mmpp: rate in the on / off state (rate_off may be 0)
      rate_off: 0.5
      mean_on_s: 20.0                 # mmpp: mean (exponential) sojourn in each state
      mean_off_s: 60.0
      amplitude: 0.5                  # diurnal: rate * (1 + amplitude * sin(2 pi (t + phase_s)
      period_s: 86400.0               #          / period_s)), 0 <= amplitude <= 1
      phase_s: 0.0                    # diurnal, optional
      multiplier: 5.0                 # spikes: rate during a spike = multiplier * rate
      duration_s: 30.0                # spikes: length of a spike
      times: [100, 900]               # spikes: spike start times, or instead
      mean_gap_s: 600.0               #   random spike starts (Poisson, this mean gap)
      quantum_s: 3.0                  # optional, any process: floor arrivals onto this grid
    prompt: {dist: lognormal, mu: 9.90, sigma: 1.0, low: 128, high: 131072}   # required
    output: {dist: constant, value: 1024}                                       # required
    prefix:                           # optional; without it requests carry no block hashes
      system_prompts: {count: 8, tokens: 2048, zipf_s: 1.1, fraction: 1.0}
      sessions: {fraction: 0.5, turns_mean: 4, think_time_s: 30,
                 user_tokens: {dist: constant, value: 200}, max_prompt_tokens: 131072,
                 warmup_s: 600}
    block_size: 512                   # optional (default 512)
    name: my-workload                 # optional workload name
    description: free text            # optional, ignored

Length specs (``prompt``, ``output``, ``sessions.user_tokens``)::

    {dist: constant, value: V}
    {dist: lognormal, mu: M, sigma: S, low: 1, high: null}  # natural log; truncated to [low, high]
    {dist: pareto, alpha: A, low: L, high: H}               # bounded Pareto on [L, H]
    {dist: empirical, trace: PATH, format: vidur, column: prompt}  # resample a trace's lengths
    {dist: empirical, values: [..]}                          # resample these values
    {dist: quantiles, values: [q0, ..., qm]}                 # piecewise-linear inverse CDF
                                                             # through m+1 equally spaced quantiles
    {dist: mixture, components: [{weight: 0.2, dist: ...}, {weight: 0.8, dist: ...}]}

Prefix semantics:

* ``system_prompts``: a pool of ``count`` system prompts (``tokens``: one length for all, or a
  list of ``count`` lengths). A ``fraction`` of conversations (default all) gets one, chosen
  with Zipf popularity ``P(j) ~ 1 / j**zipf_s`` (``zipf_s`` default 1.0, 0 = uniform), prepended
  to the sampled ``prompt`` (so prompt tokens = system tokens + sampled length).
* ``sessions``: a ``fraction`` of all requests (expected, in steady state) belongs to
  multi-turn sessions whose number of turns is geometric with mean ``turns_mean`` (>= 1).
  Turn ``k+1`` arrives ``Exp(think_time_s)`` after turn ``k`` and its prompt is turn ``k``'s
  prompt + turn ``k``'s output + ``user_tokens`` new tokens (default: the ``prompt``
  distribution), so it extends turn ``k``'s full blocks. A session ends early instead of
  exceeding ``max_prompt_tokens`` (default: the ``prompt`` spec's ``high``, if any). The
  arrival process then drives conversation *starts* at ``rate / m`` (``m`` = expected
  requests per start; measured on a pilot sample when ``max_prompt_tokens`` cuts sessions
  short), so the request rate stays ``rate``.
  Conversations also start (Poisson, at the mean start rate) during a warm-up of
  ``warmup_s`` seconds before time 0 (default ``5 * think_time_s * turns_mean``, which leaves
  ~e^-5 of the follow-up load missing; 0 = cold start); only requests from time 0 on are
  returned, so the workload starts in steady state and early requests may continue sessions
  whose earlier turns are not in it (their prefix then looks new, as in a trace cut from a
  running service).

Limits (typo guards, each an error naming its key): at most ``MAX_REQUESTS`` requests at
once, and as many warm-up starts; a prompt or output of at most ``MAX_TOKENS``; a workload
span (``n / rate``) of at most 1e8 s; ``count`` <= 100,000 system prompts; ``turns_mean`` <=
10,000; ``think_time_s`` <= a day; ``quantum_s`` <= an hour; for mmpp at most 1,000,000 requests in a mean on/off
cycle (the generator draws whole cycles, at least 16 at a time: an hour-long burst at
1,000 req/s is beyond it) and at most 10,000,000 cycles for one workload.

Block hashes follow the Mooncake convention (see :class:`~prfaas_gym.request.Request`): each
id stands for its block and the whole prefix before it, ``len(hashes) == ceil(prompt / B)``,
equal content prefixes share leading ids and everything else gets fresh ids.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from prfaas_gym.block_hashes import hashed_requests
from prfaas_gym.data_paths import resolve_path
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import is_finite_number
from prfaas_gym.request import Request, Workload
from prfaas_gym.workload import MAX_TOKENS, MAX_TRACE_SPAN_S, read_lengths

__all__ = [
    "ARRIVAL_PROCESSES",
    "LENGTH_DISTS",
    "Draft",
    "Sampler",
    "arrival_sampler",
    "bounded_pareto",
    "constant",
    "diurnal",
    "empirical",
    "empirical_from_trace",
    "empirical_quantiles",
    "gamma_renewal",
    "generate",
    "independent",
    "length_sampler",
    "mixture",
    "mmpp",
    "poisson",
    "quantize",
    "sessions_per_start",
    "spec_mean_rate",
    "spikes",
    "to_workload",
    "truncated_lognormal",
    "uniform",
    "with_rate",
    "with_sessions",
    "with_system_prompts",
    "zipf_weights",
]

#: ``f(rng, n) -> array of n values``
Sampler = Callable[[np.random.Generator, int], np.ndarray]

#: the most requests :func:`generate` builds at once (~2 KB each: a typo such as 1e9 would
#: otherwise run the machine out of memory before any error)
MAX_REQUESTS = 1_000_000
#: Typo guards (each far beyond a real workload), so that a mistyped number is an error
#: naming its key instead of a generator that exhausts memory or never ends.
MAX_SYSTEM_PROMPTS = 100_000
MAX_TURNS_MEAN = 10_000
MAX_THINK_TIME_S = 86_400.0  # a day between turns
MAX_MMPP_PER_CYCLE = 1_000_000  # requests in one mean on+off cycle
MAX_MMPP_CYCLES = 10_000_000    # on/off cycles to draw n requests
ARRIVAL_PROCESSES: tuple[str, ...] = ("poisson", "uniform", "gamma", "mmpp", "diurnal", "spikes")
LENGTH_DISTS: tuple[str, ...] = ("constant", "lognormal", "pareto", "empirical", "quantiles",
                                 "mixture")


# --------------------------------------------------------------------------------------------
# parameter checks (plain functions: the spec parser checks with key paths before calling)

def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PrfaasInputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise PrfaasInputError(f"{name} must be a number, got nan")
    return v


def _positive(value: Any, name: str) -> float:
    v = _real(value, name)
    if not (math.isfinite(v) and v > 0):
        raise PrfaasInputError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _non_negative(value: Any, name: str) -> float:
    v = _real(value, name)
    if not (math.isfinite(v) and v >= 0):
        raise PrfaasInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _count(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise PrfaasInputError(f"{name} must be an integer >= 0, got {n!r}")
    return int(n)


def _token_count(value: Any, name: str) -> int:
    v = _real(value, name)
    if not (math.isfinite(v) and v.is_integer() and v >= 1):
        raise PrfaasInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(v)


# --------------------------------------------------------------------------------------------
# arrival processes

def poisson(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """``n`` arrivals of a Poisson process of ``rate`` req/s started at 0."""
    n, rate = _count(n), _positive(rate, "rate")
    return np.cumsum(rng.exponential(1.0 / rate, n))


def uniform(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Deterministic arrivals every ``1 / rate`` s, the first at 0 (``rng`` is unused)."""
    n, rate = _count(n), _positive(rate, "rate")
    return np.arange(n, dtype=np.float64) / rate


def gamma_renewal(rng: np.random.Generator, n: int, rate: float, cv: float) -> np.ndarray:
    """Renewal process with Gamma inter-arrival gaps of mean ``1 / rate`` and coefficient of
    variation ``cv`` (``cv = 1`` is Poisson, ``cv > 1`` bursty, ``cv < 1`` regular)."""
    n, rate, cv = _count(n), _positive(rate, "rate"), _positive(cv, "cv")
    shape = 1.0 / (cv * cv)
    return np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), n))


def mmpp(rng: np.random.Generator, n: int, rate_on: float, rate_off: float, mean_on_s: float,
         mean_off_s: float) -> np.ndarray:
    """Two-state Markov-modulated Poisson process (on/off bursts).

    The state alternates between *on* (Poisson at ``rate_on``) and *off* (``rate_off``, may be
    0) with exponential sojourns of mean ``mean_on_s`` / ``mean_off_s``; the initial state is
    drawn from the stationary distribution. Mean rate = ``(rate_on * mean_on_s + rate_off *
    mean_off_s) / (mean_on_s + mean_off_s)``.
    """
    n = _count(n)
    r_on, r_off = _positive(rate_on, "rate_on"), _non_negative(rate_off, "rate_off")
    m_on, m_off = _positive(mean_on_s, "mean_on_s"), _positive(mean_off_s, "mean_off_s")
    per_cycle = r_on * m_on + r_off * m_off
    on = bool(rng.random() < m_on / (m_on + m_off))
    chunks: list[np.ndarray] = []
    have, t = 0, 0.0
    while have < n:
        cycles = int(1.25 * (n - have) / per_cycle) + 16
        first, second = (m_on, m_off) if on else (m_off, m_on)
        durs = np.empty(2 * cycles)
        durs[0::2] = rng.exponential(first, cycles)
        durs[1::2] = rng.exponential(second, cycles)
        rates = np.empty(2 * cycles)
        rates[0::2], rates[1::2] = (r_on, r_off) if on else (r_off, r_on)
        ends = t + np.cumsum(durs)
        starts = ends - durs
        counts = rng.poisson(rates * durs)
        # given its count, a Poisson period's events are uniform over the period
        events = np.repeat(starts, counts) + rng.random(int(counts.sum())) * np.repeat(durs,
                                                                                      counts)
        chunks.append(np.sort(events))
        have += events.size
        t = float(ends[-1])
    return np.concatenate(chunks)[:n] if chunks else np.empty(0)


def diurnal(rng: np.random.Generator, n: int, rate: float, amplitude: float, period_s: float,
            phase_s: float = 0.0) -> np.ndarray:
    """Non-homogeneous Poisson process with rate
    ``rate * (1 + amplitude * sin(2 pi (t + phase_s) / period_s))`` (by thinning).

    ``0 <= amplitude <= 1``; the mean rate over whole periods is ``rate``.
    """
    n, rate = _count(n), _positive(rate, "rate")
    amp, period = _non_negative(amplitude, "amplitude"), _positive(period_s, "period_s")
    phase = _real(phase_s, "phase_s")
    if amp > 1:
        raise PrfaasInputError(f"amplitude must be <= 1 (a rate cannot go negative), got {amp}")
    peak = rate * (1.0 + amp)
    chunks: list[np.ndarray] = []
    have, t = 0, 0.0
    while have < n:
        m = int(1.25 * (n - have) * (1.0 + amp)) + 64
        cand = t + np.cumsum(rng.exponential(1.0 / peak, m))
        lam = rate * (1.0 + amp * np.sin(2.0 * np.pi * (cand + phase) / period))
        kept = cand[rng.random(m) * peak < lam]
        chunks.append(kept)
        have += kept.size
        t = float(cand[-1])
    return np.concatenate(chunks)[:n] if chunks else np.empty(0)


def spikes(rng: np.random.Generator, n: int, rate: float, multiplier: float, duration_s: float,
           times: Sequence[float] | None = None, mean_gap_s: float | None = None) -> np.ndarray:
    """Poisson base load at ``rate`` plus load spikes during which the rate is
    ``multiplier * rate`` for ``duration_s`` seconds.

    Spikes start at the given ``times`` (seconds) or, with ``mean_gap_s``, at a Poisson process
    of that mean gap (exactly one of the two). Overlapping spikes add up. With random spikes
    the mean rate is ``rate * (1 + (multiplier - 1) * duration_s / mean_gap_s)``.
    """
    n, rate = _count(n), _positive(rate, "rate")
    mult, dur = _real(multiplier, "multiplier"), _positive(duration_s, "duration_s")
    if not (math.isfinite(mult) and mult >= 1):
        raise PrfaasInputError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
    if (times is None) == (mean_gap_s is None):
        raise PrfaasInputError("spikes needs exactly one of 'times' or 'mean_gap_s'")
    base = poisson(rng, n, rate)
    if n == 0:
        return base
    horizon = float(base[-1])
    if times is not None:
        starts = np.sort(np.asarray([_non_negative(x, "spike time") for x in times], float))
    else:
        gap = _positive(mean_gap_s, "mean_gap_s")
        parts, t = [], 0.0
        while t <= horizon:
            part = t + np.cumsum(rng.exponential(gap, int(horizon / gap) + 16))
            parts.append(part)
            t = float(part[-1])
        starts = np.concatenate(parts)
    starts = starts[starts < horizon]
    lens = np.minimum(starts + dur, horizon) - starts
    counts = rng.poisson((mult - 1.0) * rate * lens)
    extra = np.repeat(starts, counts) + rng.random(int(counts.sum())) * np.repeat(lens, counts)
    return np.sort(np.concatenate([base, extra]), kind="stable")[:n]


def quantize(arrivals: np.ndarray, quantum_s: float) -> np.ndarray:
    """Floor every arrival onto a grid of ``quantum_s`` seconds (keeps the order)."""
    q = _positive(quantum_s, "quantum_s")
    return np.floor(np.asarray(arrivals, dtype=np.float64) / q) * q


# --------------------------------------------------------------------------------------------
# length distributions (int64 token counts >= 1)

def truncated_lognormal(rng: np.random.Generator, n: int, mu: float, sigma: float,
                        low: float = 1.0, high: float = math.inf) -> np.ndarray:
    """Log-normal (``ln X ~ N(mu, sigma^2)``) truncated to ``[low, high]``, rounded to ints.

    Exact truncation by rejection (acceptance = the window's probability mass, known in
    advance, so it draws about ``n / mass`` normals). ``1 <= low < high``; ``high`` may be inf.
    """
    n, sigma = _count(n), _positive(sigma, "sigma")
    mu, lo, hi = _real(mu, "mu"), _real(low, "low"), _real(high, "high")
    if not math.isfinite(mu):
        raise PrfaasInputError(f"mu must be finite, got {mu}")
    if not (1 <= lo < hi):
        raise PrfaasInputError(f"lognormal bounds need 1 <= low < high, got [{lo}, {hi}]")
    a = (math.log(lo) - mu) / sigma
    b = (math.log(hi) - mu) / sigma if math.isfinite(hi) else math.inf
    nd = NormalDist()
    mass = (nd.cdf(b) if math.isfinite(b) else 1.0) - nd.cdf(a)
    if mass < 1e-6:
        raise PrfaasInputError(f"lognormal(mu={mu}, sigma={sigma}) has almost no probability "
                               f"mass in [{lo}, {hi}] ({mass:.2e})")
    out = np.empty(n)
    filled = 0
    while filled < n:
        m = min(int((n - filled) / mass * 1.05) + 64, 20_000_000)
        z = rng.standard_normal(m)
        z = z[(z >= a) & (z <= b)][: n - filled]
        out[filled: filled + z.size] = np.exp(mu + sigma * z)
        filled += z.size
    return _as_tokens(out, lo, hi)


def bounded_pareto(rng: np.random.Generator, n: int, alpha: float, low: float,
                   high: float) -> np.ndarray:
    """Pareto with tail index ``alpha`` truncated to ``[low, high]`` (inverse CDF), rounded.

    Heavy-tailed: ``P(X > x) ~ x**-alpha``; ``1 <= low < high < inf``.
    """
    n, alpha = _count(n), _positive(alpha, "alpha")
    lo, hi = _real(low, "low"), _real(high, "high")
    if not (1 <= lo < hi < math.inf):
        raise PrfaasInputError(f"pareto bounds need 1 <= low < high < inf, got [{lo}, {hi}]")
    u = rng.random(n)
    x = lo * (1.0 - u * (1.0 - (lo / hi) ** alpha)) ** (-1.0 / alpha)
    return _as_tokens(x, lo, hi)


def empirical(rng: np.random.Generator, n: int, values: Sequence[int] | np.ndarray,
              ) -> np.ndarray:
    """``n`` draws with replacement from ``values`` (e.g. a trace's prompt lengths)."""
    n = _count(n)
    v = _token_array(values, "empirical values")
    return v[rng.integers(0, v.size, n)]


def empirical_quantiles(rng: np.random.Generator, n: int,
                        quantiles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Sample through a piecewise-linear inverse CDF: ``quantiles[i]`` is the quantile at
    probability ``i / (len - 1)`` (so ``[min, ..., max]``, at least 2 values, non-decreasing).

    A compact stand-in for an empirical distribution (e.g. 101 percentiles of a trace).
    """
    n = _count(n)
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size < 2 or not np.all(np.isfinite(q)) or q[0] < 1:
        raise PrfaasInputError("quantiles must be a list of >= 2 finite numbers >= 1")
    if np.any(np.diff(q) < 0):
        raise PrfaasInputError("quantiles must be non-decreasing")
    x = np.interp(rng.random(n) * (q.size - 1), np.arange(q.size), q)
    return _as_tokens(x, q[0], q[-1])


def mixture(rng: np.random.Generator, n: int, weights: Sequence[float],
            samplers: Sequence[Sampler]) -> np.ndarray:
    """Each of the ``n`` values comes from ``samplers[k]`` with probability ``weights[k]``
    (normalised; weights >= 0 with a positive sum)."""
    n = _count(n)
    w = np.asarray([_non_negative(x, "mixture weight") for x in weights], dtype=np.float64)
    if w.size != len(samplers) or w.size == 0 or w.sum() <= 0:
        raise PrfaasInputError("mixture needs one weight per sampler and a positive total weight")
    comp = rng.choice(w.size, size=n, p=w / w.sum())
    out = np.empty(n, dtype=np.int64)
    for k, sample in enumerate(samplers):
        rows = np.flatnonzero(comp == k)
        out[rows] = sample(rng, rows.size)
    return out


def constant(n: int, value: int) -> np.ndarray:
    """``n`` copies of ``value`` (an integer >= 1)."""
    return np.full(_count(n), _token_count(value, "value"), dtype=np.int64)


def empirical_from_trace(path: str | Path, column: str = "prompt",
                         format: str | None = None) -> np.ndarray:
    """The ``column`` (``"prompt"`` or ``"output"``) token counts of a trace file, in file
    order, for :func:`empirical`. Any :data:`~prfaas_gym.workload.TRACE_FORMATS` file works,
    including Vidur length-statistics files without timestamps. Cached per file version."""
    if column not in ("prompt", "output"):
        raise PrfaasInputError(f"column must be 'prompt' or 'output', got {column!r}")
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), format, st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(p), format, 0, 0)
    prompts, outputs = _cached_lengths(key)
    return (prompts if column == "prompt" else outputs).copy()


@functools.lru_cache(maxsize=16)
def _cached_lengths(key: tuple[str, str | None, int, int]) -> tuple[np.ndarray, np.ndarray]:
    return read_lengths(key[0], key[1])


def _token_array(values: Any, name: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PrfaasInputError(f"{name} must be a list of integers >= 1") from None
    if v.ndim != 1 or v.size == 0:
        raise PrfaasInputError(f"{name} must be a non-empty list of integers >= 1")
    if not np.all(np.isfinite(v)) or np.any(v < 1) or np.any(v != np.round(v)):
        raise PrfaasInputError(f"{name} must all be integers >= 1")
    return v.astype(np.int64)


def _as_tokens(x: np.ndarray, low: float, high: float) -> np.ndarray:
    lo = max(1, math.ceil(low))
    hi = math.floor(high) if math.isfinite(high) else 2**53  # exact in float64, no overflow
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


# --------------------------------------------------------------------------------------------
# prefix sharing

@dataclass(frozen=True)
class Draft:
    """Request columns before block hashes are assigned; row ``i`` is one request.

    Contract:
    - ``arrival_s`` float64 seconds (negative = warm-up, see :func:`generate`);
      ``prompt_tokens`` / ``output_tokens`` int64 >= 1, the prompt including any system
      prompt and session history.
    - ``parent[i]`` is ``-1`` or the row of the previous session turn whose prompt (+ output)
      this prompt extends; ``parent[i] < i`` and ``arrival_s[parent[i]] <= arrival_s[i]``.
    - ``session_id[i]`` is ``-1`` (no session) or a session number.
    - ``system_prompt[i]`` is ``-1`` or an index into ``system_tokens``; set on conversation
      roots (``parent == -1``) only: later turns inherit it through their prefix.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    parent: np.ndarray
    session_id: np.ndarray
    system_prompt: np.ndarray
    system_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def subset(self, rows: np.ndarray) -> Draft:
        """The given rows (ascending indices, every kept row's parent kept too), renumbered."""
        rows = np.asarray(rows, dtype=np.int64)
        new = np.full(len(self), -1, dtype=np.int64)
        new[rows] = np.arange(rows.size)
        par = self.parent[rows]
        return Draft(self.arrival_s[rows], self.prompt_tokens[rows], self.output_tokens[rows],
                     np.where(par >= 0, new[np.maximum(par, 0)], -1), self.session_id[rows],
                     self.system_prompt[rows], self.system_tokens)


def independent(arrival_s: np.ndarray, prompt_tokens: np.ndarray,
                output_tokens: np.ndarray) -> Draft:
    """A draft of unrelated requests (no sessions, no system prompts)."""
    arr = np.asarray(arrival_s, dtype=np.float64)
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    if not (arr.shape == p.shape == o.shape and arr.ndim == 1):
        raise PrfaasInputError("arrival_s, prompt_tokens and output_tokens must be 1-D arrays "
                               "of the same length")
    if p.size and (p.min() < 1 or o.min() < 1):
        raise PrfaasInputError("prompt and output lengths must be >= 1")
    none = np.full(arr.size, -1, dtype=np.int64)
    return Draft(arr, p, o, none, none.copy(), none.copy(), np.empty(0, dtype=np.int64))


def zipf_weights(count: int, s: float) -> np.ndarray:
    """Popularity of ranks ``1..count``: ``P(j) ~ j**-s`` (``s >= 0``; 0 = uniform)."""
    k = _count(count, "count")
    if k < 1:
        raise PrfaasInputError(f"count must be >= 1, got {count}")
    w = np.arange(1, k + 1, dtype=np.float64) ** -_non_negative(s, "zipf_s")
    return w / w.sum()


def _roots(parent: np.ndarray) -> np.ndarray:
    root = np.arange(parent.size)
    while True:
        up = parent[root]
        moving = up >= 0
        if not moving.any():
            return root
        root[moving] = up[moving]


def with_system_prompts(rng: np.random.Generator, d: Draft, count: int,
                        tokens: int | Sequence[int], zipf_s: float = 1.0,
                        fraction: float = 1.0) -> Draft:
    """Prepend shared system prompts.

    A pool of ``count`` prompts of ``tokens`` tokens (one int for all or ``count`` ints);
    each conversation root gets one with probability ``fraction``, prompt ``j`` (0-based) with
    Zipf probability ``~ (j + 1)**-zipf_s``. Every request of that conversation (later session
    turns included) grows by the system prompt's length.
    """
    if d.system_tokens.size:
        raise PrfaasInputError("this draft already has system prompts")
    weights = zipf_weights(count, zipf_s)
    if isinstance(tokens, (int, np.integer)) and not isinstance(tokens, bool):
        pool = np.full(weights.size, _token_count(tokens, "tokens"), dtype=np.int64)
    else:
        pool = _token_array(tokens, "tokens")
        if pool.size != weights.size:
            raise PrfaasInputError(f"tokens lists {pool.size} lengths for count {count} "
                                   "system prompts")
    frac = _non_negative(fraction, "fraction")
    if frac > 1:
        raise PrfaasInputError(f"fraction must be <= 1, got {fraction}")
    roots = np.flatnonzero(d.parent < 0)
    has = rng.random(roots.size) < frac
    which = rng.choice(weights.size, size=roots.size, p=weights)
    sys = np.full(len(d), -1, dtype=np.int64)
    sys[roots[has]] = which[has]
    extra = np.where(sys >= 0, pool[np.maximum(sys, 0)], 0)
    prompt = d.prompt_tokens + extra[_roots(d.parent)]
    return replace(d, prompt_tokens=prompt, system_prompt=sys, system_tokens=pool)


def sessions_per_start(fraction: float, turns_mean: float) -> tuple[float, float]:
    """``(p, m)``: the probability that a conversation start is a multi-turn session, chosen so
    that ``fraction`` of requests belong to sessions, and the expected requests per start."""
    f = _non_negative(fraction, "fraction")
    t = _real(turns_mean, "turns_mean")
    if f > 1:
        raise PrfaasInputError(f"fraction must be <= 1, got {fraction}")
    if not (math.isfinite(t) and t >= 1):
        raise PrfaasInputError(f"turns_mean must be a finite number >= 1, got {turns_mean!r}")
    p = f / (f + t * (1.0 - f)) if f > 0 else 0.0
    return p, p * t + (1.0 - p)


def with_sessions(rng: np.random.Generator, d: Draft, fraction: float, turns_mean: float,
                  think_time_s: float, user_tokens: Sampler, output_tokens: Sampler,
                  max_prompt_tokens: int | None = None) -> Draft:
    """Grow multi-turn sessions from conversation starts.

    Every row of ``d`` must be a start (no parents). A start becomes a session with the
    probability that makes ``fraction`` of all requests session requests (see
    :func:`sessions_per_start`); a session has ``Geometric(1 / turns_mean)`` turns. Turn
    ``k+1`` arrives ``Exp(think_time_s)`` after turn ``k`` (``think_time_s = 0``: at once) with
    prompt = turn ``k`` prompt + turn ``k`` output + ``user_tokens`` and output from
    ``output_tokens``. A session stops before a turn whose prompt exceeds ``max_prompt_tokens``.
    New turns are appended after ``d``'s rows (so parents precede children).
    """
    if np.any(d.parent >= 0) or np.any(d.session_id >= 0):
        raise PrfaasInputError("with_sessions needs a draft of conversation starts only")
    p, _ = sessions_per_start(fraction, turns_mean)
    think = _non_negative(think_time_s, "think_time_s")
    cap = math.inf if max_prompt_tokens is None else _token_count(max_prompt_tokens,
                                                                  "max_prompt_tokens")
    n0 = len(d)
    is_session = rng.random(n0) < p
    turns = np.where(is_session, rng.geometric(1.0 / float(turns_mean), n0), 1)
    sid = np.full(n0, -1, dtype=np.int64)
    sid[is_session] = np.arange(int(is_session.sum()))
    cols = {"arrival": [d.arrival_s], "prompt": [d.prompt_tokens], "output": [d.output_tokens],
            "parent": [d.parent], "session": [sid]}
    cur = np.flatnonzero(turns > 1)
    left = turns[cur] - 1
    cur_arr, cur_prompt, cur_out = d.arrival_s[cur], d.prompt_tokens[cur], d.output_tokens[cur]
    cur_sid, size = sid[cur], n0
    while cur.size:
        k = cur.size
        gaps = rng.exponential(think, k) if think > 0 else np.zeros(k)
        user = np.asarray(user_tokens(rng, k), dtype=np.int64)
        out = np.asarray(output_tokens(rng, k), dtype=np.int64)
        prompt = cur_prompt + cur_out + user
        ok = prompt <= cap
        rows = size + np.arange(int(ok.sum()))
        arr = cur_arr[ok] + gaps[ok]
        for key, col in (("arrival", arr), ("prompt", prompt[ok]), ("output", out[ok]),
                         ("parent", cur[ok]), ("session", cur_sid[ok])):
            cols[key].append(col)
        size += rows.size
        more = left[ok] > 1
        cur, left = rows[more], left[ok][more] - 1
        cur_arr, cur_prompt, cur_out = arr[more], prompt[ok][more], out[ok][more]
        cur_sid = cur_sid[ok][more]
    sys = np.full(size, -1, dtype=np.int64)
    sys[:n0] = d.system_prompt
    return Draft(np.concatenate(cols["arrival"]), np.concatenate(cols["prompt"]),
                 np.concatenate(cols["output"]), np.concatenate(cols["parent"]),
                 np.concatenate(cols["session"]), sys, d.system_tokens)


def to_workload(d: Draft, block_size: int = 512, name: str = "synthetic", source: str = "",
                hashes: bool | None = None, drop_before_s: float = 0.0) -> Workload:
    """Sort ``d`` by arrival (stable), assign block hashes and build the workload.

    ``hashes=None`` emits block hashes iff the draft has any prefix sharing (a parent or a
    system prompt); without sharing, empty hashes ("no prefix information") behave the same
    for a cache and cost nothing. Hash ids are allocated in arrival order. Requests arriving
    before ``drop_before_s`` (a warm-up; may be negative) are hashed but not emitted, and the
    remaining arrivals are shifted by ``-drop_before_s``. Session ids are renumbered ``0..``
    by first arrival.
    """
    bs = _token_count(block_size, "block_size")
    shift = _real(drop_before_s, "drop_before_s")
    order = np.argsort(d.arrival_s, kind="stable")
    skip = int(np.searchsorted(d.arrival_s[order], shift, side="left"))
    arrival = (d.arrival_s[order] - shift).tolist()
    prompt = d.prompt_tokens[order].tolist()
    output = d.output_tokens[order].tolist()
    sid_map: dict[int, int] = {}
    sids: list[int | None] = [None] * skip + [
        None if s < 0 else sid_map.setdefault(s, len(sid_map))
        for s in d.session_id[order][skip:].tolist()]
    if hashes is None:
        hashes = bool(np.any(d.parent >= 0) or np.any(d.system_prompt >= 0))
    if not hashes:
        reqs = [Request(i - skip, arrival[i], prompt[i], output[i], (), bs, sids[i])
                for i in range(skip, len(order))]
        return Workload(reqs, name=name, block_size=bs, source=source)
    rank = np.empty(len(d), dtype=np.int64)
    rank[order] = np.arange(len(d))
    parent = d.parent[order]
    parent_pos = np.where(parent >= 0, rank[np.maximum(parent, 0)], -1).tolist()
    reqs = hashed_requests(arrival, prompt, output, parent_pos, d.system_prompt[order].tolist(),
                           d.system_tokens.tolist(), sids, bs, skip)
    return Workload(reqs, name=name, block_size=bs, source=source)


# --------------------------------------------------------------------------------------------
# spec parsing

_ARRIVAL_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # process: (required keys, optional keys) besides 'process' and 'quantum_s'
    "poisson": (("rate",), ()),
    "uniform": (("rate",), ()),
    "gamma": (("rate", "cv"), ()),
    "mmpp": (("rate_on", "rate_off", "mean_on_s", "mean_off_s"), ()),
    "diurnal": (("rate", "amplitude", "period_s"), ("phase_s",)),
    "spikes": (("rate", "multiplier", "duration_s"), ("times", "mean_gap_s")),
}
_LENGTH_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ()),
    "lognormal": (("mu", "sigma"), ("low", "high")),
    "pareto": (("alpha", "low", "high"), ()),
    "empirical": ((), ("trace", "format", "column", "values")),
    "quantiles": (("values",), ()),
    "mixture": (("components",), ()),
}
_TOP_KEYS = ("arrivals", "prompt", "output", "prefix", "block_size", "name", "description")
_SYSTEM_KEYS = ("count", "tokens", "zipf_s", "fraction")


def _mapping(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PrfaasInputError(f"expected a mapping, got {type(obj).__name__}: {obj!r}", where)
    return obj


def _check_keys(d: Mapping[str, Any], required: Sequence[str], optional: Sequence[str],
                where: str, what: str = "") -> None:
    allowed = tuple(required) + tuple(optional)
    for key in d:
        if key not in allowed:
            raise PrfaasInputError(f"unknown key {key!r}{what}; allowed: {', '.join(allowed)}",
                                   f"{where}.{key}")
    for key in required:
        if key not in d:
            raise PrfaasInputError(f"missing required key {key!r}{what}", f"{where}.{key}")


def _num(d: Mapping[str, Any], key: str, where: str, *, low: float | None = None,
         low_open: bool = False, high: float | None = None, integer: bool = False,
         default: Any = None, allow_inf: bool = False) -> Any:
    """``d[key]`` as a number in the given range (``default`` when absent and not None)."""
    w = f"{where}.{key}"
    if key not in d or d[key] is None:
        if default is None:
            raise PrfaasInputError(f"missing required key {key!r}", w)
        return default
    v = d[key]
    if isinstance(v, str):
        # YAML 1.1 reads 1e3 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            raise PrfaasInputError(f"must be a number, got {d[key]!r}", w) from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PrfaasInputError(f"must be a number, got {v!r}", w)
    if not (is_finite_number(v) or (allow_inf and isinstance(v, float) and math.isinf(v))):
        raise PrfaasInputError(f"must be finite, got {v!r}", w)
    if integer and not float(v).is_integer():
        raise PrfaasInputError(f"must be an integer, got {v!r}", w)
    if low is not None and (v <= low if low_open else v < low):
        raise PrfaasInputError(f"must be {'>' if low_open else '>='} {low:g}, got {v!r}", w)
    if high is not None and v > high:
        raise PrfaasInputError(f"must be <= {high:g}, got {v!r}", w)
    return int(v) if integer else float(v)


@dataclass(frozen=True)
class _Arrivals:
    process: str
    params: dict[str, Any]
    quantum_s: float | None

    def sample(self, rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
        """``n`` arrivals with every rate multiplied by ``scale``."""
        p = dict(self.params)
        for key in ("rate", "rate_on", "rate_off"):
            if key in p:
                p[key] *= scale
        fn = {"poisson": poisson, "uniform": uniform, "gamma": gamma_renewal, "mmpp": mmpp,
              "diurnal": diurnal, "spikes": spikes}[self.process]
        return fn(rng, n, **p)

    @property
    def mmpp_per_cycle(self) -> float:
        """mmpp: the expected requests in one mean on/off cycle."""
        p = self.params
        return p["rate_on"] * p["mean_on_s"] + p["rate_off"] * p["mean_off_s"]

    @property
    def mean_rate(self) -> float:
        p = self.params
        if self.process == "mmpp":
            return self.mmpp_per_cycle / (p["mean_on_s"] + p["mean_off_s"])
        if self.process == "spikes" and p.get("mean_gap_s") is not None:
            return p["rate"] * (1 + (p["multiplier"] - 1) * p["duration_s"] / p["mean_gap_s"])
        return p["rate"]


def _parse_arrivals(obj: Any, where: str) -> _Arrivals:
    d = _mapping(obj, where)
    process = d.get("process")
    if not isinstance(process, str) or process not in _ARRIVAL_KEYS:
        raise PrfaasInputError(f"process must be one of {', '.join(ARRIVAL_PROCESSES)}, got "
                               f"{process!r}", f"{where}.process")
    required, optional = _ARRIVAL_KEYS[process]
    _check_keys(d, ("process",) + required, optional + ("quantum_s",), where,
                f" for process {process!r}")
    params: dict[str, Any] = {}
    if process == "mmpp":
        params["rate_on"] = _num(d, "rate_on", where, low=0, low_open=True)
        params["rate_off"] = _num(d, "rate_off", where, low=0)
        params["mean_on_s"] = _num(d, "mean_on_s", where, low=0, low_open=True)
        params["mean_off_s"] = _num(d, "mean_off_s", where, low=0, low_open=True)
    else:
        params["rate"] = _num(d, "rate", where, low=0, low_open=True)
    if process == "gamma":
        params["cv"] = _num(d, "cv", where, low=0, low_open=True)
    if process == "diurnal":
        params["amplitude"] = _num(d, "amplitude", where, low=0, high=1)
        params["period_s"] = _num(d, "period_s", where, low=0, low_open=True)
        params["phase_s"] = _num(d, "phase_s", where, default=0.0)
    if process == "spikes":
        params["multiplier"] = _num(d, "multiplier", where, low=1)
        params["duration_s"] = _num(d, "duration_s", where, low=0, low_open=True)
        if ("times" in d) == ("mean_gap_s" in d):
            raise PrfaasInputError("give exactly one of 'times' or 'mean_gap_s'", where)
        if "times" in d:
            times = d["times"]
            if not isinstance(times, list):
                raise PrfaasInputError("must be a list of seconds", f"{where}.times")
            params["times"] = [_num({"t": t}, "t", f"{where}.times[{i}]", low=0)
                               for i, t in enumerate(times)]
        else:
            params["mean_gap_s"] = _num(d, "mean_gap_s", where, low=0, low_open=True)
    # a typo guard: a grid coarser than an hour folds a whole run onto a few instants
    quantum = (_num(d, "quantum_s", where, low=0, low_open=True, high=3600.0)
               if "quantum_s" in d else None)
    return _Arrivals(process, params, quantum)


def arrival_sampler(spec: Mapping[str, Any], where: str = "arrivals") -> Sampler:
    """``f(rng, n)`` drawing ``n`` arrivals of an ``arrivals:`` spec (quantum included)."""
    a = _parse_arrivals(spec, where)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        t = a.sample(rng, n)
        return quantize(t, a.quantum_s) if a.quantum_s else t

    return sample


def length_sampler(spec: Mapping[str, Any], where: str = "prompt",
                   base_dir: str | Path | None = None, column: str = "prompt") -> Sampler:
    """``f(rng, n)`` drawing ``n`` token counts of a length spec (see the module docstring).

    ``column`` is the default trace column of ``dist: empirical``; relative ``trace`` paths are
    resolved against ``base_dir`` (default: the working directory).
    """
    d = _mapping(spec, where)
    dist = d.get("dist")
    if not isinstance(dist, str) or dist not in _LENGTH_KEYS:
        raise PrfaasInputError(f"dist must be one of {', '.join(LENGTH_DISTS)}, got {dist!r}",
                               f"{where}.dist")
    required, optional = _LENGTH_KEYS[dist]
    _check_keys(d, ("dist",) + required, optional, where, f" for dist {dist!r}")
    if dist == "constant":
        value = _num(d, "value", where, low=1, integer=True)
        return lambda rng, n: constant(n, value)
    if dist == "lognormal":
        mu, sigma = _num(d, "mu", where), _num(d, "sigma", where, low=0, low_open=True)
        low = _num(d, "low", where, low=1, default=1.0)
        high = _num(d, "high", where, low=low, low_open=True, default=math.inf, allow_inf=True)
        try:  # fail now, with the key path, if [low, high] holds almost no probability mass
            truncated_lognormal(np.random.default_rng(0), 0, mu, sigma, low, high)
        except PrfaasInputError as e:
            raise PrfaasInputError(e.reason, where) from None
        return lambda rng, n: truncated_lognormal(rng, n, mu, sigma, low, high)
    if dist == "pareto":
        alpha = _num(d, "alpha", where, low=0, low_open=True)
        low = _num(d, "low", where, low=1)
        high = _num(d, "high", where, low=low, low_open=True)
        return lambda rng, n: bounded_pareto(rng, n, alpha, low, high)
    if dist == "quantiles":
        q = _number_list(d, "values", where, min_len=2)
        if any(b < a for a, b in zip(q, q[1:])):
            raise PrfaasInputError("must be non-decreasing", f"{where}.values")
        return lambda rng, n: empirical_quantiles(rng, n, q)
    if dist == "mixture":
        return _mixture_sampler(d, where, base_dir, column)
    return _empirical_sampler(d, where, base_dir, column)


def _mixture_sampler(d: Mapping[str, Any], where: str, base_dir: str | Path | None,
                     column: str) -> Sampler:
    comps = d["components"]
    if not isinstance(comps, list) or not comps:
        raise PrfaasInputError("must be a non-empty list of length specs, each with a "
                               "'weight'", f"{where}.components")
    weights: list[float] = []
    samplers: list[Sampler] = []
    for i, comp in enumerate(comps):
        w = f"{where}.components[{i}]"
        c = dict(_mapping(comp, w))
        weights.append(_num(c, "weight", w, low=0))
        del c["weight"]
        samplers.append(length_sampler(c, w, base_dir, column))
    if sum(weights) <= 0:
        raise PrfaasInputError("the component weights must not all be 0", f"{where}.components")
    return lambda rng, n: mixture(rng, n, weights, samplers)


def _number_list(d: Mapping[str, Any], key: str, where: str, min_len: int) -> list[float]:
    values = d[key]
    if not isinstance(values, list) or len(values) < min_len:
        raise PrfaasInputError(f"must be a list of at least {min_len} numbers",
                               f"{where}.{key}")
    return [_num({"v": v}, "v", f"{where}.{key}[{i}]", low=1) for i, v in enumerate(values)]


def _empirical_sampler(d: Mapping[str, Any], where: str, base_dir: str | Path | None,
                       column: str) -> Sampler:
    if ("trace" in d) == ("values" in d):
        raise PrfaasInputError("dist 'empirical' needs exactly one of 'trace' or 'values'", where)
    if "values" in d:
        if "format" in d or "column" in d:
            raise PrfaasInputError("'format' and 'column' only go with 'trace'", where)
        values = _number_list(d, "values", where, min_len=1)
        bad = [i for i, v in enumerate(values) if not float(v).is_integer()]
        if bad:
            raise PrfaasInputError("must be an integer", f"{where}.values[{bad[0]}]")
        arr = np.asarray(values, dtype=np.int64)
        return lambda rng, n: empirical(rng, n, arr)
    trace = d["trace"]
    if not isinstance(trace, str) or not trace:
        raise PrfaasInputError("must be a file path", f"{where}.trace")
    fmt = d.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise PrfaasInputError("must be a format name", f"{where}.format")
    col = d.get("column", column)
    if col not in ("prompt", "output"):
        raise PrfaasInputError(f"must be 'prompt' or 'output', got {col!r}", f"{where}.column")
    path = resolve_path(trace, Path(base_dir) if base_dir is not None else None,
                        f"{where}.trace")
    try:
        arr = empirical_from_trace(path, col, fmt)
    except PrfaasInputError as e:
        raise PrfaasInputError(str(e), f"{where}.trace") from None
    return lambda rng, n: empirical(rng, n, arr)


@dataclass(frozen=True)
class _Spec:
    arrivals: _Arrivals
    prompt: Sampler
    output: Sampler
    sessions: dict[str, Any] | None
    system: dict[str, Any] | None
    block_size: int
    name: str


def _parse_spec(spec: Any, where: str, base_dir: str | Path | None) -> _Spec:
    d = _mapping(spec, where)
    _check_keys(d, ("arrivals", "prompt", "output"), _TOP_KEYS[3:], where)
    arrivals = _parse_arrivals(d["arrivals"], f"{where}.arrivals")
    prompt = length_sampler(d["prompt"], f"{where}.prompt", base_dir, "prompt")
    output = length_sampler(d["output"], f"{where}.output", base_dir, "output")
    block_size = _num(d, "block_size", where, low=1, integer=True, default=512)
    name = d.get("name", "synthetic")
    if not isinstance(name, str):
        raise PrfaasInputError("must be a string", f"{where}.name")
    sessions = system = None
    if d.get("prefix") is not None:
        w = f"{where}.prefix"
        prefix = _mapping(d["prefix"], w)
        _check_keys(prefix, (), ("sessions", "system_prompts"), w)
        if prefix.get("sessions") is not None:
            sessions = _parse_sessions(prefix["sessions"], f"{w}.sessions", d["prompt"],
                                       base_dir)
        if prefix.get("system_prompts") is not None:
            system = _parse_system(prefix["system_prompts"], f"{w}.system_prompts")
    return _Spec(arrivals, prompt, output, sessions, system, block_size, name)


def _parse_sessions(obj: Any, where: str, prompt_spec: Any,
                    base_dir: str | Path | None) -> dict[str, Any]:
    d = _mapping(obj, where)
    _check_keys(d, ("turns_mean", "think_time_s"), ("fraction", "user_tokens",
                                                    "max_prompt_tokens", "warmup_s"), where)
    user = d.get("user_tokens", prompt_spec)
    turns = _num(d, "turns_mean", where, low=1, high=MAX_TURNS_MEAN)
    think = _num(d, "think_time_s", where, low=0, high=MAX_THINK_TIME_S)
    return {
        "warmup_s": _num(d, "warmup_s", where, low=0, default=5.0 * think * turns),
        "fraction": _num(d, "fraction", where, low=0, high=1, default=1.0),
        "turns_mean": turns,
        "think_time_s": think,
        "user_tokens": length_sampler(user, f"{where}.user_tokens", base_dir, "prompt"),
        "max_prompt_tokens": (_num(d, "max_prompt_tokens", where, low=1, high=MAX_TOKENS,
                                   integer=True)
                              if d.get("max_prompt_tokens") is not None
                              else _default_cap(prompt_spec)),
    }


def _default_cap(prompt_spec: Any) -> int | None:
    """The prompt distribution's finite ``high`` (lognormal, pareto), if it has one."""
    high = prompt_spec.get("high") if isinstance(prompt_spec, Mapping) else None
    if is_finite_number(high):
        return int(high)
    return None


def _parse_system(obj: Any, where: str) -> dict[str, Any]:
    d = _mapping(obj, where)
    _check_keys(d, ("count", "tokens"), ("zipf_s", "fraction"), where)
    count = _num(d, "count", where, low=1, high=MAX_SYSTEM_PROMPTS, integer=True)
    tokens = d["tokens"]
    if isinstance(tokens, list):
        if len(tokens) != count:
            raise PrfaasInputError(f"lists {len(tokens)} lengths but count is {count}",
                                   f"{where}.tokens")
        tokens = [_num({"t": t}, "t", f"{where}.tokens[{i}]", low=1, high=MAX_TOKENS,
                       integer=True) for i, t in enumerate(tokens)]
    else:
        tokens = _num(d, "tokens", where, low=1, high=MAX_TOKENS, integer=True)
    return {
        "count": count,
        "tokens": tokens,
        "zipf_s": _num(d, "zipf_s", where, low=0, default=1.0),
        "fraction": _num(d, "fraction", where, low=0, high=1, default=1.0),
    }


# --------------------------------------------------------------------------------------------
# entry points

def spec_mean_rate(spec: Mapping[str, Any], where: str = "workload") -> float:
    """Mean request rate (req/s) of a workload spec's ``arrivals``.

    poisson / uniform / gamma / diurnal: ``rate``; mmpp: the time-weighted mean of
    ``rate_on`` / ``rate_off``; spikes: ``rate * (1 + (multiplier - 1) * duration_s /
    mean_gap_s)`` for random spikes, the base ``rate`` for spikes at fixed ``times``.
    """
    d = _mapping(spec, where)
    if "arrivals" not in d:
        raise PrfaasInputError("missing required key 'arrivals'", f"{where}.arrivals")
    return _parse_arrivals(d["arrivals"], f"{where}.arrivals").mean_rate


def with_rate(spec: Mapping[str, Any], rate: float, where: str = "workload") -> dict[str, Any]:
    """A deep copy of ``spec`` whose :func:`spec_mean_rate` is ``rate``: every rate key
    (``rate``; for mmpp ``rate_on`` and ``rate_off``) is scaled by the same factor; burst
    shapes (cv, durations, multiplier) are kept."""
    target = _positive(rate, "rate")
    factor = target / spec_mean_rate(spec, where)
    out = copy.deepcopy(dict(spec))
    arrivals = dict(out["arrivals"])
    for key in ("rate", "rate_on", "rate_off"):
        if key in arrivals:
            arrivals[key] = float(arrivals[key]) * factor
    if "rate" in arrivals and arrivals["process"] != "spikes":
        arrivals["rate"] = target
    out["arrivals"] = arrivals
    return out


def generate(spec: Mapping[str, Any], n: int, seed: int, where: str = "workload",
             base_dir: str | Path | None = None) -> Workload:
    """Build ``n`` requests from a spec (schema in the module docstring), deterministically
    for a given ``seed``.

    Invalid specs raise :class:`PrfaasInputError` with ``where`` = ``"<where>.<key path>"``.
    Relative ``trace`` paths are resolved against ``base_dir``.
    """
    s = _parse_spec(spec, where, base_dir)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise PrfaasInputError(f"n must be an integer >= 1, got {n!r}")
    if n > MAX_REQUESTS:
        raise PrfaasInputError(f"at most {MAX_REQUESTS:,} synthetic requests can be generated "
                               f"at once (about 2 KB of memory each), asked for {n:,}", where)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise PrfaasInputError(f"seed must be an integer, got {seed!r}")
    _check_scale(s.arrivals, n, f"{where}.arrivals")
    rng = np.random.default_rng(seed)
    if s.sessions is None:
        d = _starts(s, rng, s.arrivals.sample(rng, n))
    else:
        sess = dict(s.sessions)
        warmup = sess.pop("warmup_s")
        per_start = _requests_per_start(s, sess, seed)
        start_rate = s.arrivals.mean_rate / per_start
        if start_rate * warmup > MAX_REQUESTS:
            raise PrfaasInputError(
                f"a warm-up of {warmup:g} s (warmup_s, by default 5 * think_time_s * "
                f"turns_mean) at {start_rate:g} conversation starts a second would generate "
                f"about {start_rate * warmup:.3g} starts before time 0; at most "
                f"{MAX_REQUESTS:,}", f"{where}.prefix.sessions")
        starts = int(math.ceil(n / per_start * 1.1)) + 32
        while True:
            # warm-up starts at negative times (a Poisson process at the mean start rate, so
            # spike times and diurnal phases stay on the output clock), then the real ones
            main = s.arrivals.sample(rng, starts, 1.0 / per_start)
            t = np.concatenate([_warmup(rng, start_rate, warmup), main])
            d = with_sessions(rng, _starts(s, rng, t), output_tokens=s.output, **sess)
            # every request before the last start is present: later starts come after it
            if np.count_nonzero((d.arrival_s >= 0) & (d.arrival_s < main[-1])) >= n:
                break
            starts *= 2
        # keep the warm-up rows (their blocks seed the hashes) and the next n requests
        order = np.argsort(d.arrival_s, kind="stable")
        d = d.subset(np.sort(order[: np.count_nonzero(d.arrival_s < 0) + n]))
    for name, col in (("prompt", d.prompt_tokens), ("output", d.output_tokens)):
        if col.size and int(col.max()) > MAX_TOKENS:
            raise PrfaasInputError(
                f"drew a {name} of {int(col.max()):,} tokens, more than the {MAX_TOKENS:,} a "
                f"request may have: bound the distribution (high:, or sessions."
                f"max_prompt_tokens for a conversation's growing prompt)", f"{where}.{name}")
    if s.arrivals.quantum_s:
        d = replace(d, arrival_s=quantize(d.arrival_s, s.arrivals.quantum_s))
    source = (f"synthetic seed={seed} n={n} spec="
              f"{json.dumps(spec, sort_keys=True, default=str, separators=(',', ':'))}")
    # hashes the warm-up (negative arrival times) but returns only what follows it
    return to_workload(d, s.block_size, s.name, source, drop_before_s=0.0)


def _check_scale(a: _Arrivals, n: int, where: str) -> None:
    """Refuse arrivals whose ``n`` requests would span more than a trace may
    (``MAX_TRACE_SPAN_S``), or, for mmpp, need too many requests per on/off cycle or too
    many cycles: each would exhaust memory or never finish."""
    span = n / a.mean_rate
    if span > MAX_TRACE_SPAN_S:
        raise PrfaasInputError(
            f"{n:,} requests at a mean rate of {a.mean_rate:g} req/s span about {span:.3g} s, "
            f"more than the {MAX_TRACE_SPAN_S:g} s a workload may span", where)
    if a.process == "mmpp":
        per_cycle = a.mmpp_per_cycle
        if per_cycle > MAX_MMPP_PER_CYCLE:
            raise PrfaasInputError(
                f"rate_on * mean_on_s + rate_off * mean_off_s = {per_cycle:.3g} requests per "
                f"on/off cycle; at most {MAX_MMPP_PER_CYCLE:,}", where)
        if n / per_cycle > MAX_MMPP_CYCLES:
            raise PrfaasInputError(
                f"{n:,} requests at {per_cycle:.3g} per on/off cycle need "
                f"{n / per_cycle:.3g} cycles; at most {MAX_MMPP_CYCLES:,} (raise the rates or "
                "lengthen the periods)", where)


def _requests_per_start(s: _Spec, sess: dict[str, Any], seed: int,
                        pilot: int = 20_000) -> float:
    """Expected requests per conversation start. Exact without a prompt cap; with one (turns
    stop early) it is measured on ``pilot`` starts drawn from their own seeded stream."""
    _, m = sessions_per_start(sess["fraction"], sess["turns_mean"])
    if sess["max_prompt_tokens"] is None:
        return m
    rng = np.random.default_rng([seed, 0x5E55])
    d = with_sessions(rng, _starts(s, rng, np.zeros(pilot)), output_tokens=s.output, **sess)
    return len(d) / pilot


def _warmup(rng: np.random.Generator, rate: float, duration_s: float) -> np.ndarray:
    """Poisson arrivals at ``rate`` on ``[-duration_s, 0)``, sorted."""
    if duration_s <= 0:
        return np.empty(0)
    t = poisson(rng, int(rate * duration_s * 1.2) + 32, rate)
    while t[-1] < duration_s:
        t = np.concatenate([t, t[-1] + poisson(rng, t.size, rate)])
    return np.sort(-t[t < duration_s])


def _starts(s: _Spec, rng: np.random.Generator, arrivals: np.ndarray) -> Draft:
    n = arrivals.size
    d = independent(arrivals, s.prompt(rng, n), s.output(rng, n))
    if s.system is not None:
        d = with_system_prompts(rng, d, **s.system)
    return d

