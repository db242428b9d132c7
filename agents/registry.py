"""Policies by name, as the CLI and scenarios name them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.heuristics import (
    Conductor,
    LeastLoaded,
    LocalOnly,
    PrfaasThreshold,
    RandomRouter,
    RemoteAll,
)
from agents.prfaas_dual import PrfaasDual
from prfaas_gym.contract import Policy
from prfaas_gym.errors import PrfaasInputError

HEURISTICS: dict[str, Callable[..., Policy]] = {
    "local-only": LocalOnly,
    "remote-all": RemoteAll,
    "prfaas-threshold": PrfaasThreshold,
    "prfaas-dual": PrfaasDual,
    "conductor": Conductor,
    "least-loaded": LeastLoaded,
    "random": RandomRouter,
}

#: The static threshold heuristic with its threshold grid-searched on the training split.
TUNED_THRESHOLD = "prfaas-threshold-tuned"

#: Heuristics that take the planner's threshold.
THRESHOLD_POLICIES = ("prfaas-threshold", "prfaas-dual")


def make_heuristic(name: str, threshold_tokens: float | None = None, **kwargs: Any) -> Policy:
    """Build a heuristic by name; ``threshold_tokens`` goes to the threshold policies."""
    if name not in HEURISTICS:
        raise PrfaasInputError(f"unknown policy {name!r}; heuristics: {sorted(HEURISTICS)} "
                               "(or a path to a trained checkpoint)")
    if name in THRESHOLD_POLICIES and threshold_tokens is not None:
        kwargs["threshold_tokens"] = threshold_tokens
    try:
        return HEURISTICS[name](**kwargs)
    except TypeError as e:
        raise PrfaasInputError(f"invalid options for policy {name!r}: {e}") from None


def _same_source(a: Any, b: Any) -> bool:
    """Two recorded sources (a workload's or a link's) alike, a file named two ways too."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return bool(a == b)
    for k in (a.keys() | b.keys()) - {"given_as", "format"}:  # how a file was named or read
        x, y = a.get(k), b.get(k)
        if k in ("trace", "path") and isinstance(x, str) and isinstance(y, str):
            try:
                if not os.path.samefile(x, y):
                    return False
            except OSError:
                if x != y:
                    return False
        elif x != y:
            return False
    return True


def _describe_source(src: Any) -> str:
    if not isinstance(src, dict):
        return repr(src)
    if "trace" in src:
        rate = src.get("run_rate") or src.get("rate")
        return f"{src['trace']}" + (f" at {rate:g} req/s" if rate else "")
    if "synthetic" in src:
        rate = src.get("run_rate")
        return "the scenario's synthetic workload" + (f" at {rate:g} req/s" if rate else "")
    if src.get("kind") in ("trace", "trace_dir"):
        return f"{src['path']}" + (f" (mean {src['scale_to_gbps']:g} Gbit/s)"
                                   if src.get("scale_to_gbps") is not None else "")
    return ", ".join(f"{k} {v}" for k, v in src.items())


def source_differences(trained: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What a run's requests and link (``Scenario.sources()``) take from other sources than
    the policy's training did, as sentences for a note (a policy trained with ``--trace``
    scored without it, say)."""
    out = []
    for part, what, pronoun in (("workload", "requests", "them"), ("bandwidth", "link", "it")):
        if part in trained and not _same_source(trained[part], now.get(part)):
            out.append(f"was trained with its {what} from {_describe_source(trained[part])}; "
                       f"this run takes {pronoun} from {_describe_source(now.get(part))}")
    return out


def policy_factory(spec: str, scenario: Any, rate: float | None = None) -> Callable[[], Policy]:
    """A zero-argument factory for ``spec``: a heuristic name, ``prfaas-threshold-tuned``
    (the threshold heuristic with its threshold grid-searched on the scenario's training
    split at mean arrival rate ``rate``, the one the runs use; :mod:`agents.tuning`), or a
    path to a trained checkpoint (an exported ``.onnx``, a run directory or an SB3 ``.zip``).

    Threshold heuristics get the scenario's planned threshold.
    """
    if spec in HEURISTICS:
        if Path(spec).exists():  # a run directory named like a heuristic: say which is used
            import sys

            print(f"prfaas: note: {spec!r} is a heuristic's name, and that heuristic runs; to "
                  f"load the checkpoint at that path, pass ./{spec}", file=sys.stderr)
        thr = scenario.threshold_tokens if spec in THRESHOLD_POLICIES else None
        return lambda: make_heuristic(spec, threshold_tokens=thr)
    if spec == TUNED_THRESHOLD:
        from agents.tuning import tune_threshold

        best, _ = tune_threshold(scenario, rate=rate)
        return lambda: make_heuristic("prfaas-threshold", threshold_tokens=best)
    if Path(spec).exists():
        from agents.learned import load_learned_policy

        loaded = load_learned_policy(spec, scenario)
        trained_on = loaded.router.manifest.get("scenario")
        routing = getattr(scenario, "name", None)
        if trained_on and routing and trained_on != routing:
            import sys

            print(f"prfaas: note: {spec} was trained on scenario {trained_on}, and routes "
                  f"{routing} here (with {trained_on}'s observation scales)", file=sys.stderr)
        elif isinstance(loaded.router.manifest.get("scenario_sources"), dict):
            import sys

            for part in source_differences(loaded.router.manifest["scenario_sources"],
                                           scenario.sources()):
                print(f"prfaas: note: {spec} {part}", file=sys.stderr)
        return lambda: loaded
    raise PrfaasInputError(f"unknown policy {spec!r}: not a heuristic "
                           f"{sorted([*HEURISTICS, TUNED_THRESHOLD])} and no checkpoint at that "
                           "path")
