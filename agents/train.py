"""Train a routing policy on ``PrfaasRoute-v0`` (or a role policy on ``PrfaasRoles-v0``)
with stable-baselines3 / sb3-contrib.

One run directory per training run::

    RUN_DIR/run.json          env id/version, observation spec + hash + scales, actions,
                              algorithm, hyperparameters, scenario and its sources, seed,
                              splits, validation settings, versions, commit (and whether
                              the tree was dirty), timings, the best validation result
    RUN_DIR/config.yaml       the exact hyperparameters used
    RUN_DIR/best_model.zip    the checkpoint validation picked (``select``: by default
                              the starting point, replaced only by a checkpoint that
                              beats it significantly; see :func:`significantly_better`)
    RUN_DIR/final_model.zip   the last checkpoint
    RUN_DIR/checkpoint_N.zip  with ``keep_checkpoints``: every validated model, by step
                              (the last validation's is ``final_model.zip``)
    RUN_DIR/eval.json         the validation history (policy vs the best heuristic)
    RUN_DIR/validation.png    that history against training steps, the best circled
    RUN_DIR/tb/               TensorBoard logs, with serving metrics under ``serving/``

Training episodes come from the ``train`` split (the first 70% of a trace, or synthetic
seeds), with the scenario's domain randomisation; validation episodes, which pick the
checkpoint (``select``) and the warm start's teacher, from the ``val`` split (the next
10% by default, or offset synthetic seeds; the split's own links) with seeds from
:data:`agents.evaluation.EVAL_SEED_BASE`. The
``eval`` split stays unseen until a held-out report. A ``curriculum:`` section in the
hyperparameters starts the training episodes' randomisation ranges elsewhere and widens
them to the scenario's (:func:`curriculum_ranges`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.compare import ci95
from agents.evaluation import (
    EVAL_SEED_BASE,
    best_heuristic,
    hold,
    mean_goodput,
    model_chooser,
    role_model_chooser,
    run_episodes,
    run_role_episodes,
)
from prfaas_gym.cli import write_atomically
from prfaas_gym.config_file import parse_config_yaml, read_config_text, yaml_string_hint
from prfaas_gym.env import ENV_ID, ROUTE_REWARDS, PrfaasRouteEnv
from prfaas_gym.errors import PrfaasInputError
from prfaas_gym.metrics import json_safe
from prfaas_gym.profile import is_finite_number
from prfaas_gym.roles_env import DEFAULT_INTERVAL_S, ROLE_REWARDS, ROLES_ENV_ID, PrfaasRolesEnv
from prfaas_gym.scenario import Scenario, check_randomize, load_scenario

ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")
ENV_IDS = (ENV_ID, ROLES_ENV_ID)
DEVICES = ("cpu", "cuda", "auto")
VEC_KINDS = ("auto", "subproc", "dummy")  #: auto: subprocesses when n_envs > 1
#: how best_model.zip is picked from the validated checkpoints (the first is the default)
SELECT_RULES = ("significant", "max")
ROUTER = "conductor"  #: the heuristic that routes requests while a role policy trains
MAX_SEED = 2**31  # seeds up to seed + n_envs and seed + 10,000 + episodes stay below numpy's 2**32
_ALLOWED_KWARGS = {
    "maskable_ppo": {"n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda",
                     "ent_coef", "clip_range", "vf_coef", "max_grad_norm", "target_kl"},
    "ppo": {"n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda",
            "ent_coef", "clip_range", "vf_coef", "max_grad_norm", "target_kl"},
    "a2c": {"n_steps", "learning_rate", "gamma", "gae_lambda", "ent_coef", "vf_coef",
            "max_grad_norm"},
    "dqn": {"learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma",
            "train_freq", "target_update_interval", "exploration_fraction",
            "exploration_final_eps", "gradient_steps", "tau"},
}


def algo_class(algo: str) -> Any:
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO
        return MaskablePPO
    import stable_baselines3 as sb3
    try:
        return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[algo]
    except KeyError:
        raise PrfaasInputError(f"unknown algorithm {algo!r}; choose from {list(ALGOS)}") from None


#: The policies these algorithms accept for a flat vector observation.
POLICIES = ("MlpPolicy",)

# Value rules: (test, wording). Floats may be given as YAML ints; never as bools or strings.
_FLOAT_RULES: dict[str, tuple[Any, str]] = {
    "learning_rate": (lambda x: x > 0, "> 0"),
    "gamma": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "gae_lambda": (lambda x: 0 <= x <= 1, "in [0, 1]"),
    "ent_coef": (lambda x: x >= 0, ">= 0"),
    "clip_range": (lambda x: x > 0, "> 0"),
    "vf_coef": (lambda x: x >= 0, ">= 0"),
    "max_grad_norm": (lambda x: x > 0, "> 0"),
    "target_kl": (lambda x: x > 0, "> 0"),
    "exploration_fraction": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "exploration_final_eps": (lambda x: 0 <= x <= 1, "in [0, 1]"),
    "tau": (lambda x: 0 < x <= 1, "in (0, 1]"),
}
_INT_RULES: dict[str, tuple[Any, str]] = {
    "n_steps": (lambda x: x >= 1, ">= 1"),
    "batch_size": (lambda x: x >= 1, ">= 1"),
    "n_epochs": (lambda x: x >= 1, ">= 1"),
    "buffer_size": (lambda x: x >= 1, ">= 1"),
    "learning_starts": (lambda x: x >= 0, ">= 0"),
    "train_freq": (lambda x: x >= 1, ">= 1"),
    "target_update_interval": (lambda x: x >= 1, ">= 1"),
    "gradient_steps": (lambda x: x >= 1 or x == -1, ">= 1, or -1 (as many as env steps)"),
}
# keys of a config section that are not keyword arguments of the SB3 constructor
_OWN_KEYS = ("policy", "policy_kwargs", "env_kwargs", "curriculum")
_NULLABLE = {"target_kl"}  # null: no KL early stopping (SB3's default)


def _section(value: Any, where: str, key: str) -> dict[Any, Any]:
    """``value`` as a mapping (null: empty); :class:`PrfaasInputError` at ``where: key``
    otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PrfaasInputError(f"expected a mapping, found {type(value).__name__} {value!r}",
                               f"{where}: {key}")
    return value


