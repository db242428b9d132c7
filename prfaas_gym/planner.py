"""Steady-state capacity planner: the PrfaaS paper's Eqs. 3-8 with exhaustive grid search.

The model (Qin et al. 2026, Sec. "throughput model"; ``/work/shared/docs/prfaas-paper.md``)::

    p       = P(L > t)                      share of requests offloaded to PrfaaS
    l_long  = E[L | L > t],  l_short = E[L | L <= t]
    Θ_prfaas = min(N_prfaas / T_prfaas(l_long), B_out / S_kv(l_long))
    Θ_pdp    = N_p / T_local(l_short)
    Θ_pdd    = N_d · BS_max / (T_dec · L_out)
    Λ_max    = min(Θ_prfaas / p, Θ_pdp / (1 − p), Θ_pdd)

``L`` is the *incremental* prefill length (prompt minus reused prefix) and is given as samples
with optional weights. ``Θ/p`` is +inf when ``p = 0`` and ``Θ/(1 − p)`` is +inf when ``p = 1``.
Like the paper, the prefill times are evaluated at the conditional *mean* length, not averaged
over the lengths. ``T_prfaas``/``T_local`` are the prefill cost curves of the deployment's
PrfaaS / local hardware (:class:`~prfaas_gym.profile.PrefillCost`). ``B_out`` is the link
capacity in bytes/s (``capacity_gbps · 1e9 / 8``) and ``S_kv`` is
:meth:`~prfaas_gym.profile.ModelSpec.kv_bytes` (linear in ``l``, so ``S_kv(l_long)`` is also the
mean KV size of an offloaded request). ``BS_max`` is the local hardware's decode ``max_batch``
and ``T_dec`` its decode step time at a full batch whose requests all hold the mean context
``E[L] + L_out / 2``, i.e. ``DecodeCost.step_s(max_batch, max_batch · (E[L] + L_out / 2))``
(``E[L]`` is the incremental mean; it equals the prompt mean when there is no prefix reuse).
The paper's constant 25 ms decode profile gives exactly 25 ms.

Three configurations are planned from one profile (:func:`plan`), with ``N_prfaas`` =
``deployment.n_prfaas`` and ``N_local`` = ``deployment.n_prefill + deployment.n_decode``:

``prfaas``       the profile's deployment: ``N_prfaas`` PrfaaS instances (PrfaaS hardware) plus
                 ``N_local`` local instances (local hardware) split into ``N_p`` prefill and
                 ``N_d`` decode instances, ``N_p + N_d = N_local``, ``N_p >= 1``, ``N_d >= 1``.
                 The split and the threshold ``t`` are searched jointly (the profile's own
                 split is ignored).
``homogeneous``  ``N_prfaas + N_local`` nodes, all of the local hardware, ordinary PD
                 disaggregation: split searched, no threshold (``p = 0``).
``naive``        the ``N_prfaas`` PrfaaS instances do every prefill and the ``N_local`` local
                 nodes all decode (``p = 1``, no threshold, ``N_p = 0``).

Threshold candidates: every distinct sample length (with positive weight) plus a grid of
multiples of ``grid_step`` tokens (default 256) from 0 to the first multiple at or above the
longest sample. ``Λ(t)`` only changes where ``t`` crosses a sample length, so the sample lengths
already enumerate every possible partition; the grid adds round values and ``t = 0``
("offload everything"). Ties in ``Λ`` go to the smaller ``t`` (so the reported threshold is the
longest request that stays local), then to the smaller ``N_p``. Each candidate costs
O(log n): lengths are sorted once and the cumulative weights and weighted sums are
precomputed, so ``p``, ``l_short`` and ``l_long`` come from one ``searchsorted``.

TTFT at light load (no queueing; the paper's Table 6 TTFTs match pure prefill time): each
request's prefill time given its route (``L > t`` → ``T_prfaas(L)``, else ``T_local(L)``; all
``T_local`` for ``homogeneous``, all ``T_prfaas`` for ``naive``), reported as the weighted mean
and the weighted P90 (the smallest time ``v`` with ``W(T <= v) >= 0.9 · W``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.prefix_cache import PrefixCacheIndex
from prfaas_gym.profile import PrefillCost, Profile, load_profile
from prfaas_gym.request import Workload

__all__ = [
    "PAPER_WORKLOAD",
    "PlanResult",
    "best_threshold",
    "incremental_lengths",
    "lambda_curve",
    "paper_lengths",
    "plan",
    "plan_for_paper",
    "prefill_time_vec",
    "throughput",
    "truncated_lognormal_quantiles",
]

#: The paper's case-study workload: truncated log-normal input lengths (natural log of
#: tokens), no prefix reuse, fixed 1024-token outputs.
PAPER_WORKLOAD: dict[str, float] = {
    "mu": 9.90, "sigma": 1.00, "low": 128.0, "high": 131072.0, "mean_output": 1024.0,
}
DEFAULT_GRID_STEP = 256.0
_P90 = 0.9


# --------------------------------------------------------------------------------------------
# workload helpers

def truncated_lognormal_quantiles(mu: float, sigma: float, low: float, high: float,
                                  n: int = 20000) -> np.ndarray:
    """``n`` equally weighted quantile midpoints of a log-normal truncated to ``[low, high]``.

    Deterministic (no sampling): value ``i`` is the quantile at probability ``(i + 0.5) / n`` of
    the truncated distribution, so the result is sorted ascending and its plain mean converges
    to the distribution's mean as ``n`` grows.
    """
    if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
        raise PrfaasInputError(f"log-normal needs finite mu and sigma > 0 (got {mu}, {sigma})")
    if not (0 < low < high and math.isfinite(high)):
        raise PrfaasInputError(f"truncation needs 0 < low < high < inf (got {low}, {high})")
    if n < 1:
        raise PrfaasInputError(f"n must be >= 1 (got {n})")
    nd = NormalDist()
    a = nd.cdf((math.log(low) - mu) / sigma)
    b = nd.cdf((math.log(high) - mu) / sigma)
    if not b > a:
        raise PrfaasInputError("the truncation window holds no probability mass "
                               f"(mu={mu}, sigma={sigma}, [{low}, {high}])")
    u = a + (b - a) * (np.arange(n) + 0.5) / n
    z = np.fromiter((nd.inv_cdf(float(x)) for x in u), dtype=float, count=n)
    return np.clip(np.exp(mu + sigma * z), low, high)


def paper_lengths(n: int = 20000) -> np.ndarray:
    """The paper's input-length distribution as ``n`` equally weighted quantile midpoints."""
    w = PAPER_WORKLOAD
    return truncated_lognormal_quantiles(w["mu"], w["sigma"], w["low"], w["high"], n)


