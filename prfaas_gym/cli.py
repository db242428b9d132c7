"""The ``prfaas`` command line: plan, simulate, compare (and train/export, see agents)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prfaas_gym.data_paths import same_file
from prfaas_gym.errors import PrfaasInputError

if TYPE_CHECKING:
    from prfaas_gym.scenario import Scenario


def _number_type(convert: Callable[[str], Any], ok: Callable[[Any], bool], rule: str,
                 kind: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(s)``, refused unless ``ok`` ("must be ``rule``")."""

    def parse(s: str) -> Any:
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {v}")
        return v

    return parse


# argparse types, shared with the benchmarks' command lines
positive_int = _number_type(int, lambda v: v >= 1, ">= 1", "an integer")
non_negative_int = _number_type(int, lambda v: v >= 0, ">= 0", "an integer")
positive_float = _number_type(float, lambda v: v > 0 and math.isfinite(v),
                              "a finite number > 0", "a number")
non_negative_float = _number_type(float, lambda v: v >= 0 and math.isfinite(v),
                                  "a finite number >= 0", "a number")


def bandwidth_level(s: str) -> float | str:
    """``--bandwidth-gbps``: ``recorded`` or a finite mean in Gbit/s > 0."""
    if s == "recorded":
        return s
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'recorded': {s!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {v}")
    from prfaas_gym.profile import MAX_GBPS

    if v > MAX_GBPS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_GBPS:g} Gbit/s, got {v:g}")
    return v


def run_script(main: Callable[[], int | None], prog: str | None = None) -> int:
    """Run ``main()`` and return its exit status, turning bad input (and a file that cannot
    be read or written) into one line on stderr and status 2 instead of a traceback: the
    ``prfaas`` command's and the benchmarks' contract."""
    prog = prog or Path(sys.argv[0]).name
    try:
        return int(main() or 0)
    except PrfaasInputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        what = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {what}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _writable_file(path: str) -> Path:
    """``--out`` for a file, checked before the run: named, not a directory, in a writable
    directory, and not a read-only file (:func:`_refuse_inputs` checks it against the run's
    inputs once they are known)."""
    if not path:
        raise PrfaasInputError("--out is empty; give a file name")
    p = Path(path)
    if p.is_dir():
        raise PrfaasInputError("--out is a directory; give a file name", p)
    if not p.parent.is_dir():
        raise PrfaasInputError(f"--out: {p.parent} is not an existing directory", p)
    if p.exists() and not os.access(p, os.W_OK):
        raise PrfaasInputError("--out is a read-only file", p)
    if not p.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise PrfaasInputError(f"--out: cannot write in {p.parent} (permission denied)", p)
    return p


def _refuse_replacing_a_non_result(p: Path) -> None:
    """An existing ``--out`` of ``simulate`` that is a regular file (a device or a pipe is
    written through, never replaced) is replaced only if it holds an earlier ``simulate``
    result: a mistyped name must not overwrite a checkpoint, a run's records, a plot or a
    trace."""
    target = p.resolve()
    if not target.is_file():
        return
    try:
        with open(target, "rb") as f:
            head = f.read(_RESULT_PEEK_BYTES + 1)
        old = json.loads(head) if len(head) <= _RESULT_PEEK_BYTES else None
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        old = None
    if not (isinstance(old, dict) and _SIMULATE_KEYS <= old.keys()):
        raise PrfaasInputError("--out exists and is not an earlier simulate result; the "
                               "result would replace it: give another name", p)


#: what every ``simulate`` result holds, and how much of a file is read to find out
_SIMULATE_KEYS = frozenset({"scenario", "policy", "seed", "split", "goodput_rps", "slo_met"})
_RESULT_PEEK_BYTES = 1 << 20


