"""Cost profiles: prefill time, decode step time, KV bytes, deployment sizes, link, SLOs.

Profiles are data (YAML), not code. A profile file has these top-level keys (all required
unless marked optional); see ``prfaas_gym/data/profiles/*.yaml`` for complete examples:

``model``      ``kv_fixed_mib`` (recurrent state per request), ``kv_per_token_mib``
               (full-attention KV per token), ``layers`` (for layer-wise transfer overlap),
               ``block_size`` (prefix-cache block, tokens), ``snapshot_interval_blocks``
               (hybrid rule: a cached prefix is usable only at a multiple of this many blocks,
               where a recurrent-state snapshot exists; 1 = every block boundary).
``hardware``   mapping name -> ``prefill`` (``{table: {tokens: [...], seconds: [...]}}`` or
               ``{poly: [c0, c1, c2, ...]}`` in seconds, ``l`` in tokens; a polynomial must
               be positive and non-decreasing up to 2^20 tokens; a run refuses a prompt past
               where it turns down) and ``decode``
               (``step_base_s``, ``step_per_seq_s``, ``step_per_ctx_token_s``,
               ``max_batch``, ``kv_capacity_gib``).
``deployment`` ``prfaas: {instances, hardware}``, ``local: {prefill, decode, hardware,
               switch_delay_s, rdma_gbps, rdma_latency_s}``, optional ``prefix_cache_blocks``
               (per prefill instance; 0 disables caching).
``link``       ``capacity_gbps``, ``rtt_s``.
``slo``        ``ttft_s``, ``tpot_s``.

Every number must be finite (``PrfaasInputError`` naming the key otherwise); counts
(instances, ``max_batch``, ``layers``, ``block_size``, ...) must be integers.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from prfaas_gym._compiled import pickle_by_constructor
from prfaas_gym.config_file import parse_config_yaml, read_named_config, yaml_string_hint
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.request import MAX_TOKENS

MIB: Final = 1024 * 1024
GIB: Final = 1024 * MIB
#: the most instances of one kind a deployment may have: the simulator keeps state for every
#: instance and scans each cluster per decision (10,000 per role ran at ~18 requests a second)
MAX_INSTANCES: Final = 10_000
#: The fastest link a profile, trace or option may describe: one petabit per second, a typo
#: guard.
MAX_GBPS: Final = 1e6
#: The longest round trip a link may have, in seconds (a Pantheon trace's one-way delay is
#: capped at 1,000 s likewise): a typo guard, milliseconds written as seconds.
MAX_RTT_S: Final = 2000.0


def is_finite_number(v: object) -> bool:
    """True for an int or a float (not a bool) whose value is a finite float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def number_error(v: object) -> str:
    """Why ``v`` is not a finite number, for an error message."""
    hint = yaml_string_hint(v)
    if hint:
        return f"must be a number, got the string {v!r}{hint}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"must be a number, got {v!r}"
    return f"must be a finite number, got {v!r}"


#: A prefill polynomial must give positive, non-decreasing times up to this prompt length
#: (checked at every 1/1024 of it, and where its slope turns negative); past it, it is valid
#: up to where it turns down, and a run refuses a longer prompt
#: (:attr:`PrefillCost.valid_tokens`).
POLY_CHECK_TOKENS: Final = 1 << 20
_POLY_CHECK_POINTS: Final = 1024


def _first_turn_down(coeffs: tuple[float, ...]) -> int:
    """The first prompt length in ``(0, MAX_TOKENS)`` past which the polynomial decreases (a
    root of its slope where the slope turns negative; an inflection where it only touches
    zero is not one), rounded down; :data:`MAX_TOKENS` if there is none."""
    import numpy as np

    slope = [k * c for k, c in enumerate(coeffs)][1:]  # ascending, as coeffs
    while slope and slope[-1] == 0.0:
        slope.pop()
    if len(slope) < 2:  # constant slope: no turn
        return MAX_TOKENS

    def slope_at(x: float) -> float:
        acc = 0.0
        for c in reversed(slope):
            acc = acc * x + c
        return acc

    turns = []
    for r in np.roots(slope[::-1]):
        x = float(r.real)
        if abs(r.imag) <= 1e-9 * max(1.0, abs(x)) and 0 < x < MAX_TOKENS \
                and slope_at(x + max(1.0, 1e-6 * x)) < 0:
            turns.append(x)
    return math.floor(min(turns)) if turns else MAX_TOKENS


