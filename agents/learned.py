"""Learned routers: an exported ONNX policy (onnxruntime only) or an SB3 checkpoint.

:class:`OnnxRouter` runs a file written by :func:`agents.export.export_onnx` with
onnxruntime alone (no torch, no pickle) after checking its manifest against the running code
(env id and version, observation spec hash, action meanings) and the file's sha256.
:class:`LearnedPolicy` wraps either backend as a :class:`~prfaas_gym.contract.Policy`:
featurize, logits, mask infeasible actions with ``-inf``, argmax.

SB3 checkpoints (``.zip`` / run directories) are **trusted input only: SB3 zips unpickle**,
so loading one can run arbitrary code. Ship and load ``.onnx`` files across trust
boundaries.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.run_dir import (
    ALGO_METADATA_KEY,
    MODEL_FILES,
    RUN_JSON,
    check_compatible,
    check_manifest,
    manifest_path_for,
    read_json_record,
    read_run_json,
    scales_from_record,
    sha256_file,
)
from prfaas_gym.actions import LOCAL, REJECT_ACTION, REMOTE, Best, action_to_decision
from prfaas_gym.contract import ClusterView, Decision, Policy, RequestInfo, RoleChange
from prfaas_gym.env import ENV_ID
from prfaas_gym.errors import PrfaasInputError, require_file
from prfaas_gym.featurizer import N_FEATURES, FeatureScales, Featurizer
from prfaas_gym.interfaces import Interface, interface
from prfaas_gym.profile import Profile, is_finite_number
from prfaas_gym.role_actions import (
    MIN_INTERVAL_S,
    action_to_changes,
    is_decision_interval,
    role_masks,
)
from prfaas_gym.role_featurizer import RoleFeaturizer
from prfaas_gym.roles_env import ROLES_ENV_ID, make_router

N_ACTIONS = 3


class Router(Protocol):
    """What :class:`LearnedPolicy` needs from a backend."""

    path: Path
    algo: str
    scales: FeatureScales
    interface: Interface
    manifest: dict[str, Any]
    manifest_path: Path  #: where ``manifest`` was read (a .manifest.json or run.json)

    def logits(self, obs: np.ndarray) -> np.ndarray: ...

    def logits_single(self, obs: np.ndarray) -> np.ndarray: ...


def _as_batch(obs: np.ndarray, n: int = N_FEATURES) -> np.ndarray:
    x = np.ascontiguousarray(obs, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"obs must have shape [batch, {n}] or [{n}], got {np.shape(obs)}")
    return x


class OnnxRouter:
    """An exported policy run by onnxruntime.

    ``OnnxRouter(path)`` reads ``<path without .onnx>.manifest.json`` (or
    ``manifest_path``) and raises :class:`PrfaasInputError` naming the file when: the ONNX
    file or manifest is missing; the manifest is not valid JSON; its ``format`` is not the
    one this code reads; its ``algo`` is unknown or differs from the one the graph records;
    its env_id, env_version, observation spec hash or action meanings differ from this code
    (the message lists each field as expected vs found); its normalisation scales are not
    finite positive numbers; the file's sha256 differs from the manifest's; onnxruntime
    cannot load the file (corrupt / truncated); or the graph is not ``obs`` float32
    ``[batch, N]`` -> ``logits`` float32 ``[batch, actions]`` with a symbolic batch axis.

    Session: 1 intra-op thread, sequential; CUDAExecutionProvider first when onnxruntime
    offers it, then the CPU provider. :meth:`logits` is safe to call from several threads;
    :meth:`logits_single` reuses preallocated buffers and is not (one router per thread).
    """

    def __init__(self, path: str | Path, manifest_path: str | Path | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.manifest_path = Path(manifest_path) if manifest_path else manifest_path_for(path)
        require_file(self.path, "ONNX file")
        if not self.manifest_path.exists():  # a directory: read_json_record says so
            raise PrfaasInputError(f"its manifest {self.manifest_path} is missing (an exported "
                                   "policy is the .onnx file plus the .manifest.json that "
                                   "`prfaas export` writes beside it)", self.path)
        self.manifest: dict[str, Any] = read_json_record(self.manifest_path, "ONNX manifest")
        self.algo: str = check_manifest(self.manifest, self.manifest_path)
        check_compatible(self.manifest, self.manifest_path)
        self.interface = iface = interface(self.manifest["env_id"])
        n_in, n_out = iface.n_features, len(iface.actions)
        self.scales: FeatureScales = scales_from_record(self.manifest, self.manifest_path)
        expected = self.manifest.get("onnx_sha256")
        if not isinstance(expected, str):
            raise PrfaasInputError("key 'onnx_sha256' is missing" if expected is None else
                                   f"key 'onnx_sha256': expected a hex string, found "
                                   f"{expected!r}", self.manifest_path)
        found = sha256_file(self.path)
        if found != expected.lower():  # hex digits: either case is the same hash
            raise PrfaasInputError("the ONNX file does not match its manifest (modified or "
                                   f"truncated?): sha256 expected {expected} (manifest), "
                                   f"found {found}", self.path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:
            raise PrfaasInputError(f"onnxruntime cannot load this ONNX file (corrupt or "
                                   f"truncated?): {type(e).__name__}: {e}", self.path) from None
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        in_shape = ins[0].shape if len(ins) == 1 else None
        out_shape = outs[0].shape if len(outs) == 1 else None
        # the batch axis must be symbolic (a fixed one refuses every other batch size)
        if (in_shape is None or ins[0].name != "obs" or len(in_shape) != 2
                or isinstance(in_shape[0], int) or in_shape[1] != n_in
                or ins[0].type != "tensor(float)" or out_shape is None
                or outs[0].name != "logits" or len(out_shape) != 2
                or isinstance(out_shape[0], int) or out_shape[1] != n_out
                or outs[0].type != "tensor(float)"):
            raise PrfaasInputError(
                f"graph signature is {[(i.name, i.type, i.shape) for i in ins]} -> "
                f"{[(o.name, o.type, o.shape) for o in outs]}; expected obs float32 [batch, "
                f"{n_in}] -> logits float32 [batch, {n_out}] ({iface.env_id})", self.path)
        # Graphs exported since the exporter began recording it carry their algo too.
        graph_algo = self.session.get_modelmeta().custom_metadata_map.get(ALGO_METADATA_KEY)
        if graph_algo is not None and graph_algo != self.algo:
            raise PrfaasInputError(f"key 'algo': the manifest says {self.algo!r}, but the ONNX "
                                   f"graph was exported from a {graph_algo!r} model",
                                   self.manifest_path)
        probe = np.linspace(-1.0, 1.0, n_in, dtype=np.float32)
        probe_logits = self.session.run(["logits"], {"obs": probe[None]})[0][0]
        if not np.isfinite(probe_logits).all():
            # every decision would be NaN: the masked argmax would reject every request
            raise PrfaasInputError("the policy's logits on a probe observation are not finite "
                                   "(NaN or infinite weights?)", self.path)
        self.providers = self.session.get_providers()
        self._in = np.zeros((1, n_in), dtype=np.float32)
        self._out = np.zeros((1, n_out), dtype=np.float32)
        self._in_value = ort.OrtValue.ortvalue_from_numpy(self._in)
        self._out_value = ort.OrtValue.ortvalue_from_numpy(self._out)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input("obs", self._in_value)
        self._binding.bind_ortvalue_output("logits", self._out_value)
        self._run = self._fast_run(ort, probe, probe_logits)

    def _fast_run(self, ort: Any, probe: np.ndarray, want: np.ndarray) -> Any:
        """The bound run as a zero-argument callable: onnxruntime's C session directly when
        it gives the public ``run``'s logits ``want`` on the observation ``probe`` (it skips
        ~1.5 us of Python wrapper per call), else the public ``run_with_iobinding``."""
        public = functools.partial(self.session.run_with_iobinding, self._binding)
        try:
            fast = functools.partial(self.session._sess.run_with_iobinding,
                                     self._binding._iobinding, ort.RunOptions())
            self._in[0] = probe
            fast()
            ok = bool(np.array_equal(self._out[0], want))
        except Exception:
            ok = False
        return fast if ok else public

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Logits ``[batch, 3]`` for observations ``[batch, N]`` (or ``[N]`` -> ``[1, 3]``)."""
        return self.session.run(["logits"], {"obs": _as_batch(obs, self.interface.n_features)})[0]

    def logits_single(self, obs: np.ndarray) -> np.ndarray:
        """Logits ``[3]`` of one observation ``[N]``; the returned array is a buffer that the
        next call overwrites."""
        self._in[0] = obs
        self._run()
        return self._out[0]