def _run_inputs(sc: Any, policy_specs: Sequence[str]) -> list[Path]:
    """What a run of scenario ``sc`` with these ``--policy`` specs reads, as loaded: the
    scenario file, its request trace, its bandwidth trace or folder, and each checkpoint's
    files (a heuristic name reads nothing, even where a folder has that name)."""
    from agents.registry import HEURISTICS, TUNED_THRESHOLD
    from prfaas_gym.scenario import scenario_dir

    where = Path(sc.where)
    files = [where if sc.base_dir is not None else Path(str(scenario_dir())) / f"{where}.yaml"]
    src = sc.sources()
    if "trace" in src["workload"]:
        files.append(Path(src["workload"]["trace"]))
    if isinstance(src["bandwidth"], dict) and "path" in src["bandwidth"]:
        files.append(Path(src["bandwidth"]["path"]))
    for spec in policy_specs:
        if spec not in HEURISTICS and spec != TUNED_THRESHOLD:
            files += _policy_files(spec)
    return files


def _policy_files(policy: str) -> list[Path]:
    """The files a checkpoint path reads: the file, an ONNX file's manifest, and a run
    directory's records and models (a ``.zip``'s, where ``run.json`` lies beside it)."""
    p = Path(policy)
    if p.suffix == ".onnx":
        from agents.run_dir import manifest_path_for

        return [p, manifest_path_for(p)]
    run = p if p.is_dir() else p.parent if (p.parent / "run.json").exists() else None
    if run is None:
        return [p]
    return [p, *(run / n for n in ("run.json", "config.yaml", "eval.json")),
            *run.glob("*.zip")]


def _refuse_inputs(targets: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse an output path that is one of the run's ``inputs`` (a file), or lies in an
    input folder (a bandwidth ``trace_dir``, whose every file is read as a trace)."""
    for target in targets:
        for src in inputs:
            if src.is_dir() and not (src / "run.json").exists():
                inside = src.resolve() in target.resolve().parents
            else:
                inside = target.exists() and same_file(target, src)
            if inside:
                raise PrfaasInputError(f"--out would replace an input of this run ({src}); "
                                       "give another name", target)


def refuse_results_over_inputs(out_dir: Path, sc: Any, policy_specs: Sequence[str],
                               files: Sequence[str] | None = None,
                               writes: Sequence[str] | None = None) -> None:
    """Refuse a comparison's ``--out`` folder where its result files (``files``; default
    :data:`agents.compare.RESULT_FILES`) would replace or remove what the run reads, or
    where one it writes (``writes``; default ``files``) is a directory (it could not be
    written once the run is done)."""
    if files is None:
        from agents.compare import RESULT_FILES

        files = RESULT_FILES
    for f in files if writes is None else writes:
        if (out_dir / f).is_dir():
            raise PrfaasInputError(f"--out: {f} there is a directory, where this run would "
                                   "write its result file; remove it or give another --out",
                                   out_dir)
    _refuse_inputs([out_dir / f for f in files], _run_inputs(sc, policy_specs))


def policy_specs(text: str) -> list[str]:
    """``--policies``: its comma-separated heuristic names and checkpoint paths, stripped;
    :class:`PrfaasInputError` when it names none."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise PrfaasInputError("--policies is empty")
    return names


def _writable_dir(path: str) -> Path:
    """``--out`` for a directory: refused at once if it is empty or a file."""
    if not path:
        raise PrfaasInputError("--out is empty; give a directory")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PrfaasInputError("--out exists and is not a directory", p)
    return p


