"""Policies by name, as the CLI and scenarios name them."""

from __future__ import annotations

import math
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
from prfaas_gym.data_paths import same_file
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.profile import is_finite_number

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


def _same_file(a: Any, b: Any) -> bool:
    """Two recorded paths naming one file (or, where either is missing, spelled alike)."""
    return same_file(a, b) or bool(a == b)


def _rate_text(rate: Any) -> str:
    if rate is None:
        return "at its own arrival times"
    return f"at {rate:g} req/s" if is_finite_number(rate) else f"at rate {rate!r}"


def _same_rate(a: Any, b: Any) -> bool:
    if is_finite_number(a) and is_finite_number(b):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def _workload_text(w: dict[str, Any]) -> str:
    what = (str(w["trace"]) if "trace" in w else
            "the scenario's synthetic workload" if "synthetic" in w else repr(w))
    return f"{what} {_rate_text(w.get('rate'))}"


def _with_rate(w: Any) -> Any:
    """A recorded workload with its effective ``rate``, as :meth:`Scenario.sources` records
    it now; records of this release's first commits kept ``--rate`` as ``run_rate`` and no
    synthetic mean."""
    if not isinstance(w, dict):
        return w
    w = dict(w)
    if "run_rate" in w:
        w["rate"] = w.pop("run_rate")
    elif "rate" not in w and isinstance(w.get("synthetic"), dict):
        from prfaas_gym.synthetic import spec_mean_rate

        try:
            w["rate"] = float(spec_mean_rate(w["synthetic"]))
        except (PrfaasInputError, TypeError, ValueError, KeyError):
            pass
    return w


def _workload_difference(trained: Any, now: Any) -> str | None:
    """How the requests a policy is scored on differ from its training's (None: alike)."""
    if not (isinstance(trained, dict) and isinstance(now, dict)):
        return None if trained == now else f"from {trained!r}; this run takes them from {now!r}"
    trained = _with_rate(trained)
    same_source = (_same_file(trained["trace"], now["trace"])
                   if "trace" in trained and "trace" in now else
                   "synthetic" in trained and trained.get("synthetic") == now.get("synthetic"))
    if same_source and _same_rate(trained.get("rate"), now.get("rate")):
        return None
    if same_source:
        return (f"{_rate_text(trained.get('rate'))}; this run plays them "
                f"{_rate_text(now.get('rate'))}")
    return f"from {_workload_text(trained)}; this run takes them from {_workload_text(now)}"


def _link_spec(b: Any) -> Any:
    return {"kind": "constant", "gbps": b} if is_finite_number(b) else b


def _link_text(b: Any) -> str:
    if not isinstance(b, dict):
        return repr(b)
    kind = b.get("kind")
    if kind == "constant" and is_finite_number(b.get("gbps")) and len(b) == 2:
        return f"a constant {b['gbps']:g} Gbit/s"
    scale = b.get("scale_to_gbps")
    return (f"a {kind} link" + (f" from {b['path']}" if "path" in b else "")
            + (f" at mean {scale:g} Gbit/s" if is_finite_number(scale) else ""))


def _same_link(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return bool(a == b)
    for k in (a.keys() | b.keys()) - {"format"}:  # how a file was read, not which
        if k == "path":
            if not _same_file(a.get(k), b.get(k)):
                return False
        elif a.get(k) != b.get(k):
            return False
    return True


def source_differences(trained: Any, now: dict[str, Any]) -> list[str]:
    """What a run's requests and link (``Scenario.sources()``, ``now``) take from other
    sources, or at another rate, than the policy's training did (``trained``, the
    ``scenario_sources`` of its run.json or manifest), as sentences for a note. Paths that
    name one file are alike; a record this code cannot read is said to be so."""
    if not isinstance(trained, dict):
        return [f"records no readable scenario_sources ({trained!r}), so what it was trained "
                "on is not compared with this run"]
    out = []
    if "workload" in trained:
        diff = _workload_difference(trained["workload"], now.get("workload"))
        if diff:
            out.append(f"was trained with its requests {diff}")
    if "bandwidth" in trained:
        a, b = _link_spec(trained["bandwidth"]), _link_spec(now.get("bandwidth"))
        if not _same_link(a, b):
            out.append(f"was trained on {_link_text(a)}; this run uses {_link_text(b)}")
    if isinstance(trained.get("deployment"), dict):  # recorded since --deployment came
        a, b = _counts_text(trained["deployment"]), _counts_text(now.get("deployment"))
        if a != b:
            out.append(f"was trained on a deployment of {a}; this run deploys {b}")
    return out


def _counts_text(d: Any) -> str:
    """A deployment's instance counts (``Scenario.sources()["deployment"]``) in words."""
    if not isinstance(d, dict):
        return repr(d)
    return (f"{d.get('n_prfaas')} PrfaaS + {d.get('n_prefill')} prefill / "
            f"{d.get('n_decode')} decode nodes")


def is_heuristic(spec: str) -> bool:
    """Whether ``spec`` names a heuristic (``prfaas-threshold-tuned`` included) rather than
    a checkpoint path, as :func:`policy_factory` reads it."""
    return spec in HEURISTICS or spec == TUNED_THRESHOLD


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
        elif loaded.router.manifest.get("scenario_sources") is not None:  # older: no record
            import sys

            for part in source_differences(loaded.router.manifest["scenario_sources"],
                                           scenario.sources()):
                print(f"prfaas: note: {spec} {part}", file=sys.stderr)
        return lambda: loaded
    raise PrfaasInputError(f"unknown policy {spec!r}: not a heuristic "
                           f"{sorted([*HEURISTICS, TUNED_THRESHOLD])} and no checkpoint at that "
                           "path")
