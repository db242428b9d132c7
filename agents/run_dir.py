"""The training run directory's ``run.json`` and the compatibility checks shared by a run
directory and an exported ONNX manifest.

A run directory holds ``run.json`` (what the model was trained on: env id and version, the
featurizer's spec, hash and normalisation constants, the action meanings, library versions,
git commit, hyper-parameters) beside ``best_model.zip`` / ``final_model.zip``. Loading a
checkpoint whose record disagrees with the running code is refused by
:func:`check_compatible` with a :class:`PrfaasInputError` that names the field, the expected
and the found value.

This module imports neither torch nor stable-baselines3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from prfaas_gym.errors import PrfaasInputError, require_file
from prfaas_gym.profile import is_finite_number

RUN_JSON = "run.json"
MODEL_FILES = {"best": "best_model.zip", "final": "final_model.zip"}
ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")
#: The manifest format :func:`agents.export.export_onnx` writes and this code reads.
MANIFEST_FORMAT = 1
#: ONNX metadata key under which the exporter records the algorithm the graph came from.
ALGO_METADATA_KEY = "prfaas.algo"
_DISTRIBUTIONS = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "numpy",
                  "onnxruntime", "onnx")


def library_versions() -> dict[str, str | None]:
    """Versions of python, the learning libraries and prfaas_gym (None if not installed).

    Read from package metadata, so nothing heavy is imported."""
    import prfaas_gym

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["prfaas_gym"] = prfaas_gym.__version__
    return out


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout this code runs from, or None (no git, not a
    checkout, or git fails)."""
    root = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                           text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = r.stdout.strip()
    return sha if r.returncode == 0 and len(sha) >= 7 else None


def git_dirty() -> bool | None:
    """Whether the checkout this code runs from has uncommitted changes to tracked files
    (then ``git_commit`` alone does not reproduce a run); None when git cannot tell."""
    root = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(r.stdout.strip()) if r.returncode == 0 else None


def _base_env(env: Any) -> Any:
    """The prfaas env (:class:`~prfaas_gym.env.PrfaasRouteEnv` or a subclass) under gym
    wrappers or a VecEnv."""
    if hasattr(env, "get_attr") and not hasattr(env, "scales"):
        env = env.get_attr("unwrapped", [0])[0]
    env = getattr(env, "unwrapped", env)
    if not hasattr(env, "scales"):
        raise TypeError(f"expected a PrfaasRouteEnv (or a wrapper of one), got {type(env)!r}")
    return env


def observation_record(scales: Any, env_id: str | None = None) -> dict[str, Any]:
    """The observation spec of ``env_id``'s featurizer (default ``PrfaasRoute-v0``), its
    hash and the normalisation constants ``scales`` (a
    :class:`~prfaas_gym.featurizer.FeatureScales`)."""
    from prfaas_gym.env import ENV_ID
    from prfaas_gym.interfaces import interface

    iface = interface(env_id or ENV_ID)
    return {**iface.spec(), "hash": iface.spec_hash(), "scales": dataclasses.asdict(scales)}