@dataclass(frozen=True, slots=True)
class PrefillCost:
    """Prefill time ``T(l)`` of one instance for a prompt of ``l`` tokens, no cache.

    Either a piecewise-linear ``table`` (seconds never decreasing; extrapolated linearly
    from the first and last segments, never below zero) or a polynomial with ascending
    ``coeffs``. ``valid_tokens``: the longest prompt ``T`` is valid for (positive and never
    decreasing up to it): at least :data:`POLY_CHECK_TOKENS`, and every length a trace may
    hold (:data:`~prfaas_gym.request.MAX_TOKENS`) unless a polynomial turns down before
    (:func:`_first_turn_down`).
    """

    tokens: tuple[float, ...] = ()
    seconds: tuple[float, ...] = ()
    coeffs: tuple[float, ...] = ()
    t0: float = dataclasses.field(default=0.0, init=False, repr=False, compare=False)
    valid_tokens: int = dataclasses.field(default=MAX_TOKENS, init=False, repr=False,
                                          compare=False)

    def __post_init__(self) -> None:
        if self.coeffs:
            cs = self.coeffs
            if not all(math.isfinite(c) for c in cs):
                raise PrfaasInputError(
                    f"prefill 'poly' coefficients must be finite, got {list(cs)}")
            # A fit may have a small negative term; what matters is T over the prompts served.
            step = POLY_CHECK_TOKENS // _POLY_CHECK_POINTS
            prev = -math.inf
            for k in range(1, _POLY_CHECK_POINTS + 1):
                t = self.time(float(k * step))
                if not (t > 0 and t >= prev):
                    why = (f"T({k * step}) = {t:.4g} s" if not t > 0 else
                           f"T({k * step}) = {t:.4g} s < T({(k - 1) * step}) = {prev:.4g} s")
                    raise PrfaasInputError(
                        f"prefill 'poly' {list(cs)} gives {why}: T(l) = c0 + c1*l + c2*l^2 + "
                        f"... must be positive and never decrease for prompts up to "
                        f"{POLY_CHECK_TOKENS:,} tokens")
                prev = t
            turn = _first_turn_down(cs)  # the grid above can step over a peak
            if turn < POLY_CHECK_TOKENS:
                raise PrfaasInputError(
                    f"prefill 'poly' {list(cs)} turns down at {turn:,} tokens: T(l) = c0 + "
                    f"c1*l + c2*l^2 + ... must never decrease for prompts up to "
                    f"{POLY_CHECK_TOKENS:,} tokens")
            object.__setattr__(self, "t0", self.time(0.0))
            object.__setattr__(self, "valid_tokens", turn)
            return
        if len(self.tokens) < 2 or len(self.tokens) != len(self.seconds):
            raise PrfaasInputError("prefill table needs >= 2 points and equal-length "
                                   "'tokens' and 'seconds'")
        if not all(math.isfinite(x) for x in self.tokens + self.seconds):
            raise PrfaasInputError("prefill table 'tokens' and 'seconds' must be finite numbers, "
                                   f"got {list(self.tokens)} and {list(self.seconds)}")
        if any(b <= a for a, b in zip(self.tokens, self.tokens[1:])):
            raise PrfaasInputError("prefill table 'tokens' must be strictly increasing")
        if any(s < 0 for s in self.seconds):
            raise PrfaasInputError("prefill table 'seconds' must be >= 0")
        if not any(s > 0 for s in self.seconds):
            raise PrfaasInputError("prefill table 'seconds' must not all be 0")
        for k in range(1, len(self.seconds)):
            # a dip would make a prefill on top of a cached prefix take negative time
            if self.seconds[k] < self.seconds[k - 1]:
                raise PrfaasInputError(
                    f"prefill table 'seconds' must never decrease: {self.seconds[k]:g} s at "
                    f"{self.tokens[k]:g} tokens < {self.seconds[k - 1]:g} s at "
                    f"{self.tokens[k - 1]:g} tokens")
        object.__setattr__(self, "t0", self.time(0.0))

    def time(self, tokens: float) -> float:
        """Seconds to prefill ``tokens`` tokens from scratch."""
        cs = self.coeffs
        if cs:
            if len(cs) == 3:
                return cs[0] + tokens * (cs[1] + tokens * cs[2])
            acc = 0.0
            for c in reversed(cs):
                acc = acc * tokens + c
            return acc
        xs, ys = self.tokens, self.seconds
        i = bisect.bisect_right(xs, tokens)
        if i == 0:
            i = 1
        elif i == len(xs):
            i = len(xs) - 1
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return max(0.0, y0 + (y1 - y0) * (tokens - x0) / (x1 - x0))

    def time_with_cache(self, new_tokens: float, cached_tokens: float) -> float:
        """Seconds to prefill ``new_tokens`` on top of ``cached_tokens`` of reused prefix.

        ``T(cached + new) - T(cached) + T(0)``: the fixed per-batch overhead is paid once, and
        the new tokens cost what they add to a cold prefill of the whole prompt (their
        attention still reads the cached context).
        """
        if cached_tokens <= 0:
            return self.time(new_tokens)
        return self.time(cached_tokens + new_tokens) - self.time(cached_tokens) + self.t0