class Sb3Router:
    """An SB3 checkpoint evaluated with torch, giving the same logits as its ONNX export.

    **Trusted input only: SB3 zips unpickle.** ``record`` is the run's run.json (checked with
    :func:`agents.run_dir.check_compatible`; it supplies ``algo`` and the scales)."""

    def __init__(self, zip_path: str | Path, record: dict[str, Any],
                 record_path: str | Path) -> None:
        import torch

        from agents.export import LogitsModule, load_sb3

        check_compatible(record, record_path)
        self.interface = interface(record["env_id"])
        self.path = Path(zip_path)
        self.manifest = record
        self.manifest_path = Path(record_path)
        self.algo = str(record["algo"])
        self.scales = scales_from_record(record, record_path)
        self.model = load_sb3(self.path, self.algo, self.interface.n_features)
        self.module = LogitsModule(self.model, self.algo)
        self._torch = torch

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Logits ``[batch, 3]`` for observations ``[batch, N]`` (or ``[N]`` -> ``[1, 3]``)."""
        with self._torch.no_grad():
            x = _as_batch(obs, self.interface.n_features)
            return self.module(self._torch.from_numpy(x)).numpy()

    def logits_single(self, obs: np.ndarray) -> np.ndarray:
        """Logits ``[3]`` of one observation ``[N]``."""
        return self.logits(obs)[0]


def _sb3_router(path: Path) -> Sb3Router:
    """The SB3 backend of a ``.zip`` with its run.json beside it (**trusted input only**)."""
    run_json = path.with_name(RUN_JSON)
    if not run_json.is_file():
        raise PrfaasInputError(f"no {RUN_JSON} beside this model: it records the "
                               "observation scales and the algorithm; load the run "
                               "directory or an exported .onnx instead", path)
    return Sb3Router(path, read_run_json(run_json), run_json)


def masked_argmax(logits: np.ndarray, best: Best) -> int:
    """``argmax`` of ``logits`` with infeasible actions (``action_masks(best)``) at ``-inf``;
    ties go to the lower action index, as ``np.argmax``; NaN logits are never chosen."""
    l0, l1, l2 = logits.tolist()
    a, m = REJECT_ACTION, (l2 if l2 == l2 else -math.inf)  # x != x: NaN
    if best[2] >= 0 and l1 == l1 and l1 >= m:
        a, m = REMOTE, l1
    if best[0] >= 0 and l0 == l0 and l0 >= m:
        a = LOCAL
    return a


class LearnedPolicy(Policy):
    """A trained router as a :class:`~prfaas_gym.contract.Policy`.

    :meth:`reset` builds a :class:`~prfaas_gym.featurizer.Featurizer` for the deployment's
    profile with the normalisation constants recorded at training time; :meth:`decide`
    featurizes, computes the logits, masks infeasible clusters and takes the argmax
    (deterministic). Build with :meth:`from_onnx` (safe) or :meth:`from_sb3_zip` /
    :meth:`from_run_dir` (**trusted input only: SB3 zips unpickle**), or
    :func:`load_learned_policy`. Not thread-safe: one instance per thread.
    """

    #: the env whose policies this class runs
    env_id = ENV_ID

    def __init__(self, router: Router, name: str | None = None) -> None:
        got = router.interface.env_id
        if got != self.env_id:
            raise PrfaasInputError(
                f"is a {got} policy (it decides {router.interface.decides}), not a "
                f"{self.env_id} one; load it with agents.learned.load_learned_policy",
                router.path)
        self.router = router
        self.scales = router.scales
        self.name = name or f"{router.algo}:{router.path.name}"
        self.featurizer: Featurizer | None = None

    @classmethod
    def from_onnx(cls, path: str | Path, name: str | None = None) -> LearnedPolicy:
        return cls(OnnxRouter(path), name)

    @classmethod
    def from_sb3_zip(cls, path: str | Path, name: str | None = None) -> LearnedPolicy:
        """An SB3 ``.zip``; its run.json must sit beside it. **Trusted input only: SB3 zips
        unpickle.**"""
        return cls(_sb3_router(Path(path)), name)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, model: str = "best",
                     name: str | None = None) -> LearnedPolicy:
        """``run_dir/best_model.zip`` (or ``final_model.zip``) with ``run_dir/run.json``.
        **Trusted input only: SB3 zips unpickle.**"""
        if model not in MODEL_FILES:
            raise PrfaasInputError(f"model must be one of {sorted(MODEL_FILES)}, got {model!r}")
        return cls.from_sb3_zip(Path(run_dir) / MODEL_FILES[model], name)

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        self.profile = profile
        self.featurizer = Featurizer(profile, self.scales)

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        fz = self.featurizer
        if fz is None:
            raise RuntimeError("decide() before reset()")
        best = fz.best(request, view)
        logits = self.router.logits_single(fz(request, view, best))
        return action_to_decision(masked_argmax(logits, best), best)


def masked_role_argmax(logits: np.ndarray, mask: np.ndarray) -> int:
    """The role action a role policy takes: ``argmax`` of ``logits`` over the feasible
    actions ``mask`` (hold, always feasible, where every feasible logit is NaN); ties go to
    the lower index."""
    return int(np.argmax(np.where(mask & (logits == logits), logits, -np.inf)))


class LearnedRoles(LearnedPolicy):
    """A trained ``PrfaasRoles-v0`` policy as a :class:`~prfaas_gym.contract.Policy`: a
    heuristic routes each request (the one it trained beside, recorded as ``router``), and
    every ``interval_s`` (recorded) :meth:`on_tick` featurizes the view
    (:class:`~prfaas_gym.role_featurizer.RoleFeaturizer`), masks infeasible role actions
    (:func:`~prfaas_gym.role_actions.role_masks`) and requests the argmax's role change.

    ``scenario``: the scenario it runs on, whose planned threshold a threshold router takes
    (None: the threshold it trained with, recorded as ``router_threshold_tokens``). Build
    with :func:`load_learned_policy` or the ``from_*`` constructors; the same trust rules as
    :class:`LearnedPolicy`.
    """

    env_id = ROLES_ENV_ID

    def __init__(self, router: Router, name: str | None = None, scenario: Any = None) -> None:
        super().__init__(router, name)
        record = router.manifest
        route, interval = record.get("router"), record.get("interval_s")
        if not isinstance(route, str):
            raise PrfaasInputError(f"key 'router': expected a heuristic's name, found "
                                   f"{route!r}", router.manifest_path)
        if not is_decision_interval(interval):
            raise PrfaasInputError(f"key 'interval_s': expected a number of seconds >= "
                                   f"{MIN_INTERVAL_S:g}, found {interval!r}",
                                   router.manifest_path)
        thr = record.get("router_threshold_tokens")
        try:  # a threshold router routes by the scenario's planned threshold, else as trained
            self.route_policy: Policy = make_router(
                route, scenario, None if scenario is not None or not is_finite_number(thr)
                else float(thr))
        except PrfaasInputError as e:
            raise PrfaasInputError(f"key 'router': {e.reason}", router.manifest_path) from None
        self.tick_interval_s = float(interval)
        self.role_featurizer = RoleFeaturizer(self.scales)
        self.role_changes = 0  #: changes requested since :meth:`reset`

    def reset(self, profile: Profile, seed: int | None = None) -> None:
        self.profile = profile
        self.route_policy.reset(profile, seed)
        self.role_changes = 0

    def decide(self, request: RequestInfo, view: ClusterView) -> Decision:
        return self.route_policy.decide(request, view)

    def on_tick(self, view: ClusterView) -> list[RoleChange]:
        logits = self.router.logits_single(self.role_featurizer(view))
        changes = action_to_changes(masked_role_argmax(logits, role_masks(view)), view)
        self.role_changes += len(changes)
        return changes


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint path names: the path itself, or a training run directory's
    best_model.zip. :class:`PrfaasInputError` naming the path if nothing is there or a
    directory is not a training run; the file's kind is its reader's to check."""
    p = Path(path)
    if not p.exists():
        raise PrfaasInputError("no checkpoint at this path", p)
    if p.is_dir():
        if not (p / RUN_JSON).is_file():
            raise PrfaasInputError(f"not a training run directory (no {RUN_JSON})", p)
        return p / MODEL_FILES["best"]
    return p