def _make_dir(p: Path) -> None:
    """Create ``--out`` (if absent) once every input is checked and before the run, so that
    a path that cannot be a directory fails before the work, and bad input leaves none."""
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrfaasInputError(f"--out: cannot create the directory ({e.strerror or e})",
                               p) from None


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to. When the block ends without an
    error, it replaces ``path`` (a symlink's target, so that the link stays a link) keeping
    an earlier file's permissions; otherwise any earlier file stays as it was. A device or
    FIFO (``/dev/stdout``) is yielded itself, to be written to directly."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.exists() and not target.is_file():
        yield target
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if target.exists():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def results_dir_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the directory ``out_dir`` while a comparison
    replaces its result files, so that two comparisons writing to one directory leave one
    whole set, not one's tables beside the other's plots. Waits (saying so on stderr) while
    another holds it. A no-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX everywhere this project runs
        yield
        return
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"prfaas: note: waiting for another comparison to finish writing to "
                  f"{out_dir}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader sees it half-written
    (:func:`replacing`). :class:`PrfaasInputError` (naming ``path``) when it cannot be
    written."""
    try:
        with replacing(path) as tmp:
            tmp.write_text(text)
    except OSError as e:
        raise PrfaasInputError(f"cannot write the result ({e.strerror or e})", path) from None


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """``--scenario``, with ``--trace`` replacing its workload, ``--bandwidth-trace`` its
    link (:func:`add_trace_args`) and ``--rate`` its mean rate; a format or level given
    without its trace is refused."""
    from prfaas_gym.scenario import load_scenario

    trace, bw = getattr(args, "trace", None), getattr(args, "bandwidth_trace", None)
    for option, needs in (("trace_format", trace), ("bandwidth_format", bw),
                          ("bandwidth_gbps", bw)):
        if getattr(args, option, None) is not None and not needs:
            given = "--trace" if option == "trace_format" else "--bandwidth-trace"
            raise PrfaasInputError(f"--{option.replace('_', '-')} applies to {given}, "
                                   "which is not given")
    sc = load_scenario(args.scenario)
    if trace:
        sc = sc.with_trace(trace, args.trace_format)
    if bw:
        level = args.bandwidth_gbps
        sc = sc.with_bandwidth_trace(bw, args.bandwidth_format,
                                     scale_to_gbps=level if isinstance(level, float) else None,
                                     as_recorded=level == "recorded")
    if getattr(args, "rate", None) is not None:
        sc = sc.with_rate(args.rate)  # so the plan, too, is for the load the runs play
    if getattr(args, "deployment", None) is not None:
        sc = sc.with_deployment(**parse_deployment(args.deployment))
    return sc


def _note_short_trace(sc: Any, args: argparse.Namespace) -> None:
    """Say on stderr when ``--requests`` asks for more requests than the trace split has
    (the run replays all of them)."""
    if args.requests and sc.is_trace:
        have = len(sc.split_trace(args.split))
        if args.requests > have:
            print(f"prfaas: note: --requests {args.requests}, but the {args.split} split of "
                  f"the trace has {have}; replaying all {have}", file=sys.stderr)


def same_links(sc: Scenario, split: str, seeds: int) -> bool:
    """Whether runs of ``split`` with seeds ``0..seeds-1`` all get the same link (a constant
    one, say; not one whose mean, offset, drops or trace a seed draws)."""
    import numpy as np

    first = sc.bandwidth(0, split)
    constant = first.bytes_per_s.min() == first.bytes_per_s.max()
    for seed in range(1, max(seeds, 2)):
        tr = sc.bandwidth(seed, split)
        if tr.rtt_s != first.rtt_s:
            return False
        if constant:  # its times and offset change nothing
            if not (tr.bytes_per_s == first.bytes_per_s[0]).all():
                return False
        elif not (np.array_equal(tr.times_s, first.times_s)
                  and np.array_equal(tr.bytes_per_s, first.bytes_per_s)
                  and (tr.period_s, tr.offset_s) == (first.period_s, first.offset_s)):
            return False
    return True


def note_seeds_share_requests(sc: Scenario, split: str, requests: int | None,
                              seeds: int) -> None:
    """Say on stderr when every seed of a comparison replays the same requests of a trace:
    the whole split, or with ``--split all`` its first requests. The seeds then differ only
    in their link, and where the link is the same for every seed (:func:`same_links`) not at
    all, so a 95% interval of 0 says nothing about the spread of a workload."""
    if seeds < 2 or not sc.is_trace:
        return
    have = len(sc.split_trace(split))
    if split != "all" and requests is not None and requests < have:
        return  # each seed draws its own window
    fixed = same_links(sc, split, seeds)
    if split == "all":
        what = "the trace from its start, as --split all does"
        fix = "use --split eval (held out) with --requests below its size"
    else:
        what, fix = f"the whole {split} split, {have} requests", "give --requests below that"
    print(f"prfaas: note: every seed replays the same requests ({what}), so the seeds differ "
          "only in their link" + (", and this link is fixed: the runs are identical" if fixed
                                  else "") + f"; {fix} for a window per seed", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> int:
    import numpy as np

    from prfaas_gym import planner
    from prfaas_gym.profile import load_profile

    if (args.trace or args.trace_format or args.rate or args.deployment is not None) \
            and not args.scenario:
        given = ("--trace" if args.trace else "--trace-format" if args.trace_format
                 else "--rate" if args.rate else "--deployment")
        raise PrfaasInputError(f"{given} needs --scenario (the deployment to plan for); "
                               "--preset plans for the paper's workload")
    if args.scenario:
        sc = scenario_from_args(args)
        w = sc.workload(0, n=20000, split="train" if sc.is_trace else "all")
        lengths = planner.incremental_lengths(sc.profile, w)
        mean_out = float(np.mean([r.output_tokens for r in w.requests]))
        plans = planner.plan(sc.profile, lengths, None, mean_out)
        where = f"scenario {sc.name}"
        mean_prompt = float(np.mean([r.prompt_tokens for r in w.requests]))
        lengths_note = (f"L: incremental prefill lengths of {len(lengths):,} requests, mean "
                        f"{lengths.mean():,.0f} tokens (prompts {mean_prompt:,.0f}; the prefix "
                        "a cache of the deployment's capacity would reuse is not recomputed)")
        dep = sc.profile.deployment
        source = ("unused" if not (dep.n_prefill and dep.n_prfaas)  # nothing to choose
                  else "scenario" if isinstance(sc.threshold_spec, (int, float))
                  else "planner")
        as_deployed = {"n_prfaas": dep.n_prfaas, "n_prefill": dep.n_prefill,
                       "n_decode": dep.n_decode,
                       "threshold_tokens": None if source == "unused" else sc.threshold_tokens,
                       "threshold_from": source, "lambda_max": sc.planned_lambda}
    else:
        profile = load_profile(args.preset)
        plans = planner.plan_for_paper(profile)
        where = f"preset {args.preset} with the paper's workload"
        lengths_note = "L: the paper's prompt lengths (no prefix reuse)"
    out: dict[str, Any] = {k: v.to_dict() for k, v in plans.items()}
    if args.scenario:
        out["as_deployed"] = as_deployed
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"Steady-state plan (paper Eqs. 3-8), {where}")
    print(lengths_note)
    print(f"{'config':12s} {'Λ_max':>7s} {'t':>8s} {'N_prfaas':>8s} {'N_p':>4s} {'N_d':>4s} "
          f"{'TTFT mean':>9s} {'TTFT P90':>9s}  bottleneck")
    for k, v in plans.items():
        v = v.to_dict()
        t = f"{v['threshold_tokens']:.0f}" if v["threshold_tokens"] is not None else "-"
        print(f"{k:12s} {v['lambda_max']:7.3f} {t:>8s} {v['n_prfaas']:8d} {v['n_prefill']:4d} "
              f"{v['n_decode']:4d} {v['ttft_mean_s']:9.2f} {v['ttft_p90_s']:9.2f}  "
              f"{v.get('bottleneck', '')}")
    if args.scenario:
        d = as_deployed
        head = f"as deployed (N_prfaas {d['n_prfaas']}, N_p {d['n_prefill']}, N_d {d['n_decode']}"
        if d["threshold_from"] == "unused":
            print(f"{head}): no local prefill instance, so every request prefills remotely and "
                  f"no t is used; Λ_max {d['lambda_max']:.3f}")
        else:
            how = ("set in the scenario" if d["threshold_from"] == "scenario" else
                   "planned on 4,000 of the scenario's requests, a trace's from its train "
                   "split" + (f", at {args.rate:g} req/s" if args.rate else ""))
            print(f"{head}): t = {d['threshold_tokens']:,.0f} tokens ({how}), Λ_max "
                  f"{d['lambda_max']:.3f}: the t that prfaas-threshold and prfaas-dual use in "
                  "simulate, compare and train (the table above also chooses the local split)")
    return 0


def _note_in_sample_tuning(sc: Any, specs: list[str], split: str) -> None:
    """Say on stderr when ``prfaas-threshold-tuned`` is scored on the split it was tuned on."""
    from agents.registry import TUNED_THRESHOLD
    from agents.tuning import REQUESTS, SEEDS

    if TUNED_THRESHOLD in specs and split in ("all", "train"):
        part = ("the train part of the trace" if sc.is_trace
                else "the same synthetic seeds")
        print(f"prfaas: note: {TUNED_THRESHOLD} was tuned on the train split (seeds "
              f"{min(SEEDS)}-{max(SEEDS)}, {REQUESTS} requests each); --split {split} "
              f"includes {part}, so its row is partly "
              "in-sample: use --split eval for a held-out comparison", file=sys.stderr)


def cmd_simulate(args: argparse.Namespace) -> int:
    from agents.compare import run_policy
    from agents.registry import policy_factory
    from prfaas_gym.metrics import json_safe

    out_path = _writable_file(args.out) if args.out is not None else None
    sc = scenario_from_args(args)
    policy = policy_factory(args.policy, sc, rate=args.rate)()  # a bad path's own error first
    if out_path is not None:
        _refuse_inputs([out_path], _run_inputs(sc, [args.policy]))
        _refuse_replacing_a_non_result(out_path)
    _note_in_sample_tuning(sc, [args.policy], args.split)
    _note_short_trace(sc, args)
    result, _ = run_policy(sc, policy, args.seed, split=args.split, n=args.requests, rate=args.rate)
    out = {"scenario": sc.name, "policy": args.policy, "seed": args.seed,
           "split": args.split, "rate": args.rate, "sources": sc.sources(),
           "threshold_tokens": getattr(policy, "threshold_tokens", None), **result}
    text = json.dumps(json_safe(out), indent=2, allow_nan=False)
    if out_path is not None:
        write_atomically(out_path, text)
    if args.json:
        print(text)
    else:
        from agents.compare import flat_metrics, print_table, seed_stat

        m = flat_metrics(result)
        print_table({args.policy: {k: seed_stat([v]) for k, v in m.items()}},
                    title=f"{sc.name}, seed {args.seed}, {result['requests']} requests")
        print(f"completed {result['completed']}, rejected {result['rejected']}, failed "
              f"{result['failed']}, in flight {result['in_flight']}; "
              f"{result['sim_requests_per_s']:.0f} simulated requests per wall-clock second")
        link = result["link"]
        print(f"link: {link['trace']}, mean {link['mean_gbps']:.4g} Gbit/s, RTT "
              f"{link['rtt_s'] * 1e3:.3g} ms")
    return 0


def _label(spec: str) -> str:
    """A short table label: a checkpoint path becomes its file (or run directory) name."""
    p = Path(spec)
    return p.name if (len(p.parts) > 1 or p.suffix) and p.exists() else spec


def _labels(specs: list[str]) -> list[str]:
    """Table labels for ``specs``: short where that is unambiguous, else the spec as given.
    A spec listed twice is an error (it would be one row)."""
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise PrfaasInputError(f"--policies lists {', '.join(repeated)} more than once")
    short = [_label(s) for s in specs]
    return [lab if short.count(lab) == 1 else s for s, lab in zip(specs, short)]


def cmd_compare(args: argparse.Namespace) -> int:
    from agents.compare import COMPARISON_FILES, compare, print_table, summarize, write_outputs
    from agents.registry import THRESHOLD_POLICIES, TUNED_THRESHOLD, policy_factory

    out_dir = _writable_dir(args.out) if args.out is not None else None
    names = policy_specs(args.policies)
    labels = _labels(names)
    sc = scenario_from_args(args)
    factories = {lab: policy_factory(n, sc, rate=args.rate) for lab, n in zip(labels, names)}
    if out_dir is not None:
        refuse_results_over_inputs(out_dir, sc, names, writes=COMPARISON_FILES)
    _note_in_sample_tuning(sc, names, args.split)
    _note_short_trace(sc, args)
    note_seeds_share_requests(sc, args.split, args.requests, args.seeds)
    if out_dir is not None:
        _make_dir(out_dir)
    records = compare(sc, factories, args.seeds, split=args.split, n=args.requests,
                      rate=args.rate, progress=not args.no_progress)
    summary = summarize(records)
    title = (f"{sc.name}: " + (f"{args.seeds} seeds, split {args.split}, mean ± 95% CI"
                               if args.seeds > 1 else f"1 seed, split {args.split}")
             + (f", rate {args.rate} req/s" if args.rate else "")
             + (f", --deployment {args.deployment}" if args.deployment else ""))
    print_table(summary, title=title)
    links = sorted({(r.result["link"]["trace"], r.result["link"]["mean_gbps"],
                     r.result["link"]["rtt_s"]) for r in records})
    for name, mean, rtt in links[:3]:
        print(f"link: {name}, mean {mean:.4g} Gbit/s, RTT {rtt * 1e3:.3g} ms")
    if len(links) > 3:
        print(f"link: ... {len(links)} in all (one per seed); runs.csv and summary.json list "
              "each run's")
    if out_dir is not None:
        uses_threshold = any(n in THRESHOLD_POLICIES for n in names)
        meta = {"scenario": sc.name, "policies": list(factories), "policy_specs": names,
                "seeds": list(range(args.seeds)), "split": args.split, "rate": args.rate,
                "requests": args.requests, "sources": sc.sources(),
                "threshold_tokens": sc.threshold_tokens if uses_threshold else None}
        if TUNED_THRESHOLD in names:
            meta["tuned_threshold_tokens"] = factories[labels[names.index(
                TUNED_THRESHOLD)]]().threshold_tokens
        with results_dir_lock(out_dir):
            written = write_outputs(records, out_dir, meta)
        for p in written:
            print(f"wrote {p}")
    return 0


def add_trace_args(p: argparse.ArgumentParser, timing: str) -> None:
    """``--trace``, ``--bandwidth-trace`` and their formats and level, which
    :func:`scenario_from_args` applies to ``--scenario``; ``timing`` ends ``--trace``'s help
    (how the trace's arrival times are used)."""
    p.add_argument("--trace", help="replay this request trace instead of the scenario's "
                                   f"workload, {timing}")
    p.add_argument("--trace-format", choices=["mooncake", "azure", "vidur", "burstgpt"])
    p.add_argument("--bandwidth-trace",
                   help="drive the link with this bandwidth trace: its shape, rescaled to "
                        "the scenario's link.capacity_gbps (see --bandwidth-gbps); a "
                        "Pantheon file's RTT replaces the scenario's")
    p.add_argument("--bandwidth-format", choices=["pensieve", "pantheon", "csv"])
    p.add_argument("--bandwidth-gbps", type=bandwidth_level, metavar="GBPS|recorded",
                   help="rescale --bandwidth-trace to this mean (Gbit/s), or 'recorded' to "
                        "keep the file's own capacities")
    p.add_argument("--deployment", metavar="KEY=N[,KEY=N]",
                   help="replace the scenario's instance counts, any of n_prfaas, n_prefill "
                        "and n_decode (e.g. n_prefill=4,n_decode=4: the split `prfaas plan` "
                        "chooses for bursty-fluctuating); a planned threshold follows")


#: the options that replace a scenario's requests, link and load (:func:`add_trace_args` and
#: ``--rate``), as argparse names them
SOURCE_OPTIONS = ("trace", "trace_format", "bandwidth_trace", "bandwidth_format",
                  "bandwidth_gbps", "rate", "deployment")


def parse_deployment(text: str) -> dict[str, int]:
    """``--deployment``'s ``KEY=N[,KEY=N]`` as a dict; a malformed item is refused
    (:class:`PrfaasInputError`) naming it. The keys and counts are checked by
    :meth:`Scenario.with_deployment`."""
    out: dict[str, int] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        key, value = key.strip(), value.strip()
        n = int(value) if re.fullmatch(r"[0-9]+", value) else None  # int() takes "+4", "1_0"
        if not eq or not key or n is None:
            raise PrfaasInputError(f"expected KEY=N[,KEY=N] (e.g. n_prefill=4,n_decode=4), "
                                   f"got {item!r}", "--deployment")
        if key in out:
            raise PrfaasInputError(f"{key} is given twice", "--deployment")
        out[key] = n
    return out


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", required=True, help="scenario name or YAML path")
    add_trace_args(p, "at its own arrival times (the scenario's rate: applies to its own "
                      "trace only; add --rate to rescale)")
    p.add_argument("--rate", type=positive_float,
                   help="mean arrival rate (req/s): sets a synthetic workload's rate or "
                        "time-scales a recorded one")
    p.add_argument("--requests", type=positive_int, help="number of requests")
    p.add_argument("--split", choices=["all", "train", "val", "eval"], default="all",
                   help="trace split: train, val (validation during training) and eval "
                        "(held out) are disjoint windows of a trace's span (70/10/20%% by "
                        "default); a synthetic workload's val and eval use offset seeds. "
                        "The link is split too: generated links by seed, a recorded one "
                        "by time (a folder by file when each split's share is a whole file)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="prfaas", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="the paper's steady-state planner (Eqs. 3-8)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default="paper-case-study", help="profile preset or YAML path")
    g.add_argument("--scenario", help="plan for a scenario's deployment and workload")
    p.add_argument("--trace", help="with --scenario: plan for this request trace's lengths")
    p.add_argument("--trace-format", choices=["mooncake", "azure", "vidur", "burstgpt"])
    p.add_argument("--rate", type=positive_float,
                   help="with --scenario: plan for this mean arrival rate (req/s), as "
                        "simulate, compare and train --rate do (prefix reuse, and so L, "
                        "depends on the load)")
    p.add_argument("--deployment", metavar="KEY=N[,KEY=N]",
                   help="with --scenario: the 'as deployed' line for these instance counts "
                        "(n_prfaas, n_prefill, n_decode), as simulate, compare and train take "
                        "them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("simulate", help="run one policy on one scenario and print the result")
    _add_scenario_args(p)
    p.add_argument("--policy", required=True,
                   help="heuristic name (see compare --help) or checkpoint path")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", help="also write the result JSON here (not over an input of "
                                 "the run; an existing file only if it holds an earlier result)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compare", help="run several policies on identical traces and seeds")
    _add_scenario_args(p)
    p.add_argument("--policies", required=True,
                   help="comma-separated heuristic names (local-only, remote-all, "
                        "prfaas-threshold, prfaas-threshold-tuned, prfaas-dual, conductor, "
                        "least-loaded, random) or checkpoint paths (.onnx, run dir, .zip)")
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--out", help="directory for runs.csv, summary.json and plots (created if "
                                 "absent; an earlier comparison's files there, heldout.json "
                                 "included, are replaced)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_compare)

    try:
        from agents.cli import add_agent_commands
    except ImportError:  # pragma: no cover - agents is part of this distribution
        add_agent_commands = None
    if add_agent_commands is not None:
        add_agent_commands(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_script(lambda: args.func(args), "prfaas")


if __name__ == "__main__":
    sys.exit(main())
