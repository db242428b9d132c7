"""Named scenarios: a cluster profile + workload + bandwidth + SLOs + the natural policy.

A scenario is a YAML file (shipped ones live in ``prfaas_gym/data/scenarios``). Keys:

``name``, ``description``
``profile``        preset name or path (:mod:`prfaas_gym.profile`)
``deployment``     optional overrides: ``n_prfaas``, ``n_prefill``, ``n_decode``,
                   ``prefix_cache_blocks``, ``switch_delay_s``
``link``, ``slo``  optional overrides of the profile's ``capacity_gbps``/``rtt_s`` and
                   ``ttft_s``/``tpot_s``. ``capacity_gbps`` is the planner's link egress
                   and the mean a ``--bandwidth-trace`` is rescaled to; the simulated link
                   follows ``bandwidth``. ``rtt_s`` applies unless the trace gives its own.
``workload``       ``synthetic: {...}`` (:func:`prfaas_gym.synthetic.generate` schema) or
                   ``trace: {path, format, rate}`` (a recorded trace, optionally
                   time-scaled to mean ``rate`` req/s; a relative path is looked up in the
                   scenario's folder, then as :mod:`prfaas_gym.data_paths` says, which
                   includes ``$PRFAAS_TRACES`` and ``../shared/traces``); ``requests`` (default
                   count for ``simulate``: 2000 synthetic, the whole trace);
                   ``eval_fraction`` (the last fraction of a trace's span, held out for
                   evaluation; default 0.2); ``val_fraction`` (the fraction just before it,
                   for validation during training; default 0.1; the rest is ``train``)
``bandwidth``      a bandwidth spec (:func:`prfaas_gym.bandwidth.bandwidth_sampler_from_spec`)
``policy``         the natural heuristic for this deployment
``threshold_tokens`` ``planner`` (solve Eqs. 3-8 on the workload's incremental prefill lengths,
                   :func:`~prfaas_gym.planner.incremental_lengths`) or a number
``sim``            :class:`~prfaas_gym.simulator.SimConfig` fields
``env``            ``episode_requests`` (default 256), ``max_drain_s`` (default 120;
                   ``.inf``: no limit)
``randomize``      domain randomisation for training episodes (all optional):
                   ``rate_scale: [lo, hi]``, ``link_gbps: [lo, hi]`` (``lo > 0``),
                   ``n_prfaas: [lo, hi]``, ``n_local: [lo, hi]`` (integers, inclusive)

Every key is validated; an unknown or invalid key raises :class:`PrfaasInputError` naming it.
Every number must be finite (NaN and infinity are errors) except ``max_drain_s`` (here and
in ``sim``), where ``.inf`` means no limit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from prfaas_gym import synthetic
from prfaas_gym.bandwidth import (
    BandwidthSampler,
    BandwidthTrace,
    LinkPart,
    bandwidth_sampler_from_spec,
)
from prfaas_gym.config_file import parse_config_yaml, read_named_config, yaml_string_hint
from prfaas_gym.data_paths import resolve_path
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import MAX_GBPS, MAX_INSTANCES, Profile, is_finite_number, load_profile
from prfaas_gym.request import Workload
from prfaas_gym.simulator import SimConfig
from prfaas_gym.workload import TRACE_FORMATS, load_trace, rebased, to_mean_rate

_TOP_KEYS = {"name", "description", "profile", "deployment", "link", "slo", "workload",
             "bandwidth", "policy", "threshold_tokens", "sim", "env", "randomize"}
_DEPLOYMENT_KEYS = {"n_prfaas", "n_prefill", "n_decode", "prefix_cache_blocks", "switch_delay_s"}
#: the instance counts ``--deployment`` may replace (:meth:`Scenario.with_deployment`)
DEPLOYMENT_COUNTS = ("n_prfaas", "n_prefill", "n_decode")
_WORKLOAD_KEYS = {"synthetic", "trace", "requests", "eval_fraction", "val_fraction"}
_ENV_KEYS = {"episode_requests", "max_drain_s"}
_RANDOMIZE_KEYS = {"rate_scale", "link_gbps", "n_prfaas", "n_local"}
SPLITS = ("train", "val", "eval", "all")
#: synthetic workloads: the seed offsets that keep the val and eval sample paths apart from
#: training's (and from each other's)
VAL_SEED_OFFSET = 2_000_006
EVAL_SEED_OFFSET = 1_000_003
_BANDWIDTH_SEED = 12345  # generated links of the train split (and of ``all``)


def scenario_dir() -> Path:
    return Path(str(resources.files("prfaas_gym") / "data" / "scenarios"))


def scenario_names() -> list[str]:
    return sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def _mapping(d: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise PrfaasInputError(f"expected a mapping, got {type(d).__name__}", where.rstrip(":"))
    unknown = set(d) - allowed
    if unknown:
        first = sorted(unknown)[0]
        loc = f"{where} {first}" if where.endswith(":") else f"{where}.{first}"
        raise PrfaasInputError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}",
                               loc)
    return d


def check_randomize(d: Any, where: str) -> dict[str, tuple[float, float]]:
    """Domain-randomisation ranges (the scenario's ``randomize:`` mapping, or a training
    curriculum's starting ranges) as ``{key: (lo, hi)}``; :class:`PrfaasInputError` at
    ``where.key`` for an unknown key or an invalid range (see the module docstring)."""
    rnd_d = _mapping(d, _RANDOMIZE_KEYS, where)
    rnd = {k: _range(rnd_d, k, where, integer=k in ("n_prfaas", "n_local"),
                     positive=k in ("rate_scale", "link_gbps")) for k in rnd_d}
    if "link_gbps" in rnd and rnd["link_gbps"][1] > MAX_GBPS:
        raise PrfaasInputError(f"must be <= {MAX_GBPS:g} Gbit/s, got {rnd['link_gbps'][1]:g}",
                               f"{where}.link_gbps")
    if "n_local" in rnd and rnd["n_local"][0] < 2:
        raise PrfaasInputError("must be >= 2 (a local prefill and a local decode node)",
                               f"{where}.n_local")
    for k in ("n_prfaas", "n_local"):
        if k in rnd and rnd[k][1] > MAX_INSTANCES:
            raise PrfaasInputError(f"must be <= {MAX_INSTANCES:,} (the simulator's limit per "
                                   f"role), got {rnd[k][1]:,}", f"{where}.{k}")
    return rnd


def _number(d: dict[str, Any], key: str, where: str, lo: float | None = None,
            integer: bool = False, lo_open: bool = False, allow_inf: bool = False) -> Any:
    """``d[key]``: an integer, or a finite number (``inf`` too with ``allow_inf``), ``>= lo``
    (``> lo`` with ``lo_open``). NaN is never a number here."""
    v = d[key]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if ok and not isinstance(v, bool) and not integer:
        ok = is_finite_number(v) or (allow_inf and v == math.inf)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if isinstance(v, bool) or not ok:
        kind = "an integer" if integer else "a number" if allow_inf else "a finite number"
        bound = f" {'>' if lo_open else '>='} {lo:g}" if lo is not None else ""
        also = " (or .inf: no limit)" if allow_inf else ""
        raise PrfaasInputError(f"must be {kind}{bound}{also}, got {v!r}{yaml_string_hint(v)}",
                               f"{where}.{key}")
    return v


def _range(d: dict[str, Any], key: str, where: str, integer: bool = False,
           positive: bool = False) -> tuple[float, float]:
    """``d[key]`` as ``[lo, hi]``: finite, ``0 <= lo <= hi`` (``0 < lo`` with ``positive``)."""
    v = d[key]
    if not (isinstance(v, list) and len(v) == 2 and all(is_finite_number(x) for x in v)
            and (0 < v[0] if positive else 0 <= v[0]) and v[0] <= v[1]):
        rel = "<" if positive else "<="
        raise PrfaasInputError(f"must be [lo, hi] of finite numbers with 0 {rel} lo <= hi, "
                               f"got {v!r}", f"{where}.{key}")
    if integer and not all(isinstance(x, int) for x in v):
        raise PrfaasInputError(f"must be integers, got {v!r}", f"{where}.{key}")
    return (v[0], v[1])


class TooFewRequestsError(PrfaasInputError):
    """A trace split too small to use (empty, or too short to scale to a rate)."""


@dataclass
class Scenario:
    """A validated scenario. Build with :func:`load_scenario`."""

    name: str
    description: str
    profile: Profile
    workload_spec: dict[str, Any]
    bandwidth_spec: Any
    policy: str
    threshold_spec: Any
    sim: SimConfig
    requests: int | None = 2000
    eval_fraction: float = 0.2
    val_fraction: float = 0.1
    episode_requests: int = 256
    max_drain_s: float = 120.0
    randomize: dict[str, tuple[float, float]] = field(default_factory=dict)
    base_dir: Path | None = None
    trace_override: tuple[str, str | None] | None = None
    run_rate: float | None = None  # --rate: every run's mean rate (with_rate)
    deployment_given: bool = False  # --deployment replaced instance counts (with_deployment)
    where: str = ""  # the scenario file (or shipped name), for error messages
    _bandwidth_samplers: dict[str, BandwidthSampler] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    # A trace's splits, and each split at the last mean rate asked for, keyed by the split
    # and its fractions: an env reset reads a window of one, and rebuilding the whole split
    # every episode cost as much as the episode's steps. Callers share these workloads and
    # must not modify them (nothing in the project does).
    _splits: dict[tuple[str, float, float], Workload] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _timed_splits: dict[tuple[str, float, float], tuple[float, Workload]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    # -- workloads -----------------------------------------------------------------
    @property
    def is_trace(self) -> bool:
        return "trace" in self.workload_spec or self.trace_override is not None

    @cached_property
    def _trace(self) -> Workload:
        if self.trace_override is not None:
            path, fmt = self.trace_override
            return load_trace(resolve_path(path, None, "--trace", typed=True), fmt)
        t = self.workload_spec["trace"]
        path = resolve_path(t["path"], self.base_dir, f"{self._loc}: workload.trace.path")
        return load_trace(path, t.get("format"))

    @property
    def _loc(self) -> str:
        return self.where or self.name

    def _trace_source(self) -> tuple[str, str]:
        """The trace being replayed, for error messages: (its path as given, where it is set)."""
        if self.trace_override is not None:
            return self.trace_override[0], "--trace"
        return str(self.workload_spec["trace"]["path"]), f"{self._loc}: workload.trace.path"

    def with_trace(self, path: str, fmt: str | None = None) -> Scenario:
        """A copy that replays the trace at ``path`` instead of the scenario's workload."""
        if fmt is not None and fmt not in TRACE_FORMATS:
            raise PrfaasInputError(f"unknown trace format {fmt!r}; formats: {list(TRACE_FORMATS)}",
                                   "--trace-format")
        s = dataclasses.replace(self, trace_override=(path, fmt))
        s.__dict__.pop("_trace", None)
        return s

    def with_rate(self, rate: float) -> Scenario:
        """A copy whose runs (and plan) default to mean rate ``rate`` req/s (``--rate``): a
        synthetic spec's rates are scaled, a recorded trace's split (the scenario's or
        ``--trace``) is time-scaled; see :meth:`workload`."""
        if not (is_finite_number(rate) and rate > 0):
            raise PrfaasInputError(f"must be a finite number > 0, got {rate!r}", "--rate")
        return dataclasses.replace(self, run_rate=float(rate))

    def with_deployment(self, **counts: int) -> Scenario:
        """A copy deployed with these instance counts (``--deployment``): any of
        ``n_prfaas``, ``n_prefill`` and ``n_decode`` (:data:`DEPLOYMENT_COUNTS`). A planned
        threshold and Λ_max are solved again for the new deployment; a numeric
        ``threshold_tokens`` is kept. Refuses (:class:`PrfaasInputError`, naming
        ``--deployment``) an unknown key, a count that is not an integer >= 0, or a
        deployment without a decode or prefill instance."""
        for k, v in counts.items():
            if k not in DEPLOYMENT_COUNTS:
                raise PrfaasInputError(f"unknown key {k!r}; give any of {list(DEPLOYMENT_COUNTS)}",
                                       "--deployment")
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise PrfaasInputError(f"{k} must be an integer >= 0, got {v!r}", "--deployment")
        try:
            profile = self.profile.with_deployment(**counts)
        except PrfaasInputError as e:
            raise PrfaasInputError(e.reason, "--deployment") from None
        return dataclasses.replace(self, profile=profile, deployment_given=True)

    def with_bandwidth_trace(self, path: str, fmt: str | None = None,
                             scale_to_gbps: float | None = None,
                             as_recorded: bool = False) -> Scenario:
        """A copy whose link follows the bandwidth trace at ``path``: its shape, rescaled to
        mean ``scale_to_gbps`` (default: the profile's ``link.capacity_gbps``), or its own
        capacities when ``as_recorded``. Its RTT, if the file gives one (Pantheon), replaces
        the profile's."""
        spec: dict[str, Any] = {"kind": "trace",
                                "path": str(resolve_path(path, None, "--bandwidth-trace",
                                                         typed=True))}
        if not as_recorded:
            spec["scale_to_gbps"] = (self.profile.link.capacity_gbps if scale_to_gbps is None
                                     else scale_to_gbps)
        if fmt:
            spec["format"] = fmt
        bandwidth_sampler_from_spec(spec, 0, None, "--bandwidth-trace")
        return dataclasses.replace(self, bandwidth_spec=spec)

    def sources(self) -> dict[str, Any]:
        """Where a run's requests and link come from (the scenario file, ``--trace``,
        ``--bandwidth-trace``; absolute paths) and the instance counts it deploys
        (``given_as: --deployment`` where that replaced the scenario's), for result files.
        The workload's ``rate`` is the mean rate its runs play: ``--rate`` (then ``rate_given_as``), a trace's
        ``rate:``, a synthetic spec's mean, or None for a trace at its own arrival times."""
        workload: dict[str, Any]
        if self.trace_override is not None:
            path, fmt = self.trace_override
            workload = {"trace": os.path.abspath(resolve_path(path, None, "--trace",
                                                              typed=True)),
                        "format": fmt, "given_as": "--trace", "rate": None}
        elif "trace" in self.workload_spec:
            t = self.workload_spec["trace"]
            found = resolve_path(t["path"], self.base_dir, f"{self._loc}: workload.trace.path")
            workload = {"trace": os.path.abspath(found), "format": t.get("format"),
                        "rate": t.get("rate")}
        else:
            spec = self.workload_spec["synthetic"]
            workload = {"synthetic": copy.deepcopy(spec),
                        "rate": float(synthetic.spec_mean_rate(spec))}
        if self.run_rate is not None:  # --rate replaces the workload's own
            workload.update(rate=self.run_rate, rate_given_as="--rate")
        bandwidth = copy.deepcopy(self.bandwidth_spec)
        if isinstance(bandwidth, dict) and bandwidth.get("kind") in ("trace", "trace_dir"):
            # the file or folder it found
            bandwidth["path"] = os.path.abspath(resolve_path(bandwidth["path"], self.base_dir,
                                                             f"{self._loc}: bandwidth.path"))
        dep = self.profile.deployment
        deployment: dict[str, Any] = {k: getattr(dep, k) for k in DEPLOYMENT_COUNTS}
        if self.deployment_given:
            deployment["given_as"] = "--deployment"
        return {"scenario": self.where or self.name, "workload": workload,
                "bandwidth": bandwidth, "deployment": deployment}

    def split_trace(self, split: str) -> Workload:
        """A part of the recorded trace by arrival time: ``train`` (the first ``1 -
        val_fraction - eval_fraction`` of its span), ``val`` (the next ``val_fraction``,
        for validation during training), ``eval`` (the last ``eval_fraction``, held out) or
        ``all``; each re-based to start at 0. Computed once per split and fractions, and
        shared: the caller must not modify it."""
        key = self._split_key(split)
        part = self._splits.get(key)
        if part is None:
            part = self._splits[key] = self._cut_split(split)
        return part

    def _split_key(self, split: str) -> tuple[str, float, float]:
        """What a cached split depends on besides the trace."""
        return (split, self.eval_fraction, self.val_fraction)

    def _cut_split(self, split: str) -> Workload:
        w = self._trace
        if split == "all" or not w.requests:
            part = w
        else:
            t0, span = w.requests[0].arrival_s, w.duration_s
            val_cut = t0 + (1 - self.eval_fraction - self.val_fraction) * span
            eval_cut = t0 + (1 - self.eval_fraction) * span
            lo, hi = {"train": (-math.inf, val_cut), "val": (val_cut, eval_cut),
                      "eval": (eval_cut, math.inf)}[split]
            reqs = [r for r in w.requests if lo <= r.arrival_s < hi]
            part = rebased(w, reqs, f"{split} split", name=f"{w.name}[{split}]")
        if not part.requests:
            path, where = self._trace_source()
            raise TooFewRequestsError(
                f"{self._split_desc(split, path)} has no requests (the trace has {len(w)} "
                f"request(s) arriving over {w.duration_s:g} s)", where)
        return part

    def _split_desc(self, split: str, path: str) -> str:
        """``split`` of the trace at ``path``, in words."""
        if split == "train":
            return (f"the train split (the first {1 - self.eval_fraction - self.val_fraction:.0%}"
                    f" of its time span) of trace {path}")
        if split == "val":
            return (f"the val split ({self.val_fraction:.0%} of its time span, before the eval "
                    f"split) of trace {path}")
        if split == "eval":
            return (f"the eval split (the last {self.eval_fraction:.0%} of its time span) "
                    f"of trace {path}")
        return f"trace {path}"

    def workload(self, seed: int, n: int | None = None, rate: float | None = None,
                 split: str = "all", start: int | None = None) -> Workload:
        """The workload for a run.

        Synthetic: ``n`` requests (default ``requests``) generated from ``seed`` (the eval
        split uses seed ``seed + 1_000_003``, the val split ``seed + 2_000_006``, so train, val
        and eval never share a sample path),
        at mean rate ``rate`` if given. Trace: the split, time-scaled to mean ``rate`` if
        given, ``n`` consecutive requests from index ``start`` (random from ``seed`` when
        None and ``n`` is smaller than the split; 0 for ``split='all'``). ``rate`` defaults
        to the scenario's ``--rate`` (:meth:`with_rate`), then to its own.
        """
        if split not in SPLITS:
            raise PrfaasInputError(f"unknown split {split!r}; splits: {list(SPLITS)}")
        if rate is None:
            rate = self.run_rate
        if not self.is_trace:
            spec = self.workload_spec["synthetic"]
            if rate is not None:
                spec = synthetic.with_rate(spec, rate)
            s = seed + {"eval": EVAL_SEED_OFFSET, "val": VAL_SEED_OFFSET}.get(split, 0)
            try:
                return synthetic.generate(spec, n or self.requests, s,
                                          where=f"{self._loc}: workload.synthetic")
            except PrfaasInputError as e:
                if rate is None:
                    raise
                raise PrfaasInputError(f"{e.reason} (at the mean rate of {rate:g} req/s asked "
                                       "for: --rate, or the env's load scale)", e.where) from None
        w = self.split_trace(split)
        rate_where = None if rate is not None else f"{self._loc}: workload.trace.rate"
        rate = rate if rate is not None else self._trace_rate
        if rate is not None:
            key = self._split_key(split)
            timed = self._timed_splits.get(key)
            if timed is not None and timed[0] == rate:
                w = timed[1]
            else:
                if len(w) < 2 or w.duration_s <= 0:
                    path, where = self._trace_source()
                    raise TooFewRequestsError(
                        f"cannot time-scale {self._split_desc(split, path)} to a mean rate of "
                        f"{rate:g} req/s: that needs at least two requests with distinct "
                        f"arrival times, and it has {len(w)} request(s) over "
                        f"{w.duration_s:g} s", rate_where or where)
                try:
                    w = to_mean_rate(w, rate)
                except PrfaasInputError as e:
                    raise PrfaasInputError(e.reason, rate_where or "--rate") from None
                self._timed_splits[key] = (rate, w)
        # The scenario's request count is for its own workload, not for a --trace.
        own = self.requests if split == "all" and self.trace_override is None else None
        n = n or own or len(w)
        if n >= len(w):
            return w
        if start is None:
            start = 0 if split == "all" else int(np.random.default_rng(seed).integers(0, len(w) - n + 1))
        return rebased(w, w.requests[start:start + n], f"requests {start}..{start + n - 1}")

    @property
    def _trace_rate(self) -> float | None:
        """The scenario's time-compressed mean rate of its own trace (not of ``--trace``)."""
        if self.trace_override is None and "trace" in self.workload_spec:
            return self.workload_spec["trace"].get("rate")
        return None

    def mean_rate(self, split: str = "all") -> float:
        """Requests per second of ``split`` as the scenario plays it: ``--rate``
        (:meth:`with_rate`), else the synthetic spec's mean rate, a trace's ``rate:``, or the
        split's own (never a statistic of another split)."""
        if self.run_rate is not None:
            return self.run_rate
        if not self.is_trace:
            return float(synthetic.spec_mean_rate(self.workload_spec["synthetic"]))
        return self._trace_rate or self.split_trace(split).mean_rate

    # -- bandwidth -------------------------------------------------------------------
    def bandwidth_sampler(self, split: str = "all") -> BandwidthSampler:
        """The links of ``split``, disjoint across train, val and eval as the workloads are:
        generated kinds (``markov``, ``ou``, drops) draw their traces from a seed offset per
        split as synthetic workloads do (``all`` shares train's); recorded links are split
        by the workload's fractions (train: the first ``1 - val_fraction - eval_fraction``,
        val: the next ``val_fraction``, eval: the last ``eval_fraction``; ``all``: whole):
        a folder's files when every split's share is at least one file (in an order fixed by
        a hash of the names), else each trace's span by time, like a request trace."""
        if split not in SPLITS:
            raise PrfaasInputError(f"unknown split {split!r}; splits: {list(SPLITS)}")
        cache = self._bandwidth_samplers
        if split not in cache:
            e, v = self.eval_fraction, self.val_fraction
            part = None if split == "all" else LinkPart(
                (0.0, 1.0 - e - v, 1.0 - e, 1.0), ("train", "val", "eval").index(split))
            seed = _BANDWIDTH_SEED + {"eval": EVAL_SEED_OFFSET, "val": VAL_SEED_OFFSET}.get(split, 0)
            sampler = bandwidth_sampler_from_spec(self.bandwidth_spec, seed, self.base_dir,
                                                  f"{self._loc}: bandwidth", part)
            if split in ("val", "eval"):  # reports name the link: say whose it is
                sampler = dataclasses.replace(sampler, traces=[
                    t.with_name(f"{t.name}@{split}") for t in sampler.traces])
            cache[split] = sampler
        return cache[split]

    def bandwidth(self, seed: int, split: str = "all") -> BandwidthTrace:
        """The link for a run of ``split``: a trace of :meth:`bandwidth_sampler`, its offset
        (and mean) drawn from ``seed``."""
        return self.bandwidth_sampler(split).sample(np.random.default_rng(seed + 7919))

    # -- the planner's threshold -------------------------------------------------------
    @cached_property
    def threshold_tokens(self) -> float:
        if isinstance(self.threshold_spec, (int, float)):
            return float(self.threshold_spec)
        return self.planned_threshold(self.profile)

    def planned_threshold(self, profile: Profile) -> float:
        """The planner's threshold for ``profile`` on this scenario's incremental prefill
        lengths (:func:`~prfaas_gym.planner.incremental_lengths`), as the paper defines it."""
        from prfaas_gym.planner import best_threshold
        lengths, mean_out = (self._planning_inputs if profile is self.profile
                             else self._planner_inputs(profile))
        dep = profile.deployment
        if dep.n_prfaas == 0 or dep.n_prefill == 0:
            return 19642.0
        t, _ = best_threshold(profile, lengths, None, mean_out, dep.n_prfaas, dep.n_prefill,
                              dep.n_decode)
        return float(t)

    def _planning_workload(self) -> Workload:
        """The requests the planner solves on: 4000 of the train split (of a trace)."""
        if not self.is_trace:
            return self.workload(seed=0, n=4000, split="all")
        try:
            return self.workload(seed=0, n=4000, split="train")
        except TooFewRequestsError as e:
            raise PrfaasInputError(f"{e.reason}; the planner solves for the threshold on the "
                                   "train split (or set a numeric threshold_tokens)",
                                   e.where) from None

    def _planner_inputs(self, profile: Profile) -> tuple[np.ndarray, float]:
        """The planning workload's incremental prefill lengths under ``profile``'s cache, and
        its mean output length."""
        from prfaas_gym.planner import incremental_lengths
        w = self._planning_workload()
        return (incremental_lengths(profile, w),
                float(np.mean([r.output_tokens for r in w.requests])))

    @cached_property
    def _planning_inputs(self) -> tuple[np.ndarray, float]:
        """:meth:`_planner_inputs` for this scenario's profile, computed once for both the
        threshold and Λ_max."""
        return self._planner_inputs(self.profile)

    @cached_property
    def planned_lambda(self) -> float:
        """The planner's Λ_max for this deployment (a normalisation scale for rates)."""
        from prfaas_gym.planner import throughput
        lengths, mean_out = self._planning_inputs
        dep = self.profile.deployment
        thr = self.threshold_tokens if dep.n_prfaas and dep.n_prefill else None
        out = throughput(self.profile, lengths, None, mean_out, thr, dep.n_prfaas,
                         dep.n_prefill, dep.n_decode)
        return float(out["lambda_max"])


def scenario_from_dict(d: Any, where: str = "scenario", base_dir: Path | None = None) -> Scenario:
    w = f"{where}:" if where else ""
    d = _mapping(d, _TOP_KEYS, w)
    name = str(d.get("name", where))
    for k in ("profile", "workload", "bandwidth", "policy"):
        if k not in d:
            raise PrfaasInputError(f"missing required key '{k}'", where)
    prof_ref = d["profile"]
    if not isinstance(prof_ref, str):
        raise PrfaasInputError("must be a preset name or a path", f"{w} profile")
    if prof_ref.endswith((".yaml", ".yml")):
        prof_ref = str(resolve_path(prof_ref, base_dir, f"{w} profile"))
    profile = load_profile(prof_ref)
    dep = _mapping(d.get("deployment"), _DEPLOYMENT_KEYS, f"{w} deployment")
    changes = {}
    for k in dep:
        changes[k] = _number(dep, k, f"{w} deployment", 0, integer=k != "switch_delay_s")
    link = _mapping(d.get("link"), {"capacity_gbps", "rtt_s"}, f"{w} link")
    link_d = {k: float(_number(link, k, f"{w} link", 0, lo_open=k == "capacity_gbps"))
              for k in link}
    if link_d.get("capacity_gbps", 0.0) > MAX_GBPS:
        raise PrfaasInputError(f"must be <= {MAX_GBPS:g} Gbit/s, got {link_d['capacity_gbps']:g}",
                               f"{w} link.capacity_gbps")
    slo = _mapping(d.get("slo"), {"ttft_s", "tpot_s"}, f"{w} slo")
    slo_d = {k: float(_number(slo, k, f"{w} slo", 0, lo_open=True)) for k in slo}
    section = "deployment"
    try:
        if changes:
            profile = profile.with_deployment(**changes)
        section = "link"
        if link_d:
            profile = profile.with_link(**link_d)
        section = "slo"
        if slo_d:
            profile = profile.with_slo(**slo_d)
    except PrfaasInputError as e:
        raise PrfaasInputError(e.reason, f"{w} {section}") from None
    wl = _mapping(d["workload"], _WORKLOAD_KEYS, f"{w} workload")
    if ("synthetic" in wl) == ("trace" in wl):
        raise PrfaasInputError("give exactly one of 'synthetic' or 'trace'", f"{w} workload")
    if "trace" in wl:
        tr = _mapping(wl["trace"], {"path", "format", "rate"}, f"{w} workload.trace")
        if "rate" in tr:
            _number(tr, "rate", f"{w} workload.trace", 0, lo_open=True)
        if "path" not in tr:
            raise PrfaasInputError("missing required key 'path'", f"{w} workload.trace")
        if not isinstance(tr["path"], (str, os.PathLike)) or tr["path"] == "":
            raise PrfaasInputError(f"must be a file path (a string), got {tr['path']!r}",
                                   f"{w} workload.trace.path")
        if tr.get("format") is not None and tr["format"] not in TRACE_FORMATS:
            raise PrfaasInputError(f"unknown format {tr['format']!r}; formats: {list(TRACE_FORMATS)}",
                                   f"{w} workload.trace.format")
    else:
        synthetic.generate(wl["synthetic"], 2, 0, where=f"{w} workload.synthetic")  # validates
    requests = int(_number(wl, "requests", f"{w} workload", 1, integer=True)) if "requests" in wl \
        else (None if "trace" in wl else 2000)
    if "synthetic" in wl and requests is not None and requests > synthetic.MAX_REQUESTS:
        raise PrfaasInputError(f"must be <= {synthetic.MAX_REQUESTS:,} for a synthetic workload "
                               f"(about 2 KB of memory a request), got {requests:,}",
                               f"{w} workload.requests")
    eval_fraction = float(_number(wl, "eval_fraction", f"{w} workload", 0)) if "eval_fraction" in wl else 0.2
    if not 0 < eval_fraction < 1:
        raise PrfaasInputError("must be in (0, 1)", f"{w} workload.eval_fraction")
    val_fraction = float(_number(wl, "val_fraction", f"{w} workload", 0)) \
        if "val_fraction" in wl else 0.1
    if not 0 < val_fraction < 1:
        raise PrfaasInputError(f"must be in (0, 1), got {val_fraction:g}",
                               f"{w} workload.val_fraction")
    if eval_fraction + val_fraction >= 1:
        given = "val_fraction" in wl
        raise PrfaasInputError(
            f"eval_fraction {eval_fraction:g} + val_fraction {val_fraction:g}"
            f"{'' if given else ' (its default)'} leave no train split: their sum must be < 1",
            f"{w} workload.{'val_fraction' if given else 'eval_fraction'}")
    from agents.registry import HEURISTICS
    if not isinstance(d["policy"], str) or d["policy"] not in HEURISTICS:
        raise PrfaasInputError(f"unknown policy {d['policy']!r}; heuristics: {sorted(HEURISTICS)}",
                               f"{w} policy")
    thr = d.get("threshold_tokens", "planner")
    if not (thr == "planner" or (is_finite_number(thr) and thr >= 0)):
        raise PrfaasInputError(f"must be 'planner' or a finite number >= 0, got {thr!r}",
                               f"{w} threshold_tokens")
    sim_d = _mapping(d.get("sim"), {f.name for f in dataclasses.fields(SimConfig)}, f"{w} sim")
    for k in sim_d:
        if k == "record_timeseries":
            if not isinstance(sim_d[k], bool):
                raise PrfaasInputError(f"must be true or false, got {sim_d[k]!r}",
                                       f"{w} sim.{k}")
        elif not (k == "admission_max_wait_s" and sim_d[k] is None):
            _number(sim_d, k, f"{w} sim", 0, allow_inf=k == "max_drain_s")
    try:
        sim = SimConfig(**sim_d)
    except (PrfaasInputError, TypeError) as e:
        raise PrfaasInputError(str(e), f"{w} sim") from None
    env = _mapping(d.get("env"), _ENV_KEYS, f"{w} env")
    ep = int(_number(env, "episode_requests", f"{w} env", 1, integer=True)) if "episode_requests" in env else 256
    drain = float(_number(env, "max_drain_s", f"{w} env", 0, allow_inf=True)) \
        if "max_drain_s" in env else 120.0
    rnd = check_randomize(d.get("randomize"), f"{w} randomize")
    scen = Scenario(name=name, description=str(d.get("description", "")), profile=profile,
                    workload_spec=copy.deepcopy(wl), bandwidth_spec=copy.deepcopy(d["bandwidth"]),
                    policy=d["policy"], threshold_spec=thr, sim=sim, requests=requests,
                    eval_fraction=eval_fraction, val_fraction=val_fraction,
                    episode_requests=ep, max_drain_s=drain,
                    randomize=rnd, base_dir=base_dir, where=where)
    bandwidth_sampler_from_spec(scen.bandwidth_spec, 0, base_dir, f"{w} bandwidth")  # validates
    return scen


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name or a scenario YAML by path.

    Found by :func:`prfaas_gym.config_file.read_named_config`: a bare shipped name wins over
    a folder of that name in the working directory.
    """
    text, path = read_named_config(name_or_path, "scenario", "scenario", scenario_dir(),
                                   scenario_names)
    where, base = (str(path), path.resolve().parent) if path else (str(name_or_path), None)
    return scenario_from_dict(parse_config_yaml(text, where), where, base)