def load_learned_policy(path: str | Path, scenario: Any = None) -> LearnedPolicy:
    """A :class:`LearnedPolicy` (or, for a ``PrfaasRoles-v0`` checkpoint, a
    :class:`LearnedRoles`) from a checkpoint path.

    ``.onnx`` -> :class:`OnnxRouter` (manifest beside it); a directory with run.json ->
    its best_model.zip via SB3; a ``.zip`` -> SB3 with the run.json beside it. SB3 paths are
    **trusted input only: SB3 zips unpickle.** ``scenario`` (the scenario it will route) is
    kept as ``policy.scenario``; the observation scales always come from the checkpoint.
    Anything else, or a corrupt file, raises :class:`PrfaasInputError` naming the path.
    """
    p = checkpoint_file(path)
    if p.suffix == ".onnx":
        router: Router = OnnxRouter(p)
    elif p.suffix == ".zip":
        router = _sb3_router(p)
    else:
        raise PrfaasInputError("not a checkpoint: expected an exported .onnx file, a training "
                               "run directory or an SB3 .zip", p)
    policy: LearnedPolicy = (LearnedRoles(router, scenario=scenario)
                             if router.interface.env_id == ROLES_ENV_ID else
                             LearnedPolicy(router))
    policy.scenario = scenario
    return policy