def _check_hyperparams(algo: str, hp: dict[Any, Any], where: str, key: str,
                       env_id: str = ENV_ID) -> None:
    """Refuse unknown keys in the section ``hp`` (at ``where: key``) and values SB3 would
    reject or silently misuse; the error names the file and the key path."""
    allowed = _ALLOWED_KWARGS[algo] | set(_OWN_KEYS)
    unknown = sorted(str(k) for k in hp if k not in allowed)
    if unknown:
        raise PrfaasInputError(f"unknown hyperparameter(s) {unknown} for {algo}; "
                               f"allowed: {sorted(allowed)}", f"{where}: {key}")
    for name, v in hp.items():
        at = f"{where}: {key}.{name}"
        if name == "policy":
            if not isinstance(v, str) or v not in POLICIES:
                raise PrfaasInputError(f"expected one of {list(POLICIES)} (the observation is "
                                       f"a flat vector), found {v!r}", at)
        elif name == "policy_kwargs":
            pk = v or {}
            arch = pk.get("net_arch", [64, 64]) if isinstance(pk, dict) else None
            if not isinstance(pk, dict) or set(pk) - {"net_arch", "activation_fn"} \
                    or pk.get("activation_fn", "tanh") not in ("tanh", "relu") \
                    or not (isinstance(arch, list) and arch and all(
                        isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in arch)):
                raise PrfaasInputError("policy_kwargs may hold net_arch (a list of positive "
                                       "ints) and activation_fn (tanh|relu)", at)
        elif name == "env_kwargs":
            _check_env_kwargs({} if v is None else v, env_id, at)
        elif name == "curriculum":
            _check_curriculum(v, at)
        elif v is None and name in _NULLABLE:
            continue
        elif name in _INT_RULES:
            ok, wording = _INT_RULES[name]
            if name == "batch_size" and algo in ("ppo", "maskable_ppo"):
                # PPO normalises advantages per mini-batch: a batch of 1 gives NaN
                ok, wording = (lambda x: x >= 2), ">= 2"
            if not (_is_int(v) and ok(v)):
                raise PrfaasInputError(f"expected an integer {wording}, found {v!r}", at)
        else:
            ok, wording = _FLOAT_RULES[name]
            if not (is_finite_number(v) and ok(v)):
                raise PrfaasInputError(f"expected a finite number {wording}, found "
                                       f"{v!r}{yaml_string_hint(v)}", at)


def _check_curriculum(v: Any, at: str) -> None:
    """A curriculum section: ``start`` (randomisation ranges, as in a scenario's
    ``randomize:``) and ``fraction`` (of the training steps, in (0, 1])."""
    if not isinstance(v, dict) or set(v) != {"start", "fraction"}:
        raise PrfaasInputError("curriculum must be a mapping with the keys start (ranges "
                               "such as {rate_scale: [0.7, 0.8]}) and fraction (of the "
                               f"training steps, in (0, 1]), found {v!r}", at)
    check_randomize(v["start"], f"{at}.start")
    if not v["start"]:
        raise PrfaasInputError("curriculum.start names no range", f"{at}.start")
    f = v["fraction"]
    if not (is_finite_number(f) and 0 < f <= 1):
        raise PrfaasInputError(f"expected a finite number in (0, 1], found "
                               f"{f!r}{yaml_string_hint(f)}", f"{at}.fraction")


def curriculum_ranges(start: dict[str, Any], end: dict[str, tuple[float, float]],
                      progress: float) -> dict[str, list[float]]:
    """The randomisation ranges at ``progress`` (0..1) through a curriculum: each end of
    each range moves linearly from ``start[k]`` to ``end[k]`` (the scenario's range);
    cluster sizes are rounded to whole instances."""
    p = min(max(progress, 0.0), 1.0)
    out: dict[str, list[float]] = {}
    for k, (s_lo, s_hi) in start.items():
        e_lo, e_hi = end[k]
        lo, hi = s_lo + (e_lo - s_lo) * p, s_hi + (e_hi - s_hi) * p
        out[k] = [int(round(lo)), int(round(hi))] if k in ("n_prfaas", "n_local") \
            else [float(lo), float(hi)]
    return out