def incremental_lengths(profile: Profile, workload: Workload) -> np.ndarray:
    """The planner's ``L`` for each request of ``workload``: its prompt less the cached prefix
    it could reuse, in arrival order.

    The cache is one LRU holding the deployment's whole prefix-cache capacity
    (``prefix_cache_blocks`` × its prefill instances). Each request looks its prefix up
    under the simulator's snapshot rule
    (:meth:`~prfaas_gym.prefix_cache.PrefixCacheIndex.usable_hit_tokens`), then inserts its
    prompt's full blocks, as a prefill does when it ends. This is the most reuse that
    capacity allows, as if every request were routed to an instance holding its prefix
    and its predecessors' prefills had ended. The simulator's per-instance caches can
    only hit less. Without block hashes or cache capacity every ``L`` is the prompt length.
    """
    dep = profile.deployment
    capacity = dep.prefix_cache_blocks * (dep.n_prfaas + dep.n_prefill)
    cache = PrefixCacheIndex(1, capacity, workload.block_size,
                             profile.model.snapshot_interval_blocks)
    out = np.empty(len(workload.requests), dtype=np.float64)
    for k, r in enumerate(workload.requests):
        hit = 0
        if capacity and r.block_hashes:
            hit = cache.usable_hit_tokens(r.block_hashes, r.prompt_tokens)[0]
            cache.insert(0, r.block_hashes, r.prompt_tokens // workload.block_size)
        out[k] = r.prompt_tokens - hit
    return out


def prefill_time_vec(cost: PrefillCost, tokens: np.ndarray | float) -> np.ndarray:
    """Vectorised :meth:`PrefillCost.time` (same table interpolation / polynomial)."""
    x = np.asarray(tokens, dtype=float)
    if cost.coeffs:
        acc = np.zeros_like(x)
        for c in reversed(cost.coeffs):
            acc = acc * x + c
        return acc
    xs = np.asarray(cost.tokens, dtype=float)
    ys = np.asarray(cost.seconds, dtype=float)
    i = np.clip(np.searchsorted(xs, x, side="right"), 1, len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return np.maximum(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


class _Dist:
    """Sorted weighted length samples with prefix sums for O(log n) conditional means."""

    def __init__(self, lengths: Any, weights: Any = None) -> None:
        x = np.asarray(lengths, dtype=float)
        if x.ndim != 1 or x.size == 0:
            raise PrfaasInputError("lengths must be a non-empty 1-D array")
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise PrfaasInputError("lengths must be finite and >= 0")
        if weights is None:
            w = np.ones_like(x)
        else:
            w = np.asarray(weights, dtype=float)
            if w.shape != x.shape:
                raise PrfaasInputError(f"weights shape {w.shape} != lengths shape {x.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise PrfaasInputError("weights must be finite and >= 0")
        keep = w > 0
        x, w = x[keep], w[keep]
        if x.size == 0:
            raise PrfaasInputError("weights must have a positive sum")
        order = np.argsort(x, kind="stable")
        self.x = x[order]
        self.w = w[order]
        self.cum_w = np.concatenate(([0.0], np.cumsum(self.w)))
        self.cum_wx = np.concatenate(([0.0], np.cumsum(self.w * self.x)))
        # tail sums (summed from the long end) so the long side never suffers cancellation
        self.tail_w = np.concatenate((np.cumsum(self.w[::-1])[::-1], [0.0]))
        self.tail_wx = np.concatenate((np.cumsum((self.w * self.x)[::-1])[::-1], [0.0]))
        self.total_w = float(self.cum_w[-1])
        self.total_wx = float(self.cum_wx[-1])
        self.mean = self.total_wx / self.total_w

    def split(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p, l_short, l_long)`` per threshold; undefined conditional means are NaN."""
        t = np.asarray(thresholds, dtype=float)
        k = np.searchsorted(self.x, t, side="right")  # samples with L <= t
        w_short = self.cum_w[k]
        wx_short = self.cum_wx[k]
        w_long = self.tail_w[k]
        wx_long = self.tail_wx[k]
        p = np.where(k == self.x.size, 0.0, np.where(k == 0, 1.0, w_long / self.total_w))
        with np.errstate(invalid="ignore", divide="ignore"):
            l_short = np.where(k > 0, wx_short / w_short, np.nan)
            l_long = np.where(k < self.x.size, wx_long / w_long, np.nan)
        return p, l_short, l_long

    def candidates(self, grid_step: float = DEFAULT_GRID_STEP) -> np.ndarray:
        if not grid_step > 0:
            raise PrfaasInputError(f"grid_step must be > 0 (got {grid_step})")
        top = math.ceil(float(self.x[-1]) / grid_step)
        grid = np.arange(top + 1, dtype=float) * grid_step
        return np.unique(np.concatenate((self.x, grid)))

    def weighted_quantile(self, values: np.ndarray, q: float) -> float:
        """Smallest ``v`` with ``W(values <= v) >= q · W`` (weights aligned with ``self.x``)."""
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(self.w[order])
        i = int(np.searchsorted(cum, q * self.total_w * (1.0 - 1e-12), side="left"))
        return float(values[order][min(i, values.size - 1)])


# --------------------------------------------------------------------------------------------
# the throughput model

def _check_mean_output(mean_output: float) -> float:
    m = float(mean_output)
    if not (math.isfinite(m) and m > 0):
        raise PrfaasInputError(f"mean_output must be a positive number (got {mean_output})")
    return m


def _t_dec(profile: Profile, mean_prompt: float, mean_output: float) -> float:
    dc = profile.local_hw.decode
    return dc.step_s(dc.max_batch, dc.max_batch * (mean_prompt + mean_output / 2.0))


def _theta_pdd(profile: Profile, n_decode: int, mean_prompt: float, mean_output: float) -> float:
    dc = profile.local_hw.decode
    return n_decode * dc.max_batch / (_t_dec(profile, mean_prompt, mean_output) * mean_output)


def _link_bytes_per_s(profile: Profile) -> float:
    return profile.link.capacity_gbps * 1e9 / 8.0


def _kv_bytes_vec(profile: Profile, tokens: np.ndarray) -> np.ndarray:
    m = profile.model
    return (m.kv_fixed_mib + m.kv_per_token_mib * np.asarray(tokens, dtype=float)) * 1024.0 ** 2


def _check_counts(n_prfaas: int, n_prefill: int, n_decode: int) -> None:
    for name, v in (("n_prfaas", n_prfaas), ("n_prefill", n_prefill), ("n_decode", n_decode)):
        if int(v) != v or v < 0:
            raise PrfaasInputError(f"{name} must be a non-negative integer (got {v})")


def _grid(profile: Profile, dist: _Dist, mean_output: float, thresholds: np.ndarray,
          n_prfaas: int, n_prefill: int, n_decode: int) -> dict[str, np.ndarray]:
    """Vectorised Eqs. 3-8 over thresholds for one instance split."""
    p, l_short, l_long = dist.split(thresholds)
    with np.errstate(invalid="ignore", divide="ignore"):
        th_compute = n_prfaas / prefill_time_vec(profile.prfaas_hw.prefill, l_long)
        th_link = _link_bytes_per_s(profile) / _kv_bytes_vec(profile, l_long)
        th_prfaas = np.minimum(th_compute, th_link)  # NaN where p == 0
        th_pdp = n_prefill / prefill_time_vec(profile.local_hw.prefill, l_short)  # NaN if p == 1
        r_prfaas = np.where(p > 0, th_prfaas / np.where(p > 0, p, 1.0), np.inf)
        r_pdp = np.where(p < 1, th_pdp / np.where(p < 1, 1.0 - p, 1.0), np.inf)
    th_pdd = _theta_pdd(profile, n_decode, dist.mean, mean_output)
    lam = np.minimum(np.minimum(r_prfaas, r_pdp), th_pdd)
    return {"p": p, "l_short": l_short, "l_long": l_long, "theta_prfaas": th_prfaas,
            "theta_prfaas_compute": th_compute, "theta_link": th_link, "theta_pdp": th_pdp,
            "theta_pdd": np.full_like(lam, th_pdd), "lambda_max": lam,
            "r_prfaas": r_prfaas, "r_pdp": r_pdp}


def _nan_to_none(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _resolve_threshold(threshold: float | None, n_prfaas: int, n_prefill: int) -> float:
    if threshold is not None:
        t = float(threshold)
        if math.isnan(t):
            raise PrfaasInputError("threshold must not be NaN")
        return t
    if n_prfaas == 0:
        return math.inf
    if n_prefill == 0:
        return -math.inf
    raise PrfaasInputError("threshold=None is only allowed with n_prfaas == 0 (all local) or "
                           "n_prefill == 0 (all offloaded)")


def throughput(profile: Profile, lengths: Any, weights: Any, mean_output: float,
               threshold: float | None, n_prfaas: int, n_prefill: int,
               n_decode: int) -> dict[str, Any]:
    """Eqs. 3-8 at one point.

    Requests with ``L > threshold`` go to PrfaaS (``threshold=math.inf``: none, ``-math.inf``:
    all; ``None`` picks +inf when ``n_prfaas == 0`` and -inf when ``n_prefill == 0``).
    Returns ``p``, ``l_short``, ``l_long``, ``theta_prfaas`` (with its parts
    ``theta_prfaas_compute`` and ``theta_link``), ``theta_pdp``, ``theta_pdd``, ``t_dec_s``,
    ``lambda_max`` and ``bottleneck`` (``"prfaas-compute"``, ``"prfaas-link"``, ``"pdp"`` or
    ``"pdd"``). Quantities of an unused side (e.g. ``l_long`` when ``p = 0``) are ``None``.
    """
    _check_counts(n_prfaas, n_prefill, n_decode)
    mean_output = _check_mean_output(mean_output)
    dist = _Dist(lengths, weights)
    t = _resolve_threshold(threshold, n_prfaas, n_prefill)
    g = _grid(profile, dist, mean_output, np.array([t]), n_prfaas, n_prefill, n_decode)
    out: dict[str, Any] = {k: _nan_to_none(v[0]) for k, v in g.items()}
    out["threshold"] = t
    out["t_dec_s"] = _t_dec(profile, dist.mean, mean_output)
    out["bottleneck"] = _bottleneck(g, 0)
    for k in ("r_prfaas", "r_pdp"):
        out.pop(k)
    return out


def _bottleneck(g: dict[str, np.ndarray], i: int) -> str:
    lam = g["lambda_max"][i]
    if g["r_prfaas"][i] == lam:
        return "prfaas-link" if g["theta_link"][i] < g["theta_prfaas_compute"][i] else \
            "prfaas-compute"
    if g["r_pdp"][i] == lam:
        return "pdp"
    return "pdd"


def _best_index(lam: np.ndarray) -> int:
    """First index of the maximum (the candidate arrays are sorted by ascending ``t``)."""
    return int(np.argmax(lam))


def best_threshold(profile: Profile, lengths: Any, weights: Any, mean_output: float,
                   n_prfaas: int, n_prefill: int, n_decode: int,
                   grid_step: float = DEFAULT_GRID_STEP) -> tuple[float, float]:
    """``(t, Λ_max)`` maximising Eqs. 3-8 over the threshold candidates for a fixed split."""
    _check_counts(n_prfaas, n_prefill, n_decode)
    mean_output = _check_mean_output(mean_output)
    dist = _Dist(lengths, weights)
    cand = dist.candidates(grid_step)
    lam = _grid(profile, dist, mean_output, cand, n_prfaas, n_prefill, n_decode)["lambda_max"]
    i = _best_index(lam)
    return float(cand[i]), float(lam[i])


def lambda_curve(profile: Profile, lengths: Any, weights: Any, mean_output: float,
                 thresholds: Any, n_prefill: int, n_decode: int) -> np.ndarray:
    """``Λ_max(t)`` for each threshold at a fixed local split, ``N_prfaas`` from the profile."""
    n_prfaas = profile.deployment.n_prfaas
    _check_counts(n_prfaas, n_prefill, n_decode)
    mean_output = _check_mean_output(mean_output)
    dist = _Dist(lengths, weights)
    t = np.asarray(thresholds, dtype=float)
    return _grid(profile, dist, mean_output, t.ravel(), n_prfaas, n_prefill,
                 n_decode)["lambda_max"].reshape(t.shape)


# --------------------------------------------------------------------------------------------
# planning the three configurations

@dataclass(frozen=True)
class PlanResult:
    """The best operating point of one configuration (see the module docstring)."""

    config: str  # "prfaas" | "homogeneous" | "naive"
    lambda_max: float  # req/s
    threshold_tokens: float | None
    n_prfaas: int
    n_prefill: int
    n_decode: int
    theta_prfaas: float | None
    theta_pdp: float | None
    theta_pdd: float
    offload_fraction: float
    link_gbps_at_lambda_max: float  # KV egress used at Λ_max
    ttft_mean_s: float
    ttft_p90_s: float
    bottleneck: str = ""  # "prfaas-compute" | "prfaas-link" | "pdp" | "pdd"
    l_long: float | None = None  # E[L | L > t], tokens
    l_short: float | None = None  # E[L | L <= t], tokens

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (plain floats/ints/str/None)."""
        return asdict(self)


def _ttft(profile: Profile, dist: _Dist, threshold: float) -> tuple[float, float]:
    remote = dist.x > threshold
    t = np.empty_like(dist.x)
    if remote.any():
        t[remote] = prefill_time_vec(profile.prfaas_hw.prefill, dist.x[remote])
    if (~remote).any():
        t[~remote] = prefill_time_vec(profile.local_hw.prefill, dist.x[~remote])
    mean = float(np.dot(dist.w, t) / dist.total_w)
    return mean, dist.weighted_quantile(t, _P90)


def _result(config: str, profile: Profile, dist: _Dist, g: dict[str, np.ndarray], i: int,
            threshold: float, n_prfaas: int, n_prefill: int, n_decode: int,
            report_threshold: float | None) -> PlanResult:
    lam = float(g["lambda_max"][i])
    p = float(g["p"][i])
    l_long = _nan_to_none(g["l_long"][i])
    link_gbps = 0.0
    if p > 0 and l_long is not None:
        link_gbps = lam * p * float(_kv_bytes_vec(profile, np.array(l_long))) * 8.0 / 1e9
    mean, p90 = _ttft(profile, dist, threshold)
    return PlanResult(
        config=config, lambda_max=lam, threshold_tokens=report_threshold,
        n_prfaas=int(n_prfaas), n_prefill=int(n_prefill), n_decode=int(n_decode),
        theta_prfaas=_nan_to_none(g["theta_prfaas"][i]) if n_prfaas > 0 else None,
        theta_pdp=_nan_to_none(g["theta_pdp"][i]) if n_prefill > 0 else None,
        theta_pdd=float(g["theta_pdd"][i]), offload_fraction=p,
        link_gbps_at_lambda_max=link_gbps, ttft_mean_s=mean, ttft_p90_s=p90,
        bottleneck=_bottleneck(g, i), l_long=l_long, l_short=_nan_to_none(g["l_short"][i]),
    )


def _plan_prfaas(profile: Profile, dist: _Dist, mean_output: float, n_prfaas: int,
                 n_local: int, grid_step: float) -> PlanResult:
    cand = dist.candidates(grid_step)
    best: tuple[float, float, int] | None = None  # (-Λ, t, n_p): lexicographic minimum wins
    best_g: dict[str, np.ndarray] = {}
    best_i = 0
    for n_p in range(1, n_local):
        g = _grid(profile, dist, mean_output, cand, n_prfaas, n_p, n_local - n_p)
        i = _best_index(g["lambda_max"])
        key = (-float(g["lambda_max"][i]), float(cand[i]), n_p)
        if best is None or key < best:
            best, best_g, best_i = key, g, i
    assert best is not None
    t, n_p = best[1], best[2]
    return _result("prfaas", profile, dist, best_g, best_i, t, n_prfaas, n_p, n_local - n_p, t)


def _plan_homogeneous(profile: Profile, dist: _Dist, mean_output: float,
                      n_nodes: int) -> PlanResult:
    best: tuple[float, int] | None = None
    best_g: dict[str, np.ndarray] = {}
    t = np.array([math.inf])
    for n_p in range(1, n_nodes):
        g = _grid(profile, dist, mean_output, t, 0, n_p, n_nodes - n_p)
        key = (-float(g["lambda_max"][0]), n_p)
        if best is None or key < best:
            best, best_g = key, g
    assert best is not None
    n_p = best[1]
    return _result("homogeneous", profile, dist, best_g, 0, math.inf, 0, n_p, n_nodes - n_p,
                   None)


def _plan_naive(profile: Profile, dist: _Dist, mean_output: float, n_prfaas: int,
                n_local: int) -> PlanResult:
    g = _grid(profile, dist, mean_output, np.array([-math.inf]), n_prfaas, 0, n_local)
    return _result("naive", profile, dist, g, 0, -math.inf, n_prfaas, 0, n_local, None)


def plan(profile: Profile, lengths: Any, weights: Any = None, mean_output: float = 1024.0,
         grid_step: float = DEFAULT_GRID_STEP) -> dict[str, PlanResult]:
    """Best operating point of the ``prfaas``, ``homogeneous`` and ``naive`` configurations.

    Needs ``deployment.n_prfaas >= 1`` and ``n_prefill + n_decode >= 2`` local instances.
    """
    mean_output = _check_mean_output(mean_output)
    dist = _Dist(lengths, weights)
    dep = profile.deployment
    n_prfaas, n_local = dep.n_prfaas, dep.n_prefill + dep.n_decode
    if n_prfaas < 1:
        raise PrfaasInputError("plan needs at least one PrfaaS instance; this deployment has "
                               "none (a scenario's deployment.n_prfaas, a profile's "
                               "deployment.prfaas.instances, or --deployment n_prfaas=N)")
    if n_local < 2:
        raise PrfaasInputError("plan needs at least two local instances (one prefill, one "
                               "decode) in deployment.local")
    profile.refuse_prefill_past_limit(float(np.max(np.asarray(lengths, dtype=float))),
                                      "the planning workload", kind="prefill")
    return {
        "prfaas": _plan_prfaas(profile, dist, mean_output, n_prfaas, n_local, grid_step),
        "homogeneous": _plan_homogeneous(profile, dist, mean_output, n_prfaas + n_local),
        "naive": _plan_naive(profile, dist, mean_output, n_prfaas, n_local),
    }


def plan_for_paper(profile: Profile | str | None = None, n: int = 20000) -> dict[str, PlanResult]:
    """:func:`plan` on the paper's workload (log-normal μ 9.90, σ 1.00, [128, 131072], 1024 out).

    ``profile`` defaults to the ``paper-case-study`` preset; a name or path is loaded.
    """
    if profile is None:
        profile = "paper-case-study"
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    return plan(profile, paper_lengths(n), None, PAPER_WORKLOAD["mean_output"])