@dataclass(frozen=True, slots=True)
class DecodeCost:
    """Continuous-batching decode: one step emits one token for every running request.

    ``step_s(b, C) = step_base_s + step_per_seq_s * b + step_per_ctx_token_s * C`` where ``b``
    is the batch size and ``C`` the total context (prompt + generated) of the batch.
    """

    step_base_s: float
    step_per_seq_s: float = 0.0
    step_per_ctx_token_s: float = 0.0
    max_batch: int = 64
    kv_capacity_gib: float = 64.0

    def __post_init__(self) -> None:
        for k, v in (("step_base_s", self.step_base_s), ("step_per_seq_s", self.step_per_seq_s),
                     ("step_per_ctx_token_s", self.step_per_ctx_token_s)):
            if not (math.isfinite(v) and v >= 0):
                raise PrfaasInputError(f"decode {k} must be a finite number >= 0, got {v!r}")
        if self.step_base_s + self.step_per_seq_s + self.step_per_ctx_token_s <= 0:
            raise PrfaasInputError("decode step time must be positive")
        if self.max_batch < 1:
            raise PrfaasInputError("decode max_batch must be >= 1")
        if not (math.isfinite(self.kv_capacity_gib) and self.kv_capacity_gib > 0):
            raise PrfaasInputError("decode kv_capacity_gib must be a finite number > 0, "
                                   f"got {self.kv_capacity_gib!r}")

    def step_s(self, batch: int, context_tokens: float) -> float:
        return self.step_base_s + self.step_per_seq_s * batch + self.step_per_ctx_token_s * context_tokens


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    prefill: PrefillCost
    decode: DecodeCost


#: The most layers a model may have (today's deepest have a few hundred).
MAX_LAYERS: Final = 10_000


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """KV geometry of the served (hybrid-attention) model."""

    kv_fixed_mib: float
    kv_per_token_mib: float
    layers: int = 64
    block_size: int = 512
    snapshot_interval_blocks: int = 1

    def __post_init__(self) -> None:
        for k, v in (("kv_fixed_mib", self.kv_fixed_mib),
                     ("kv_per_token_mib", self.kv_per_token_mib)):
            if not (math.isfinite(v) and v >= 0):
                raise PrfaasInputError(f"model {k} must be a finite number >= 0, got {v!r}")
        if self.layers < 1 or self.block_size < 1 or self.snapshot_interval_blocks < 1:
            raise PrfaasInputError("model layers, block_size, snapshot_interval_blocks must be >= 1")
        if self.layers > MAX_LAYERS:  # a typo: a last layer's sliver of KV outruns the clock
            raise PrfaasInputError(f"model layers must be <= {MAX_LAYERS:,}, got {self.layers:,}")

    def kv_bytes(self, tokens: float) -> float:
        """Bytes to ship for a prefill of ``tokens`` new tokens: fixed state + per-token KV."""
        return (self.kv_fixed_mib + self.kv_per_token_mib * tokens) * MIB