def load_hyperparams(algo: str, scenario: str, config: str | Path | None = None,
                     key_paths: dict[str, str] | None = None,
                     env_id: str = ENV_ID, notes: list[str] | None = None) -> dict[str, Any]:
    """Hyperparameters for ``algo`` on ``env_id`` from ``config`` (default: the shipped
    ``agents/configs/<algo>.yaml``), keyed by env id, with per-scenario overrides.
    ``key_paths``, if given, is filled with each returned key's path in the file (e.g.
    ``PrfaasRoute-v0.scenarios.S.curriculum``), for errors found later.

    Every section (the env id's, ``scenarios:`` and each scenario's overrides, whether or not
    it is ``scenario``) must be a mapping of known keys with valid values (types and ranges
    SB3 accepts; see ``_FLOAT_RULES`` / ``_INT_RULES``); otherwise :class:`PrfaasInputError`
    naming the file and the key path, e.g. ``tiny.yaml: PrfaasRoute-v0.gamma: ...``.
    ``notes``, if given, receives a sentence for each ``scenarios:`` section named like
    ``scenario`` but not exactly it (a misspelt override is otherwise silently unused)."""
    if algo not in ALGOS:
        raise PrfaasInputError(f"unknown algorithm {algo!r}; choose from {list(ALGOS)}")
    if config is None:
        text = (resources.files("agents") / "configs" / f"{algo}.yaml").read_text()
        where = f"agents/configs/{algo}.yaml"
    else:
        text, where = read_config_text(Path(config), "training config"), str(config)
    data = parse_config_yaml(text, where)
    if not isinstance(data, dict) or env_id not in data:
        raise PrfaasInputError(f"expected a mapping with the key '{env_id}'", where)
    hp = copy.deepcopy(_section(data[env_id], where, env_id))
    per_scenario = _section(hp.pop("scenarios", None), where, f"{env_id}.scenarios")
    _check_hyperparams(algo, hp, where, env_id, env_id)
    for name, section in per_scenario.items():
        key = f"{env_id}.scenarios.{name}"
        _check_hyperparams(algo, _section(section, where, key), where, key, env_id)
    own = per_scenario.get(scenario) or {}
    hp.update(own)
    near = difflib.get_close_matches(scenario, [str(k) for k in per_scenario], cutoff=0.8)
    if notes is not None and scenario not in per_scenario and near:
        notes.append(f"{where}: {env_id}.scenarios has a section {near[0]!r} but none "
                     f"named {scenario!r}, the scenario trained, so no override applies "
                     "(a typo?)")
    if key_paths is not None:
        key_paths.update({k: f"{env_id}.scenarios.{scenario}.{k}" if k in own else f"{env_id}.{k}"
                          for k in hp})
    return hp


