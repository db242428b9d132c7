"""Export a trained policy to ONNX with a manifest that pins what it was trained on.

``export_onnx(run_dir, out)`` writes ``out`` (an ONNX graph: input ``obs`` float32
``[batch, N]`` -> output ``logits`` float32 ``[batch, 3]``, N the observation size of the
run's env: 32 for ``PrfaasRoute-v0``, 19 for ``PrfaasRoles-v0``) and
``<out without .onnx>.manifest.json``; a role policy's manifest also records its
``router`` and ``interval_s``. For PPO / A2C / MaskablePPO the logits are the
action distribution's unnormalised logits ``action_net(mlp_extractor.forward_actor(
features_extractor(obs)))``; for DQN they are the Q-values. Either way the deterministic
action is the argmax after setting infeasible actions to ``-inf``
(:func:`prfaas_gym.actions.action_masks`, :func:`prfaas_gym.role_actions.role_masks`);
:class:`agents.learned.OnnxRouter` runs the file
with onnxruntime alone.

Loading the SB3 zip unpickles it: export only run directories you trust.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import shutil
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.run_dir import (
    ALGO_METADATA_KEY,
    MANIFEST_FORMAT,
    MODEL_FILES,
    check_compatible,
    library_versions,
    manifest_path_for,
    observation_record,
    read_json_record,
    read_run_json,
    scales_from_record,
    sha256_file,
)
from prfaas_gym.errors import PrfaasInputError, require_file
from prfaas_gym.featurizer import N_FEATURES
from prfaas_gym.metrics import json_safe

OPSET = 17
MASKS_NOTE = "applied by the caller: logits of infeasible actions set to -inf before argmax"

# Replaced instead of unpickled on load: inference never uses them, and pickled closures
# (schedules) often fail to load under another Python / library version.
_CUSTOM_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0,
                   "clip_range": lambda _: 0.0, "clip_range_vf": None,
                   "exploration_schedule": lambda _: 0.0}


def algo_class(algo: str) -> type:
    """The stable-baselines3 / sb3-contrib class for a run.json ``algo``."""
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    import stable_baselines3 as sb3

    classes = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}
    if algo not in classes:
        raise PrfaasInputError(f"unknown algo {algo!r}; expected one of "
                               f"{['maskable_ppo', *classes]}")
    return classes[algo]


#: SB3 policy classes and the algorithms that train them.
_POLICY_ALGOS = {"MaskableActorCriticPolicy": ("maskable_ppo",),
                 "ActorCriticPolicy": ("ppo", "a2c"), "DQNPolicy": ("dqn",)}


def _zip_policy_class(zip_path: Path) -> str | None:
    """The policy class an SB3 zip records in its JSON ``data`` (read as text, never
    unpickled), or None if the file does not say."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            init = json.loads(z.read("data"))["policy_class"]["__init__"]
    except Exception:
        return None
    m = re.match(r"<function (\w+)\.__init__", str(init))
    return m.group(1) if m else None


def load_sb3(zip_path: str | Path, algo: str, n_features: int = N_FEATURES) -> Any:
    """Load an SB3 model on the CPU. **Trusted input only: SB3 zips unpickle.**

    Raises :class:`PrfaasInputError` naming the file if it is missing, not a loadable SB3
    zip of ``algo``, or its spaces are not its env's (Box(n_features,), Discrete(3)):
    ``n_features`` is the run's env's observation size (default ``PrfaasRoute-v0``'s)."""
    zip_path = require_file(zip_path, "model file")
    cls = algo_class(algo)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.load(zip_path, device="cpu", custom_objects=_CUSTOM_OBJECTS)
    except Exception as e:
        held = _zip_policy_class(zip_path)
        if held in _POLICY_ALGOS and algo not in _POLICY_ALGOS[held]:
            raise PrfaasInputError(
                f"this file holds a {held} ({' or '.join(_POLICY_ALGOS[held])}), not a "
                f"{cls.__name__} model: the run's run.json (or the caller) names algo "
                f"{algo!r}", zip_path) from None
        raise PrfaasInputError(f"cannot load a {cls.__name__} model from this file "
                               f"(corrupt, truncated or not an SB3 zip?): "
                               f"{type(e).__name__}: {e}", zip_path) from None
    obs_shape = getattr(model.observation_space, "shape", None)
    n_act = getattr(model.action_space, "n", None)
    if obs_shape != (n_features,) or n_act != 3:
        raise PrfaasInputError(f"model spaces are obs {obs_shape}, actions {n_act}; expected "
                               f"obs ({n_features},), actions 3", zip_path)
    model.policy.set_training_mode(False)
    return model