@dataclass(frozen=True, slots=True)
class Deployment:
    """Instance counts. Any count may be zero (homogeneous PD: no PrfaaS; naive: no PD-P)."""

    n_prfaas: int
    prfaas_hardware: str
    n_prefill: int
    n_decode: int
    local_hardware: str
    switch_delay_s: float = 30.0
    rdma_gbps: float = 800.0
    rdma_latency_s: float = 1e-4
    prefix_cache_blocks: int = 0

    def __post_init__(self) -> None:
        for k in ("n_prfaas", "n_prefill", "n_decode", "prefix_cache_blocks"):
            if getattr(self, k) < 0:
                raise PrfaasInputError(f"deployment {k} must be >= 0")
        for k in ("n_prfaas", "n_prefill", "n_decode"):
            if getattr(self, k) > MAX_INSTANCES:
                raise PrfaasInputError(f"deployment {k} must be <= {MAX_INSTANCES:,} (the "
                                       f"simulator's limit per role), got {getattr(self, k):,}")
        if self.n_decode < 1:
            raise PrfaasInputError("deployment needs at least one decode instance")
        if self.n_prfaas + self.n_prefill < 1:
            raise PrfaasInputError("deployment needs at least one prefill instance")
        if self.rdma_gbps <= 0 or self.switch_delay_s < 0 or self.rdma_latency_s < 0:
            raise PrfaasInputError("deployment rdma_gbps must be > 0, delays >= 0")
        for k, v in (("switch_delay_s", self.switch_delay_s), ("rdma_gbps", self.rdma_gbps),
                     ("rdma_latency_s", self.rdma_latency_s)):
            if not math.isfinite(v):
                raise PrfaasInputError(f"deployment {k} must be a finite number, got {v!r}")