def write_run_json(run_dir: str | Path, env: Any, algo: str, **extra: Any) -> Path:
    """Write ``run_dir/run.json`` for a model trained on ``env`` with ``algo``.

    Fills ``env_id``, ``env_version``, ``algo``, ``scenario`` (the env's scenario name),
    ``observation`` (spec + hash + ``env.scales``), ``actions``, ``deterministic`` (True),
    ``versions``, ``commit`` and ``commit_dirty`` (:func:`git_dirty`); ``extra`` keys
    (``seed``, ``hyperparams``, ...) are added and override those defaults. ``env`` may be
    wrapped (gym wrappers or a VecEnv).
    Returns the path written. Values must be JSON-serialisable.
    """
    from prfaas_gym.interfaces import interface

    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {ALGOS}")
    base = _base_env(env)
    scenario = getattr(base, "scenario", None)
    iface = interface(base.env_id)
    record: dict[str, Any] = {
        "env_id": iface.env_id,
        "env_version": iface.env_version,
        "algo": algo,
        "scenario": getattr(scenario, "name", None),
        "observation": observation_record(base.scales, iface.env_id),
        "actions": list(iface.actions),
        "deterministic": True,
        "versions": library_versions(),
        "commit": extra.pop("commit") if "commit" in extra else git_commit(),
        "commit_dirty": extra.pop("commit_dirty") if "commit_dirty" in extra else git_dirty(),
    }
    record.update(extra)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_JSON
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def read_json_record(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`PrfaasInputError` naming the file if it is
    missing, unreadable, not valid JSON or not an object. ``what`` names the file's role."""
    path = require_file(path, what)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise PrfaasInputError(f"cannot read {what}: {e}", path) from None
    except json.JSONDecodeError as e:
        raise PrfaasInputError(f"{what} is not valid JSON (line {e.lineno}, column {e.colno}: "
                               f"{e.msg})", path) from None
    except RecursionError:
        raise PrfaasInputError(f"{what} is not valid JSON (nested too deeply)", path) from None
    except ValueError as e:  # an integer past Python's int-parsing digit limit
        raise PrfaasInputError(f"{what} cannot be read as JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise PrfaasInputError(f"{what} must hold a JSON object, found {type(data).__name__}",
                               path)
    return data


def run_json_path(run_dir: str | Path) -> Path:
    """``run_dir/run.json``, or ``run_dir`` itself where it is a ``.json`` path."""
    p = Path(run_dir)
    return p if p.suffix == ".json" else p / RUN_JSON


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/run.json`` as a dict (``run_dir`` may also be the run.json path itself:
    :func:`run_json_path`).

    Raises :class:`PrfaasInputError` if it is missing, not valid JSON or has no known
    ``algo``. Compatibility with the running code is checked by :func:`check_compatible`."""
    path = run_json_path(run_dir)
    rec = read_json_record(path, "run.json")
    algo = rec.get("algo")
    if algo not in ALGOS:
        raise PrfaasInputError(f"key 'algo': expected one of {list(ALGOS)}, found {algo!r}",
                               path)
    return rec


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path_for(onnx_path: str | Path) -> Path:
    """The manifest beside an ONNX file: ``policy.onnx`` -> ``policy.manifest.json``."""
    p = Path(onnx_path)
    stem = p.name[:-5] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".manifest.json")


def check_compatible(record: dict[str, Any], where: str | Path) -> None:
    """Refuse a run.json / manifest ``record`` made for an env this code does not have, or
    for another env version, observation spec or action meaning than the running code's
    for its env (:mod:`prfaas_gym.interfaces`).

    Raises :class:`PrfaasInputError` at ``where`` listing every differing field as
    ``field: expected X (this code), found Y``."""
    from prfaas_gym.interfaces import env_ids, interface

    env_id, known = record.get("env_id"), env_ids()
    if env_id not in known:
        raise PrfaasInputError("checkpoint is incompatible with this version of prfaas-gym: "
                               f"env_id: expected one of {known} (this code), found "
                               f"{env_id!r}", where)
    iface = interface(env_id)
    obs = record.get("observation")
    found_hash = obs.get("hash") if isinstance(obs, dict) else None
    checks = [("env_version", iface.env_version, record.get("env_version")),
              ("observation.hash", iface.spec_hash(), found_hash),
              ("actions", list(iface.actions), record.get("actions"))]
    # type-strict: JSON's true is not the version 1 it compares equal to in Python
    diffs = [f"{name}: expected {exp!r} (this code), found {got!r}"
             for name, exp, got in checks if type(got) is not type(exp) or got != exp]
    if diffs:
        if found_hash != iface.spec_hash() and isinstance(obs, dict):
            # the hash says only that the spec differs; the written spec says where
            edits = _spec_edits(iface.spec(), obs)
            diffs.append("the recorded observation spec differs in " + "; ".join(edits)
                         if edits else "the recorded observation spec is this code's (was "
                         "only its hash edited?)")
        raise PrfaasInputError("checkpoint is incompatible with this version of prfaas-gym: "
                               + "; ".join(diffs), where)
    edited = _spec_edits(iface.spec(), obs) if isinstance(obs, dict) else []  # hash matched
    if edited:
        raise PrfaasInputError("the observation spec beside the matching hash was changed "
                               "after it was written (the policy runs on this code's spec, so "
                               "the record no longer describes it): " + "; ".join(edited), where)


def _spec_edits(own: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Where ``recorded`` (a record's ``observation``) differs from this code's spec ``own``
    in version, clip or features (the first differing feature, or, where the counts differ,
    the feature names each side alone has)."""
    edits = [f"observation.{k}: expected {own[k]!r}, found {recorded.get(k)!r}"
             for k in ("version", "clip")
             if type(recorded.get(k)) is not type(own[k]) or recorded.get(k) != own[k]]
    feats = recorded.get("features")
    if feats != own["features"]:
        if not isinstance(feats, list) or len(feats) != len(own["features"]):
            n = len(feats) if isinstance(feats, list) else feats
            edits.append(f"observation.features: expected {len(own['features'])} features, "
                         f"found {n!r}")
            if isinstance(feats, list):
                mine = [f["name"] for f in own["features"]]
                theirs = [f.get("name") if isinstance(f, dict) else f for f in feats]
                edits.append(f"features only in this code: {[n for n in mine if n not in theirs]}"
                             f", only in the record: {[n for n in theirs if n not in mine]}")
        else:
            i = next(i for i, (a, b) in enumerate(zip(own["features"], feats)) if a != b)
            edits.append(f"observation.features[{i}]: expected {own['features'][i]!r}, "
                         f"found {feats[i]!r}")
    return edits


def check_manifest(manifest: dict[str, Any], where: str | Path) -> str:
    """Refuse an ONNX manifest of another ``format`` than :data:`MANIFEST_FORMAT`, without a
    known ``algo``, or whose ``deterministic`` is not true (this code decides by argmax);
    returns the algo. :class:`PrfaasInputError` at ``where``."""
    fmt = manifest.get("format")
    if type(fmt) is not int or fmt != MANIFEST_FORMAT:
        raise PrfaasInputError(f"key 'format': this code reads manifest format "
                               f"{MANIFEST_FORMAT}, found {fmt!r} (re-export the policy with "
                               "`prfaas export`)", where)
    algo = manifest.get("algo")
    if algo not in ALGOS:
        raise PrfaasInputError(f"key 'algo': expected one of {list(ALGOS)}, found {algo!r}",
                               where)
    deterministic = manifest.get("deterministic")
    if deterministic is not True:  # a sampled policy would run here as its argmax, unsaid
        raise PrfaasInputError("key 'deterministic': this loader decides by the argmax of the "
                               f"masked logits, so it expects true, found {deterministic!r}",
                               where)
    return algo


def scales_from_record(record: dict[str, Any], where: str | Path) -> Any:
    """The :class:`~prfaas_gym.featurizer.FeatureScales` recorded in ``observation.scales``;
    :class:`PrfaasInputError` at ``where`` if missing, with other fields than this code's, or
    with a value that is not a finite positive number (a bool or a string is not a number:
    each scale divides a feature, so 0, NaN or a negative value would corrupt every
    observation)."""
    from prfaas_gym.featurizer import FeatureScales

    obs = record.get("observation")
    scales = obs.get("scales") if isinstance(obs, dict) else None
    if scales is None:
        raise PrfaasInputError("key 'observation.scales' is missing (the normalisation "
                               "constants)", where)
    if not isinstance(scales, dict):
        raise PrfaasInputError("key 'observation.scales': expected a mapping of the "
                               f"normalisation constants, found {type(scales).__name__}", where)
    fields = {f.name for f in dataclasses.fields(FeatureScales)}
    if set(scales) != fields:
        raise PrfaasInputError(f"key 'observation.scales': expected fields {sorted(fields)}, "
                               f"found {sorted(scales)}", where)
    for k, v in scales.items():
        if not (is_finite_number(v) and v > 0):
            raise PrfaasInputError(f"key 'observation.scales.{k}': expected a finite number "
                                   f"> 0, found {v!r}", where)
    return FeatureScales(**{k: float(v) for k, v in scales.items()})


def plot_validation(history: list[dict[str, Any]], path: Path, best_heuristic: str,
                    title: str) -> None:
    """``validation.png``: each validation's goodput over the best heuristic's (``history``,
    the rows of ``eval.json``) against training steps, the final model's crossed and the
    kept one (``best_model.zip``) circled, written whole (:func:`agents.compare.save_png`).
    Undefined ratios are gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.compare import save_png

    def point(r: dict[str, Any]) -> tuple[float, float]:
        ratio = r["ratio_to_best_heuristic"]
        return r["timesteps"] / 1000, float("nan") if ratio is None else float(ratio)

    fig, ax = plt.subplots(figsize=(7, 4))
    periodic = [point(r) for r in history if not r.get("final")]
    if periodic:
        ax.plot(*zip(*periodic), marker=".", label="validation during training")
    for r in history:  # validated after the last update (absent from an interrupted run)
        if r.get("final"):
            ax.plot(*point(r), "x", color="C2", ms=8, label="final_model.zip")
    best = [r for r in history if r.get("best")]
    if best:  # the last row marked best is the model kept
        ax.plot(*point(best[-1]), "o", ms=11, mfc="none", color="C3", label="best_model.zip")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label=best_heuristic)
    ax.set_xlabel("training steps (thousands)")
    ax.set_ylabel(f"validation goodput / {best_heuristic}'s")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)