class LogitsModule(nn.Module):
    """obs float32 ``[batch, N]`` -> logits ``[batch, 3]`` of an SB3 policy (see module
    docstring). Shares the policy's weights; eval mode only."""

    def __init__(self, model: Any, algo: str) -> None:
        super().__init__()
        policy = model.policy
        self.is_q = algo == "dqn"
        if self.is_q:
            self.features = policy.q_net.features_extractor
            self.head = policy.q_net.q_net
        else:
            self.features = policy.pi_features_extractor
            self.mlp = policy.mlp_extractor
            self.head = policy.action_net
        self.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        feats = self.features(obs)
        if self.is_q:
            return self.head(feats)
        return self.head(self.mlp.forward_actor(feats))


def sb3_logits(model: Any, algo: str, obs: np.ndarray) -> np.ndarray:
    """SB3's own logits for ``obs`` ``[batch, N]``: the action distribution's logits
    (log-probabilities, i.e. normalised) for policy-gradient algos, the Q-values for DQN."""
    with torch.no_grad():
        t, _ = model.policy.obs_to_tensor(np.asarray(obs, dtype=np.float32))
        if algo == "dqn":
            return model.policy.q_net(t).cpu().numpy()
        return model.policy.get_distribution(t).distribution.logits.cpu().numpy()