@dataclass(frozen=True, slots=True)
class LinkSpec:
    capacity_gbps: float
    rtt_s: float = 0.005

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_gbps) and 0 < self.capacity_gbps <= MAX_GBPS):
            raise PrfaasInputError(f"link capacity_gbps must be a number in (0, {MAX_GBPS:g}], "
                                   f"got {self.capacity_gbps!r}")
        if not (math.isfinite(self.rtt_s) and 0 <= self.rtt_s <= MAX_RTT_S):
            raise PrfaasInputError(f"link rtt_s must be a number in [0, {MAX_RTT_S:g}] "
                                   f"(seconds), got {self.rtt_s!r}")


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_s: float
    tpot_s: float

    def __post_init__(self) -> None:
        for k, v in (("ttft_s", self.ttft_s), ("tpot_s", self.tpot_s)):
            if not (math.isfinite(v) and v > 0):
                raise PrfaasInputError(f"slo {k} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    model: ModelSpec
    hardware: dict[str, Hardware]
    deployment: Deployment
    link: LinkSpec
    slo: Slo

    def __post_init__(self) -> None:
        for hw in (self.deployment.prfaas_hardware, self.deployment.local_hardware):
            if hw not in self.hardware:
                raise PrfaasInputError(f"deployment names hardware {hw!r}, which is not in "
                                       f"'hardware' ({sorted(self.hardware)})")

    @property
    def prfaas_hw(self) -> Hardware:
        return self.hardware[self.deployment.prfaas_hardware]

    @property
    def local_hw(self) -> Hardware:
        return self.hardware[self.deployment.local_hardware]

    def prefill_limit(self) -> tuple[int, Hardware]:
        """The longest prompt the deployed prefill curves are valid for
        (:attr:`PrefillCost.valid_tokens`; the PrfaaS hardware's only where it is deployed),
        and the hardware that sets it."""
        hw = self.local_hw
        if self.deployment.n_prfaas > 0 and \
                self.prfaas_hw.prefill.valid_tokens < hw.prefill.valid_tokens:
            hw = self.prfaas_hw
        return hw.prefill.valid_tokens, hw

    def refuse_prefill_past_limit(self, tokens: float, what: str, kind: str = "prompt") -> None:
        """:class:`PrfaasInputError` if ``what`` (a request, a workload) has a ``kind`` of
        more ``tokens`` than :meth:`prefill_limit`: a fit that turns down would give it a
        shrinking or negative prefill time."""
        limit, hw = self.prefill_limit()
        if tokens > limit:
            raise PrfaasInputError(
                f"{what} has a {tokens:,.0f}-token {kind}, but the prefill curve of hardware "
                f"{hw.name!r} in profile {self.name!r} turns down past {limit:,} tokens: "
                "refit the profile's 'poly' over longer prompts, or give it a 'table'")

    def with_deployment(self, **changes: Any) -> Profile:
        """A copy with some deployment fields replaced (e.g. ``n_prefill=9``)."""
        return dataclasses.replace(self, deployment=dataclasses.replace(self.deployment, **changes))

    def with_link(self, **changes: Any) -> Profile:
        return dataclasses.replace(self, link=dataclasses.replace(self.link, **changes))

    def with_slo(self, **changes: Any) -> Profile:
        return dataclasses.replace(self, slo=dataclasses.replace(self.slo, **changes))


def _take(d: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = (int, float),
          default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise PrfaasInputError(f"missing required key '{key}'", where)
        return default
    v = d[key]
    if kind in ((int, float), float) and isinstance(v, bool):
        raise PrfaasInputError(f"key '{key}' must be a number, got {v!r}", where)
    if kind is int and isinstance(v, bool):
        raise PrfaasInputError(f"key '{key}' must be an integer, got {v!r}", where)
    if not isinstance(v, kind):
        raise PrfaasInputError(f"key '{key}' has the wrong type ({type(v).__name__}: {v!r})", where)
    if kind in ((int, float), float) and not is_finite_number(v):
        raise PrfaasInputError(number_error(v), f"{where}.{key}")
    return v


def _check_keys(d: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise PrfaasInputError(f"expected a mapping, got {type(d).__name__}", where)
    unknown = set(d) - allowed
    if unknown:
        raise PrfaasInputError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}", where)
    return d


def _parse_prefill(d: Any, where: str) -> PrefillCost:
    d = _check_keys(d, {"table", "poly"}, where)
    if ("table" in d) == ("poly" in d):
        raise PrfaasInputError("give exactly one of 'table' or 'poly'", where)
    if "poly" in d:
        c = d["poly"]
        if not isinstance(c, list) or not c or not all(is_finite_number(x) for x in c):
            raise PrfaasInputError(f"'poly' must be a non-empty list of finite numbers, got {c!r}",
                                   where + ".poly")
        try:
            return PrefillCost(coeffs=tuple(float(x) for x in c))
        except PrfaasInputError as e:
            raise PrfaasInputError(e.reason, where + ".poly") from None
    t = _check_keys(d["table"], {"tokens", "seconds"}, where + ".table")
    toks, secs = t.get("tokens"), t.get("seconds")
    if not isinstance(toks, list) or not isinstance(secs, list):
        raise PrfaasInputError("'tokens' and 'seconds' must be lists", where + ".table")
    for key, values in (("tokens", toks), ("seconds", secs)):
        for i, x in enumerate(values):
            if not is_finite_number(x):  # as 'poly': no strings ('1e300'), no booleans
                raise PrfaasInputError(number_error(x), f"{where}.table.{key}[{i}]")
    try:
        return PrefillCost(tokens=tuple(float(x) for x in toks), seconds=tuple(float(x) for x in secs))
    except PrfaasInputError as e:
        raise PrfaasInputError(e.reason, where + ".table") from None


def _build(cls: type, d: dict[str, Any], where: str, ints: frozenset[str] = frozenset(),
           rename: dict[str, str] | None = None) -> Any:
    """``cls(**d)``: every value a finite number, an integer where its field is in ``ints``."""
    rename = rename or {}
    fields = {f.name for f in dataclasses.fields(cls)}
    allowed = {rename.get(f, f) for f in fields} | set(rename)
    _check_keys(d, allowed, where)
    kwargs = {}
    for k, v in d.items():
        name = rename.get(k, k)
        if name in ints:
            if isinstance(v, bool) or not isinstance(v, int):
                raise PrfaasInputError(f"must be an integer, got {v!r}", f"{where}.{k}")
        elif not is_finite_number(v):
            raise PrfaasInputError(number_error(v), f"{where}.{k}")
        kwargs[name] = v
    try:
        return cls(**kwargs)
    except PrfaasInputError as e:
        raise PrfaasInputError(e.reason, where) from None
    except TypeError as e:
        raise PrfaasInputError(f"missing or invalid keys ({e})", where) from None


def profile_from_dict(d: Any, where: str = "profile") -> Profile:
    """Validate and build a :class:`Profile` from a parsed YAML mapping."""
    d = _check_keys(d, {"name", "model", "hardware", "deployment", "link", "slo", "description"},
                    where)
    for k in ("model", "hardware", "deployment", "link", "slo"):
        if k not in d:
            raise PrfaasInputError(f"missing required key '{k}'", where)
    model = _build(ModelSpec, d["model"], f"{where}: model",
                   ints=frozenset({"layers", "block_size", "snapshot_interval_blocks"}))
    hw_map = _check_keys(d["hardware"], set(d["hardware"]) if isinstance(d["hardware"], dict) else set(),
                         f"{where}: hardware")
    hardware: dict[str, Hardware] = {}
    for name, hd in hw_map.items():
        w = f"{where}: hardware.{name}"
        hd = _check_keys(hd, {"prefill", "decode"}, w)
        if "prefill" not in hd or "decode" not in hd:
            raise PrfaasInputError("needs both 'prefill' and 'decode'", w)
        hardware[name] = Hardware(name, _parse_prefill(hd["prefill"], w + ".prefill"),
                                  _build(DecodeCost, hd["decode"], w + ".decode",
                                         ints=frozenset({"max_batch"})))
    dep = _check_keys(d["deployment"], {"prfaas", "local", "prefix_cache_blocks"}, f"{where}: deployment")
    pr = _check_keys(dep.get("prfaas", {"instances": 0, "hardware": ""}), {"instances", "hardware"},
                     f"{where}: deployment.prfaas")
    lo = _check_keys(dep.get("local"), {"prefill", "decode", "hardware", "switch_delay_s", "rdma_gbps",
                                        "rdma_latency_s"}, f"{where}: deployment.local")
    w = f"{where}: deployment"
    local_hw = _take(lo, "hardware", w + ".local", str)
    try:
        deployment = Deployment(
            n_prfaas=_take(pr, "instances", w + ".prfaas", int, 0),
            prfaas_hardware=_take(pr, "hardware", w + ".prfaas", str, "") or local_hw,
            n_prefill=_take(lo, "prefill", w + ".local", int),
            n_decode=_take(lo, "decode", w + ".local", int),
            local_hardware=local_hw,
            switch_delay_s=float(_take(lo, "switch_delay_s", w + ".local", default=30.0)),
            rdma_gbps=float(_take(lo, "rdma_gbps", w + ".local", default=800.0)),
            rdma_latency_s=float(_take(lo, "rdma_latency_s", w + ".local", default=1e-4)),
            prefix_cache_blocks=_take(dep, "prefix_cache_blocks", w, int, 0),
        )
    except PrfaasInputError as e:
        raise PrfaasInputError(e.reason, e.where or w) from None
    link = _build(LinkSpec, d["link"], f"{where}: link")
    slo = _build(Slo, d["slo"], f"{where}: slo")
    try:
        return Profile(str(d.get("name", where)), model, hardware, deployment, link, slo)
    except PrfaasInputError as e:
        raise PrfaasInputError(e.reason, where) from None


def preset_names() -> list[str]:
    """Names of the profiles shipped in ``prfaas_gym/data/profiles``."""
    root = resources.files("prfaas_gym") / "data" / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a shipped preset by name (``paper-case-study``) or a profile YAML by path.

    Found by :func:`prfaas_gym.config_file.read_named_config`: a bare preset name wins over a
    folder of that name in the working directory.
    """
    text, path = read_named_config(name_or_path, "profile", "profile preset",
                                   resources.files("prfaas_gym") / "data" / "profiles",
                                   preset_names)
    where = str(path) if path else f"preset {name_or_path}"
    return profile_from_dict(parse_config_yaml(text, where), where)


pickle_by_constructor(PrefillCost, DecodeCost, Hardware, ModelSpec, Deployment, LinkSpec, Slo,
                      Profile)