def _check_env_kwargs(ek: Any, env_id: str, at: str) -> None:
    """Refuse an ``env_kwargs`` section the env of ``env_id`` would not take, naming the
    key: ``reward`` (either env) and ``interval_s`` (``PrfaasRoles-v0``)."""
    roles = env_id == ROLES_ENV_ID
    keys = ("reward", "interval_s") if roles else ("reward",)
    if not isinstance(ek, dict):
        raise PrfaasInputError(f"expected a mapping of {list(keys)}, found {ek!r}", at)
    for key in ek:
        if key not in keys:
            where = (f"; interval_s is a {ROLES_ENV_ID} option" if key == "interval_s"
                     else "")
            raise PrfaasInputError(f"unknown key {key!r}: {env_id} takes {list(keys)}{where}",
                                   f"{at}.{key}")
    rewards = ROLE_REWARDS if roles else ROUTE_REWARDS
    if "reward" in ek and ek["reward"] not in rewards:
        raise PrfaasInputError(f"expected one of {list(rewards)}, found {ek['reward']!r}",
                               f"{at}.reward")
    interval = ek.get("interval_s", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not 0 < interval < float("inf"):  # NaN fails too
        raise PrfaasInputError(f"expected the seconds between role decisions, a finite number "
                               f"> 0, found {interval!r}", f"{at}.interval_s")


def _policy_kwargs(pk: dict[str, Any]) -> dict[str, Any]:
    import torch.nn as nn

    out = dict(pk)
    if "activation_fn" in out:
        out["activation_fn"] = {"tanh": nn.Tanh, "relu": nn.ReLU}[out["activation_fn"]]
    return out


def make_env(env_id: str, scenario: Scenario, split: str, episode_requests: int | None = None,
             **options: Any) -> PrfaasRouteEnv:
    """An env of ``env_id`` on ``split``: ``PrfaasRoute-v0``, or ``PrfaasRoles-v0``.
    ``options``: the env's keyword arguments (``reward``; a role env's ``router`` and
    ``interval_s``), as :func:`env_options` gives them."""
    if env_id not in ENV_IDS:
        raise PrfaasInputError(f"unknown env id {env_id!r}; choose from {list(ENV_IDS)}",
                               "env_id")
    cls = PrfaasRolesEnv if env_id == ROLES_ENV_ID else PrfaasRouteEnv
    return cls(scenario, split=split, episode_requests=episode_requests, **options)


def env_options(env_id: str, hp: dict[str, Any], router: str = ROUTER) -> dict[str, Any]:
    """The env's keyword arguments of a run: the hyperparameters' ``env_kwargs``, and for
    ``PrfaasRoles-v0`` its ``router`` (and its interval, by default the env's)."""
    options = dict(hp.get("env_kwargs") or {})
    if env_id == ROLES_ENV_ID:
        options["router"] = router
        options.setdefault("interval_s", DEFAULT_INTERVAL_S)
    return options


def _make_env(scenario: Scenario, seed: int, episode_requests: int | None = None, *,
              env_id: str = ENV_ID, **options: Any):
    def thunk():
        from stable_baselines3.common.monitor import Monitor
        env = make_env(env_id, scenario, "train", episode_requests, **options)
        env.reset(seed=seed)
        return Monitor(env)
    return thunk


def make_train_env(scenario: Scenario, n_envs: int, seed: int, vec: str = "auto",
                   episode_requests: int | None = None, *, env_id: str = ENV_ID,
                   **options: Any):
    """``n_envs`` training envs of ``env_id`` (subprocesses when ``n_envs > 1`` unless
    ``vec='dummy'``), seeded ``seed, seed + 1, ...``, built with ``options``
    (:func:`make_env`)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [_make_env(scenario, seed + i, episode_requests, env_id=env_id, **options)
           for i in range(n_envs)]
    if vec == "subproc" or (vec == "auto" and n_envs > 1):
        return SubprocVecEnv(fns, start_method="fork")
    return DummyVecEnv(fns)


#: TensorBoard's Custom Scalars dashboard: the series a reader compares, on one chart each
TENSORBOARD_LAYOUT: dict[str, dict[str, list[Any]]] = {
    "serving (training episodes)": {
        "TTFT percentiles (s)": ["Multiline", ["serving/ttft_p50_s", "serving/ttft_p90_s",
                                               "serving/ttft_p99_s"]],
        "where requests go": ["Multiline", ["serving/offload_fraction",
                                            "serving/reject_fraction",
                                            "serving/link_utilization"]],
        "SLO attainment, training vs validation": ["Multiline", ["serving/slo_attainment",
                                                                  "validation/slo_attainment"]],
    },
    "validation (val split)": {
        "goodput vs the best heuristic (req/s)": ["Multiline", [
            "validation/goodput_rps", "validation/kept_goodput_rps",
            "validation/best_heuristic_goodput_rps"]],
        "ratio to the best heuristic": ["Multiline", ["validation/ratio_to_best_heuristic"]],
    },
}


def _callbacks(scenario: Scenario, out: Path, eval_freq: int, eval_seeds: list[int],
               algo: str, baseline: dict[str, Any], episode_requests: int | None,
               keep_checkpoints: bool = False, env_id: str = ENV_ID, router: str = ROUTER,
               interval_s: float = DEFAULT_INTERVAL_S, select: str = SELECT_RULES[0]):
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    class ServingMetrics(BaseCallback):
        """Logs the serving metrics of finished training episodes under ``serving/``, and
        the Custom Scalars layout (:data:`TENSORBOARD_LAYOUT`) once."""

        def _on_training_start(self) -> None:
            for fmt in self.logger.output_formats:
                if isinstance(fmt, TensorBoardOutputFormat):
                    fmt.writer.add_custom_scalars(TENSORBOARD_LAYOUT)
                    fmt.writer.flush()

        def _on_step(self) -> bool:
            rows = [i["episode_metrics"] for i in self.locals.get("infos", [])
                    if "episode_metrics" in i]
            for m in rows:
                self.logger.record_mean("serving/goodput_rps", m["goodput_rps"])
                self.logger.record_mean("serving/slo_attainment", m["slo_attainment"])
                for q in ("p50", "p90", "p99"):
                    if m["ttft_s"][q] is not None:
                        self.logger.record_mean(f"serving/ttft_{q}_s", m["ttft_s"][q])
                self.logger.record_mean("serving/offload_fraction", m["offload_fraction"])
                self.logger.record_mean("serving/link_utilization", m["link_utilization"])
                self.logger.record_mean("serving/reject_fraction",
                                        m["rejected"] / max(m["requests"], 1))
            return True

    class Validation(BaseCallback):
        """Every ``eval_freq`` env steps: goodput on the validation episodes, against the
        best heuristic on the same episodes; keeps the checkpoint ``select`` picks (the
        first validated model, then ``"max"``: any with a higher mean goodput;
        ``"significant"``: one that beats the model kept so far by
        :func:`significantly_better`)."""

        def __init__(self) -> None:
            super().__init__()
            self.best: dict[str, Any] | None = None  # the row best_model.zip holds
            self.history: list[dict[str, Any]] = []
            self._next = eval_freq

        def _on_training_start(self) -> None:
            self.evaluate()  # the starting point (e.g. the warm start) is a candidate too

        def best_row(self) -> dict[str, Any]:
            """The validation row of the checkpoint ``best_model.zip`` holds."""
            assert self.best is not None, "no validation yet"
            return self.best

        def _on_step(self) -> bool:
            if self.num_timesteps >= self._next:
                self._next += eval_freq
                self.evaluate()
            return True

        def evaluate(self, final: bool = False) -> None:
            """Validate the model now. ``final``: the model after the last update, which
            may share its step count with the last periodic validation (run inside the last
            rollout, before that update); its row says so, and with ``keep_checkpoints``
            it is ``final_model.zip``."""
            if env_id == ROLES_ENV_ID:
                metrics = run_role_episodes(scenario, role_model_chooser(self.model, algo),
                                            eval_seeds, "val", episode_requests, router,
                                            interval_s)
            else:
                metrics = run_episodes(scenario, model_chooser(self.model, algo), eval_seeds,
                                       split="val", episode_requests=episode_requests)
            g = mean_goodput(metrics)
            # None, not NaN, where undefined: eval.json stays strict JSON
            ratio = g / baseline["goodput"] if baseline["goodput"] > 0 else None
            p90s = [m["ttft_s"]["p90"] for m in metrics if m["ttft_s"]["p90"] is not None]
            row = {"timesteps": int(self.num_timesteps), "goodput_rps": g,
                   "ratio_to_best_heuristic": ratio,
                   "slo_attainment": float(np.mean([m["slo_attainment"] for m in metrics])),
                   # over the episodes that completed a request (a policy that rejects
                   # everything has no TTFT, not a TTFT of 0 s)
                   "ttft_p90_s": float(np.mean(p90s)) if p90s else None,
                   # per validation seed, in order: what ``select`` pairs
                   "episode_goodput_rps": [float(m["goodput_rps"]) for m in metrics],
                   "wall_s": time.perf_counter() - baseline["t0"]}
            with _ctrl_c_deferred():  # the checkpoints, the row and eval.json agree
                self._keep(row, g, final)

        def _keep(self, row: dict[str, Any], g: float, final: bool) -> None:
            """Save the checkpoints a validation row names, keep the row, log it and
            rewrite eval.json."""
            kept = self.best
            if kept is None:
                better = True
            elif select == "max":
                better = g > kept["goodput_rps"]
            else:
                test = significantly_better(row["episode_goodput_rps"],
                                            kept["episode_goodput_rps"])
                row["vs_kept"] = {"timesteps": kept["timesteps"], "diff_rps": test["diff_rps"],
                                  "ci95_rps": test["ci95_rps"]}
                better = test["beats"]
            if final:
                row["final"] = True
            if keep_checkpoints:  # first: should it fail, best_model.zip is still the kept row's
                row["checkpoint"] = ("final_model.zip" if final
                                     else f"checkpoint_{self.num_timesteps}.zip")
                _save_atomically(self.model, out / row["checkpoint"])
            if better:  # saved before the row is kept: a kept row has its checkpoint
                _save_atomically(self.model, out / "best_model.zip")
                row["best"] = True
                self.best = row  # run.json's best_validation from here on
            self.history.append(row)
            ratio = row["ratio_to_best_heuristic"]
            self.logger.record("validation/goodput_rps", g)
            if ratio is not None:
                self.logger.record("validation/ratio_to_best_heuristic", ratio)
            self.logger.record("validation/best_heuristic_goodput_rps", baseline["goodput"])
            best = self.best_row()  # the model best_model.zip holds after this validation
            self.logger.record("validation/kept_goodput_rps", best["goodput_rps"])
            self.logger.record("validation/kept_timesteps", best["timesteps"])
            self.logger.record("validation/slo_attainment", row["slo_attainment"])
            # written now, at this step (as SB3's EvalCallback does): left to the next
            # rollout's dump it would be stamped with that step, and the last one lost
            self.logger.dump(self.num_timesteps)
            write_atomically(out / "eval.json", json.dumps(json_safe(
                {"best_heuristic": baseline["name"], "best_heuristic_goodput": baseline["goodput"],
                 "heuristics": baseline["table"], "validation_seeds": eval_seeds,
                 # the row best_model.zip holds ("best" in a row: kept at its time)
                 "best_model": {"timesteps": best["timesteps"], "goodput_rps": best["goodput_rps"]},
                 "select": select,
                 "history": self.history}), indent=2, allow_nan=False))

    return ServingMetrics(), Validation()


def significantly_better(candidate: list[float], kept: list[float]) -> dict[str, Any]:
    """Whether a checkpoint beats the one kept so far, paired per validation episode.

    ``candidate[i]`` and ``kept[i]`` are the two checkpoints' goodputs on validation episode
    ``i``. Returns ``{"beats", "diff_rps", "ci95_rps"}``: the mean of the per-episode
    differences (candidate - kept), the half-width of its 95% Student-t interval, and
    whether that interval lies above zero. Fewer than two episodes have no interval and
    never beat. Picking the highest of ten noisy means overstates the pick (the shipped
    Mooncake pick lost 3% between validation and held out); requiring each replacement to
    clear this interval keeps the starting point unless a checkpoint beats it by more than
    the episodes' spread. Each test errs at 2.5% (one-sided), so over K candidates a false
    replacement has a chance of up to 1 - 0.975**K (about 20% for ten), and a replaced
    model's validation figure is still a selected, optimistic one; the held-out split
    judges it.
    """
    if len(candidate) != len(kept):
        raise ValueError(f"paired episodes differ in number: {len(candidate)} vs {len(kept)}")
    mean, half = ci95([c - k for c, k in zip(candidate, kept)])
    beats = bool(np.isfinite(half) and mean - half > 0)
    return {"beats": beats, "diff_rps": mean, "ci95_rps": None if np.isnan(half) else half}


def _curriculum_callback(start: dict[str, Any], end: dict[str, tuple[float, float]],
                         steps: int):
    """Widens the training envs' randomisation ranges from ``start`` to ``end`` over
    ``steps`` env steps (:func:`curriculum_ranges`), at the start of each rollout, in
    1% steps (so that DQN's short rollouts do not call the workers every few steps)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Curriculum(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.ranges = curriculum_ranges(start, end, 0.0)

        def _on_rollout_start(self) -> None:
            progress = min(int(100 * self.num_timesteps / steps) / 100, 1.0)
            ranges = curriculum_ranges(start, end, progress)
            if ranges != self.ranges:
                self.training_env.env_method("set_randomize", ranges)
                self.ranges = ranges
            self.logger.record("curriculum/progress", progress)

        def _on_step(self) -> bool:
            return True

    return Curriculum()


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_new_run_dir(out: Path) -> None:
    """Refuse an ``out`` that would overwrite a run (an existing non-empty directory) or
    that is not a directory; an absent or empty directory is fine."""
    try:
        is_dir, exists = out.is_dir(), out.exists()
        not_empty = is_dir and any(out.iterdir())
    except OSError as e:
        raise PrfaasInputError(f"cannot use the run directory: {e.strerror or e}", out) from None
    if not_empty:
        raise PrfaasInputError("the run directory exists and is not empty (it may hold an "
                               "earlier run); choose a new --out or remove it", out)
    if exists and not is_dir:
        raise PrfaasInputError("--out exists and is not a directory", out)


def _check_warm_start(name: str, scenario: Scenario) -> None:
    """Refuse a ``--warm-start`` that names no heuristic and no checkpoint."""
    from agents.registry import HEURISTICS, TUNED_THRESHOLD, is_heuristic

    if name == "best" or is_heuristic(name):
        return
    if Path(name).exists():
        from agents.learned import load_learned_policy

        loaded = load_learned_policy(name, scenario)  # a clear error if it is not loadable
        if loaded.env_id != ENV_ID:
            raise PrfaasInputError(f"--warm-start {name!r} is a {loaded.env_id} policy; a "
                                   f"{ENV_ID} run clones a routing policy")
        return
    raise PrfaasInputError(f"--warm-start {name!r}: expected 'best', 'none', a heuristic "
                           f"{sorted([*HEURISTICS, TUNED_THRESHOLD])} or a checkpoint path")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``timeout``, a job scheduler) ends a run as Ctrl-C does, keeping what was
    validated (in the main thread; elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@_sigterm_as_ctrl_c()
def train(algo: str, scenario: str | Path | Scenario, timesteps: int, n_envs: int = 2,
          seed: int = 0, config: str | Path | None = None, out: str | Path = "runs/run",
          threads: int = 1, eval_freq: int = 20_000, eval_episodes: int = 8, progress: bool = True,
          device: str = "cpu", vec: str = "auto", verbose: int = 0,
          warm_start: str | None = "best", warm_start_episodes: int = 96,
          warm_start_epochs: int = 100, episode_requests: int | None = None,
          keep_checkpoints: bool = False, env_id: str = ENV_ID,
          router: str | None = None, select: str = SELECT_RULES[0]) -> Path:
    """Train and return the run directory (see the module docstring for its contents).

    ``scenario``: a name, a YAML path, or a :class:`Scenario` (one that replays the user's
    own request or bandwidth trace, :meth:`Scenario.with_trace`); run.json records where its
    requests and link came from.

    ``out`` must not exist or be an empty directory: an earlier run is never overwritten.
    Every argument, the scenario and the hyperparameters are validated before ``out`` is
    created, so bad input (:class:`PrfaasInputError`) leaves nothing behind.

    Ctrl-C (KeyboardInterrupt) before the first validation is done (while the baseline is
    measured, the heuristic cloned or the starting point validated) empties ``out`` again
    and re-raises. After it, Ctrl-C ends the run early, as rl-zoo3 does:
    ``final_model.zip`` is the model so far, ``best_model.zip`` the one validation kept, and
    ``run.json`` records ``interrupted_at`` (the steps done). Checkpoints are written
    through a temporary file, and a second Ctrl-C is ignored while the last files are
    written, so an interrupted run is whole. SIGTERM does what Ctrl-C does.

    Any other error before the first validation empties ``out`` too (running out of memory
    for the hyperparameters is a :class:`PrfaasInputError`); after it, the validated
    checkpoints stay and ``run.json`` records ``failed`` (the error) and the best
    validation, so ``best_model.zip`` still exports.

    ``warm_start``: clone a heuristic first (:mod:`agents.imitation`) — a heuristic name,
    ``"best"`` (the best heuristic on the validation episodes), a checkpoint path, or None
    (or ``"none"``, as on the command line) for none; ignored for DQN.
    ``warm_start_episodes`` training episodes of it, ``warm_start_epochs`` passes over them
    (the clone's agreement with the conductor on bursty-fluctuating: 96.5% after 20 passes
    over 48 episodes, 98.3% after 100 over 96, mostly on near-ties between the clusters).

    ``select``: how ``best_model.zip`` is picked from the validated models, the starting
    point first (the warm start's clone; an untrained network without one).
    ``"significant"`` (the default) replaces the model kept so far only by one whose
    goodput beats it on the validation episodes with a paired 95% interval above zero
    (:func:`significantly_better`; it needs ``eval_episodes`` >= 2); ``"max"`` keeps the
    highest mean validation goodput, which overstates the pick when the checkpoints differ
    by less than the noise.

    ``keep_checkpoints``: also keep every validated model as ``checkpoint_<steps>.zip``
    beside run.json (its ``eval.json`` row names it), to study how validation ranks them.

    ``env_id``: ``PrfaasRoute-v0`` (route each request, the default) or ``PrfaasRoles-v0``
    (switch the local nodes' roles every ``env_kwargs: {interval_s: S}`` of the config, 60 s
    in the shipped one, the env's default 30 s without it, while the heuristic ``router``,
    by default
    the conductor, routes; a ``router`` with ``PrfaasRoute-v0`` is an error; its
    episodes are 8 routing episodes long, its baseline is ``router`` alone, i.e. holding
    every role, and it has no warm start: ``warm_start`` is ignored, as for DQN).
    """
    import torch

    from agents.run_dir import git_commit, git_dirty, plot_validation, write_run_json

    # the code that runs is the checkout's as the run starts: commits made while it trains
    # must not be recorded as its source
    provenance = {"commit": git_commit(), "commit_dirty": git_dirty()}
    if env_id not in ENV_IDS:
        raise PrfaasInputError(f"--env must be one of {list(ENV_IDS)}, got {env_id!r}")
    if router is not None and env_id != ROLES_ENV_ID:
        raise PrfaasInputError(f"--router is for --env {ROLES_ENV_ID}: on {env_id} the "
                               "policy routes the requests itself")
    router = router or ROUTER  # an unknown name is refused by the env (make_router)
    if warm_start == "none" or env_id == ROLES_ENV_ID:
        warm_start = None
    for option, value in (("--timesteps", timesteps), ("--n-envs", n_envs),
                          ("--threads", threads), ("--eval-freq", eval_freq),
                          ("--eval-episodes", eval_episodes),
                          ("--warm-start-episodes", warm_start_episodes),
                          ("--warm-start-epochs", warm_start_epochs),
                          ("--episode-requests", episode_requests)):
        if value is not None and not (_is_int(value) and value >= 1):
            raise PrfaasInputError(f"{option} must be an integer >= 1, got {value!r}")
    if vec == "subproc" or (vec == "auto" and n_envs > 1):
        _check_worker_files(n_envs)
    if not (_is_int(seed) and 0 <= seed < MAX_SEED):
        raise PrfaasInputError(f"--seed must be >= 0 and < 2**31 (numpy seeds each worker "
                               f"and demonstration from it), got {seed!r}")
    # the CLI's choices, for callers of this function
    for option, value, allowed in (("--device", device, DEVICES), ("--vec", vec, VEC_KINDS),
                                   ("--select", select, SELECT_RULES)):
        if value not in allowed:
            raise PrfaasInputError(f"{option} must be one of {list(allowed)}, got {value!r}")
    if select == "significant" and eval_episodes < 2:
        raise PrfaasInputError(f"--select significant (the default) pairs the checkpoints' "
                               f"goodputs per validation episode and needs --eval-episodes >= "
                               f"2, got {eval_episodes}; or pick by the mean alone with "
                               f"--select max")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PrfaasInputError("--device cuda asked for, but torch sees no CUDA device")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    key_paths: dict[str, str] = {}
    notes: list[str] = []
    hp = load_hyperparams(algo, sc.name, config, key_paths, env_id, notes)
    for note in notes:
        print(f"prfaas: note: {note}", file=sys.stderr)
    n_steps = hp.get("n_steps", 2048)
    if algo in ("ppo", "maskable_ppo") and n_steps * n_envs < 2:
        raise PrfaasInputError(f"n_steps * --n-envs must be >= 2 for {algo} (it normalises "
                               f"advantages over the rollout), got {n_steps} * {n_envs}",
                               config or f"agents/configs/{algo}.yaml")
    if warm_start is not None and algo != "dqn":
        _check_warm_start(warm_start, sc)
    curriculum = hp.get("curriculum")
    if curriculum is not None:
        try:  # the env's own check: only ranges the scenario randomises
            PrfaasRouteEnv(sc, split="train").set_randomize(curriculum["start"])
        except PrfaasInputError as e:
            raise PrfaasInputError(
                f"{e.reason}; a curriculum starts some of the scenario's ranges elsewhere "
                "and widens them to the scenario's",
                f"{config or f'agents/configs/{algo}.yaml'}: {key_paths['curriculum']}.start"
            ) from None
    options = env_options(env_id, hp, router)
    for split in ("train", "val"):  # a trace is first read here: fail before writing
        probe_env = make_env(env_id, sc, split, episode_requests, **options)
        probe_env.reset(seed=seed)
        have = len(sc.split_trace(split)) if sc.is_trace else None
        if have is not None and probe_env.episode_requests > have:
            print(f"prfaas: note: the {split} split of the trace has {have} requests, fewer "
                  f"than an episode's {probe_env.episode_requests}: every "
                  f"{'training' if split == 'train' else 'validation'} episode replays all "
                  f"{have}", file=sys.stderr)
    torch.set_num_threads(threads)
    # Everything is validated: from here on the run directory is created and written.
    out = Path(out)
    _check_new_run_dir(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump({env_id: hp}, sort_keys=True))
    except OSError as e:
        raise PrfaasInputError(f"cannot create the run directory: {e.strerror or e}",
                               out) from None
    learning, env = False, None
    try:
        t0 = time.perf_counter()
        eval_seeds = [EVAL_SEED_BASE + k for k in range(eval_episodes)]
        if env_id == ROLES_ENV_ID:  # the router alone: every role held
            name = router
            table = {name: mean_goodput(run_role_episodes(
                sc, hold, eval_seeds, "val", episode_requests, router, options["interval_s"]))}
        else:
            name, _, table = best_heuristic(sc, eval_seeds, split="val",
                                            episode_requests=episode_requests,
                                            progress=progress)
        baseline = {"name": name, "goodput": table[name], "table": table, "t0": t0}
        env = make_train_env(sc, n_envs, seed, vec, episode_requests, env_id=env_id,
                             **options)
        callbacks = []
        if curriculum is not None:
            callbacks.append(_curriculum_callback(
                curriculum["start"], sc.randomize,
                max(1, int(curriculum["fraction"] * timesteps))))
            env.env_method("set_randomize", callbacks[0].ranges)  # from the first episode
        cls = algo_class(algo)
        kwargs = {k: v for k, v in hp.items() if k not in _OWN_KEYS}
        model = cls(hp.get("policy", "MlpPolicy"), env, seed=seed, device=device, verbose=verbose,
                    tensorboard_log=str(out / "tb"),
                    policy_kwargs=_policy_kwargs(hp.get("policy_kwargs") or {}), **kwargs)
        warm = None
        if warm_start and algo != "dqn":
            from agents.imitation import collect_demonstrations, pretrain

            teacher = name if warm_start == "best" else warm_start
            demo_seeds = list(range(seed + 10_000, seed + 10_000 + warm_start_episodes))
            demos = collect_demonstrations(sc, teacher, demo_seeds, hp.get("gamma", 0.99),
                                           episode_requests, progress=progress,
                                           reward=options.get("reward", ROUTE_REWARDS[0]))
            warm = {"teacher": teacher, "episodes": warm_start_episodes, "seeds": demo_seeds,
                    "epochs": warm_start_epochs, "samples": int(len(demos["actions"])),
                    **pretrain(model, demos, epochs=warm_start_epochs, seed=seed,
                               progress=progress)}
        probe = make_env(env_id, sc, "train", episode_requests, **options)
        probe.reset(seed=seed)
        roles = ({"router": router, "interval_s": probe.interval_s,
                  "router_threshold_tokens": getattr(probe.router, "threshold_tokens", None)}
                 if env_id == ROLES_ENV_ID else {})
        record = dict(**provenance, scenario=sc.name, scenario_sources=sc.sources(), seed=seed,
                      hyperparams=hp, timesteps=timesteps, eval_freq=eval_freq,
                      eval_episodes=eval_episodes,
                      n_envs=n_envs, threads=threads, device=device,
                      keep_checkpoints=keep_checkpoints,
                      episode_requests=probe.episode_requests, train_split="train",
                      validation_split="val", validation_seeds=eval_seeds, select=select,
                      training_seeds=list(range(seed, seed + n_envs)),
                      randomize={k: list(v) for k, v in sc.randomize.items()},
                      best_heuristic={"name": name, "goodput_rps": table[name]}, warm_start=warm,
                      **roles)
        write_run_json(out, probe, algo, **record)
        metrics_cb, val_cb = _callbacks(sc, out, eval_freq, eval_seeds, algo, baseline,
                                        episode_requests, keep_checkpoints, env_id, router,
                                        options.get("interval_s", DEFAULT_INTERVAL_S), select)
        learning = True
        model.learn(total_timesteps=timesteps, callback=[*callbacks, metrics_cb, val_cb],
                    progress_bar=progress, tb_log_name=algo)
        val_cb.evaluate(final=True)
    except KeyboardInterrupt:
        if not (learning and val_cb.history):  # nothing validated yet: nothing worth keeping
            _abandon(env, out, created)
            raise
        interrupted = True  # keep what was learnt, as a finished run, minus the last validation
    except Exception as e:
        diverged = None
        if learning and _diverged(e):
            diverged = PrfaasInputError(
                f"training diverged at step {model.num_timesteps:,}: the policy's outputs "
                f"became NaN; lower {algo}'s learning_rate (in "
                f"{config or f'agents/configs/{algo}.yaml'}) or clip its gradients")
        if not (learning and val_cb.history):
            _abandon(env, out, created)
            if diverged is not None:
                raise diverged from None
            if _out_of_memory(e):
                raise PrfaasInputError(
                    f"not enough memory for this run ({type(e).__name__}: {e}); the usual "
                    f"causes are {algo}'s "
                    f"{'buffer_size' if algo == 'dqn' else 'n_steps x --n-envs'} or net_arch (in "
                    f"{config or f'agents/configs/{algo}.yaml'}), or a large "
                    "--episode-requests or --warm-start-episodes") from None
            raise
        # the validated checkpoints are kept, and the run says why it has no final model
        with contextlib.suppress(Exception):
            env.close()
        write_run_json(out, probe, algo, **record, failed=f"{type(e).__name__}: {e}",
                       best_validation=val_cb.best_row())
        if diverged is not None:
            raise PrfaasInputError(f"{diverged}; the validated checkpoints are kept in "
                                   f"{out}") from None
        raise
    else:
        interrupted = False
    with _ctrl_c_ignored():  # a second Ctrl-C must not leave the run half-written
        _save_atomically(model, out / "final_model.zip")
        try:
            env.close()
        except (EOFError, ConnectionError):
            if not interrupted:  # a worker that died on its own
                raise
        wall = time.perf_counter() - t0
        done = int(model.num_timesteps)
        write_run_json(out, probe, algo, **record, best_validation=val_cb.best_row(),
                       wall_s=wall, steps_per_s=done / wall,
                       **({"interrupted_at": done} if interrupted else {}))
        try:  # a picture of eval.json; the run is whole without it
            src = record["scenario_sources"]["workload"]
            on = (sc.name + (f" replaying {Path(src['trace']).name}"
                             if src.get("given_as") == "--trace" else "")
                  + (f" at {src['rate']:g} req/s" if src.get("rate_given_as") else ""))
            plot_validation(val_cb.history, out / "validation.png", name,
                            f"{algo} on {on}, seed {seed}\nvalidation: {eval_episodes} "
                            "episodes of the val split")
        except Exception as e:  # noqa: BLE001 - never lose a finished run to a plot
            print(f"prfaas: note: validation.png not written ({type(e).__name__}: {e})",
                  file=sys.stderr)
    return out


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then stop as Ctrl-C does (in the main
    thread; elsewhere there is none to hold)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # a signal the process ignores stays ignored
    sigs = [sig for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _ctrl_c_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (in the main thread; elsewhere there is
    none to ignore)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _abandon(env: Any, out: Path, created: bool) -> None:
    """A run stopped before anything was validated: close its workers and empty ``out``, so
    that the same ``--out`` can be used again."""
    if env is not None:
        with contextlib.suppress(Exception):
            env.close()
    _empty_run_dir(out, created)


def _check_worker_files(n_envs: int) -> None:
    """Refuse more worker processes than this process may open files for: each holds a pipe
    and a process handle open here (``--vec subproc``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - POSIX everywhere this project runs
        return
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = 4 * n_envs + 64  # and room for the run's own files
    if soft != resource.RLIM_INFINITY and need > soft:
        raise PrfaasInputError(
            f"--n-envs {n_envs}: more worker processes than this process may open files for "
            f"(about {need:,} needed, limit {soft:,}: `ulimit -n`); use fewer, or --vec dummy "
            "to step them in this process")


def _diverged(e: BaseException) -> bool:
    """torch's refusal of a distribution whose parameters are NaN: what a policy's logits or
    means become when training diverges (a learning rate far too high)."""
    text = str(e)
    return isinstance(e, ValueError) and "invalid values" in text and "nan" in text


def _out_of_memory(e: BaseException) -> bool:
    """numpy's MemoryError and its refusals of sizes beyond what it can index (ValueErrors),
    or torch's allocator errors (RuntimeErrors on CPU and CUDA)."""
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in str(e)
                                         or "out of memory" in str(e))) or (
        isinstance(e, ValueError) and ("Maximum allowed dimension exceeded" in str(e)
                                       or "array is too big" in str(e)))


def _empty_run_dir(out: Path, created: bool) -> None:
    """Undo what :func:`train` wrote into ``out``, which was absent (``created``) or empty."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _save_atomically(model: Any, path: Path) -> None:
    """``model.save(path)`` through a temporary file beside it, so that a Ctrl-C mid-save
    leaves the checkpoint already at ``path`` intact."""
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