def _torch_export(module: nn.Module, n_features: int = N_FEATURES) -> tuple[bytes, str]:
    """Export with the TorchScript-based exporter (``dynamo=False``): the dynamo exporter
    needs onnxscript, which this project does not depend on. Returns the serialised graph and
    the exporter name."""
    dummy = torch.zeros(1, n_features, dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (dummy,), buf, dynamo=False, input_names=["obs"],
                          output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue(), "torch.onnx.export(dynamo=False)"


def _check_out(out_path: Path) -> None:
    """Refuse an ``--out`` that is not a ``.onnx`` file name (so it cannot overwrite a
    checkpoint or run.json), whose directory is a file, or where the ONNX file or its
    manifest is a directory."""
    if out_path.suffix != ".onnx":
        raise PrfaasInputError("--out must name a .onnx file", out_path)
    try:
        parent = out_path.parent
        if parent.exists() and not parent.is_dir():
            raise PrfaasInputError(f"cannot create the file: {parent} is not a directory",
                                   out_path)
        for p in (out_path, manifest_path_for(out_path)):
            if p.is_dir():
                raise PrfaasInputError(f"cannot write {p.name}: it is a directory", out_path)
    except OSError as e:
        raise PrfaasInputError(f"cannot write the exported policy: {e.strerror or e}",
                               out_path) from None


# run.json keys that say how a model was trained, as they are (a run too old to record one
# leaves it out)
_TRAINING_KEYS = ("timesteps", "n_envs", "episode_requests", "hyperparams", "train_split",
                  "validation_split", "validation_seeds", "eval_freq", "eval_episodes",
                  "randomize", "best_heuristic", "select")


def training_record(record: dict[str, Any], run_dir: Path, model: str) -> dict[str, Any]:
    """How the exported model was trained and picked, from ``record`` (its run.json): the
    step budget, vectorised envs, episode length, hyperparameters, splits, the validation
    episodes' seeds and how often they ran (``eval_freq``, ``eval_episodes``), the domain
    randomisation of the training episodes (``randomize``, empty when there was none), the
    rule that picked ``best_model.zip`` (``select``; absent in runs that predate it, which
    kept the highest mean), the best heuristic on validation (its goodput there is the
    baseline the checkpoints were measured against), the warm start's ``teacher``,
    episodes and epochs (None when there was none), and ``validation``: the exported model's row of the validation history
    (``best_validation`` for ``best_model.zip``; for ``final_model.zip`` the final row of
    ``eval.json``, None where the run has none), without its ``wall_s``."""
    out: dict[str, Any] = {k: record[k] for k in _TRAINING_KEYS if k in record}
    if "warm_start" in record:
        warm = record["warm_start"]
        out["warm_start"] = ({k: warm[k] for k in ("teacher", "episodes", "epochs") if k in warm}
                             if isinstance(warm, dict) else warm)
    row = record.get("best_validation") if model == "best" else _final_validation(run_dir)
    # wall_s is this machine's timing, not how the model was made
    out["validation"] = ({k: v for k, v in row.items() if k != "wall_s"}
                         if isinstance(row, dict) else row)
    return out


def _final_validation(run_dir: Path) -> dict[str, Any] | None:
    """The row of ``run_dir/eval.json``'s history marked ``final``, or None (also when
    eval.json is missing or unreadable)."""
    try:
        history = read_json_record(run_dir / "eval.json", "eval.json").get("history")
    except PrfaasInputError:
        return None
    finals = [r for r in history if isinstance(r, dict) and r.get("final")] \
        if isinstance(history, list) else []
    return finals[-1] if finals else None


def export_onnx(run_dir: str | Path, out_path: str | Path,
                model: str = "best") -> tuple[Path, Path]:
    """Export ``run_dir``'s ``best_model.zip`` (``model="best"``) or ``final_model.zip``
    to ``out_path`` (a ``.onnx`` file name) and write its manifest beside it; returns
    ``(onnx_path, manifest_path)``.

    Refuses (:class:`PrfaasInputError`) a run whose run.json is missing or incompatible with
    this code, or whose zip does not load, and an ``out_path`` that is not a ``.onnx`` name,
    is a directory, or cannot be written. The graph (which records ``algo`` in its metadata
    under ``prfaas.algo``) passes ``onnx.checker.check_model``; the manifest records its
    sha256. Both files are written to temporary files in the same directory and moved into
    place only once both are complete, so a failure while writing leaves an existing pair
    as it was; should the second move itself fail, the new ONNX sits beside the old
    manifest, whose sha256 no longer matches, and the loader refuses the pair.
    **Trusted input only: the SB3 zip is unpickled.**
    """
    import onnx

    run_dir = Path(run_dir)
    out_path = Path(out_path)
    if model not in MODEL_FILES:
        raise PrfaasInputError(f"--model must be one of {sorted(MODEL_FILES)}, got {model!r}")
    _check_out(out_path)
    if run_dir.is_file():
        which = {v: k for k, v in MODEL_FILES.items()}.get(run_dir.name)
        hint = (f": prfaas export {run_dir.parent} --model {which} --out FILE.onnx"
                if which and (run_dir.parent / "run.json").is_file() else "")
        raise PrfaasInputError("is a file; export takes the training run directory (the "
                               f"folder with run.json){hint}", run_dir)
    record = read_run_json(run_dir)
    check_compatible(record, run_dir / "run.json")
    scales = scales_from_record(record, run_dir / "run.json")
    algo = record["algo"]
    zip_path = run_dir / MODEL_FILES[model]
    from prfaas_gym.interfaces import interface

    iface = interface(record["env_id"])
    sb3_model = load_sb3(zip_path, algo, iface.n_features)
    data, exporter = _torch_export(LogitsModule(sb3_model, algo), iface.n_features)
    proto = onnx.load_from_string(data)
    onnx.helper.set_model_props(proto, {ALGO_METADATA_KEY: algo})
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    manifest = {
        "format": MANIFEST_FORMAT,
        "env_id": iface.env_id,
        "env_version": iface.env_version,
        "observation": observation_record(scales, iface.env_id),
        "actions": list(iface.actions),
        "masks": MASKS_NOTE,
        "deterministic": True,
        "decision": "argmax of the masked logits",
        "logits": "Q-values" if algo == "dqn" else "unnormalised action-distribution logits",
        "input": {"name": "obs", "dtype": "float32", "shape": ["batch", iface.n_features]},
        "output": {"name": "logits", "dtype": "float32",
                   "shape": ["batch", len(iface.actions)]},
        "algo": algo,
        "scenario": record.get("scenario"),
        # where the training requests and link came from (a --trace given to train, say)
        "scenario_sources": record.get("scenario_sources"),
        "seed": record.get("seed"),
        "commit": record.get("commit"),
        "commit_dirty": record.get("commit_dirty"),
        "model": MODEL_FILES[model],
        "versions": record.get("versions"),
        "export_versions": {**library_versions(), "exporter": exporter, "opset": OPSET},
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "onnx_file": out_path.name,
        "training": training_record(record, run_dir, model),
        # a role policy's router and decision interval (PrfaasRoles-v0 only)
        **{k: record[k] for k in ("router", "interval_s", "router_threshold_tokens")
           if k in record},
    }
    manifest_path = manifest_path_for(out_path)
    tag = uuid.uuid4().hex[:8]
    tmp_onnx = out_path.with_name(f".{out_path.name}.{tag}.tmp")
    tmp_manifest = manifest_path.with_name(f".{manifest_path.name}.{tag}.tmp")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrfaasInputError(f"cannot create the directory {out_path.parent}: "
                               f"{e.strerror or e}", out_path) from None
    for existing in (out_path, manifest_path):
        if existing.exists() and not os.access(existing, os.W_OK):
            raise PrfaasInputError("is read-only: not replaced", existing)
    try:
        tmp_onnx.write_bytes(data)
        manifest["onnx_sha256"] = sha256_file(tmp_onnx)
        # strict JSON: a NaN copied from a hand-edited run record is written as null
        tmp_manifest.write_text(json.dumps(json_safe(manifest), indent=2, allow_nan=False)
                                + "\n")
        for tmp, existing in ((tmp_onnx, out_path), (tmp_manifest, manifest_path)):
            if existing.exists():  # a re-export keeps the files' permissions
                shutil.copymode(existing, tmp)
        # Both files are complete and checked. A rename within one directory needs no
        # space and is atomic; should the second one fail anyway, the pair's sha256 no
        # longer matches and OnnxRouter refuses the pair instead of mixing them.
        os.replace(tmp_onnx, out_path)
        os.replace(tmp_manifest, manifest_path)
    except OSError as e:
        raise PrfaasInputError(f"cannot write the exported policy: {e.strerror or e}",
                               out_path) from None
    finally:
        for tmp in (tmp_onnx, tmp_manifest):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return out_path, manifest_path


def cmd_export(args: argparse.Namespace) -> int:
    onnx_path, manifest_path = export_onnx(args.run_dir, args.out, args.model)
    print(onnx_path)
    print(manifest_path)
    return 0


def add_export_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``prfaas export RUN_DIR --out FILE [--model best|final]`` on an argparse
    subparsers object; the command prints the ONNX path and the manifest path."""
    p = subparsers.add_parser("export", help="export a trained policy to ONNX + manifest",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run directory (with run.json)")
    p.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument("--model", choices=sorted(MODEL_FILES), default="best",
                   help="which checkpoint to export (default: best)")
    p.set_defaults(func=cmd_export)
    return p
