"""``prfaas train`` and ``prfaas export``: registered on the main CLI's subparsers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.train import ALGOS, DEVICES, ENV_IDS, ROUTER, SELECT_RULES, VEC_KINDS
from prfaas_gym.cli import SOURCE_OPTIONS
from prfaas_gym.roles_env import ROLES_ENV_ID


def cmd_train(args: argparse.Namespace) -> int:
    import os
    import shlex
    import sys

    from agents.train import train
    from prfaas_gym.cli import same_links, scenario_from_args
    from prfaas_gym.errors import PrfaasInputError

    warm_start = args.warm_start or "best"
    if args.algo == "dqn" and args.warm_start not in (None, "none"):
        print(f"note: --warm-start {args.warm_start} is ignored for dqn (the warm start clones "
              "into an actor-critic policy; dqn starts from scratch)", file=sys.stderr)
    if args.env == ROLES_ENV_ID and args.warm_start not in (None, "none"):
        print(f"note: --warm-start {args.warm_start} is ignored for {ROLES_ENV_ID} (no heuristic "
              "decides roles in its action space; a role policy starts from scratch)",
              file=sys.stderr)
    scenario = scenario_from_args(args)
    out = train(args.algo, scenario, args.timesteps, n_envs=args.n_envs,
                seed=args.seed, config=args.config, out=args.out, threads=args.threads,
                eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
                progress=not args.no_progress, device=args.device, vec=args.vec,
                warm_start=None if warm_start == "none" else warm_start,
                warm_start_episodes=args.warm_start_episodes,
                warm_start_epochs=args.warm_start_epochs,
                episode_requests=args.episode_requests,
                keep_checkpoints=args.keep_checkpoints, env_id=args.env,
                router=args.router, select=args.select)
    run = json.loads((out / "run.json").read_text())
    best = run.get("best_validation") or {}
    print(f"run directory: {out}")
    if "interrupted_at" in run:
        print(f"interrupted at {run['interrupted_at']:,} of {run['timesteps']:,} steps: "
              f"final_model.zip is the model so far"
              + (", best_model.zip the one validation kept" if best else ""))
    ratio = best.get("ratio_to_best_heuristic")  # None when the best heuristic served nothing
    ratio_text = "n/a" if ratio is None else f"{ratio:.3f}x"
    against = ("the router alone" if run.get("env_id") == ROLES_ENV_ID
               else "the best heuristic")
    warm = run.get("warm_start")
    start = (f"the starting point, the clone of {warm['teacher']}" if warm
             else "the starting point, an untrained network")
    if run.get("select") == "max":
        how = "the best of the run's validations, so optimistic"
    elif best.get("timesteps") == 0:
        how = f"{start}: no later model beat it significantly"
    else:
        how = "the last model to beat the one kept before it significantly; still a pick"
    print(f"best_model.zip: validation goodput {best.get('goodput_rps', float('nan')):.3f} "
          f"req/s ({ratio_text} {against}, {run['best_heuristic']['name']}) at "
          f"{best.get('timesteps')} steps ({how})")
    if best.get("timesteps") == 0 and not warm:
        print("note: best_model.zip is the untrained starting network: no trained model beat "
              "it on validation; train longer, give --eval-episodes more episodes, or "
              "export --model final", file=sys.stderr)
    same = " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}"
                    for k, v in vars(args).items() if k in SCENARIO_OPTIONS and v is not None)
    # a trace's eval split is replayed whole by every seed: on a fixed link they are one run
    try:
        seeds = 1 if scenario.is_trace and same_links(scenario, "eval", 5) else 5
    except PrfaasInputError as e:  # the run is whole; only its held-out split is unusable
        print(f"prfaas: note: the held-out eval split cannot be scored: {e}", file=sys.stderr)
    else:
        exe = os.path.relpath(sys.executable)  # .venv/bin/python from the repository root
        exe = sys.executable if exe.startswith("..") else exe
        print(f"to score it on the held-out eval split beside the heuristics: "
              f"{shlex.quote(exe)} benchmarks/heldout.py {same} --policy "
              f"{shlex.quote(str(out))} --seeds {seeds}")
    print(f"{run.get('steps_per_s', 0):.0f} env steps/s all in (set-up and validations "
          "included)")
    return 130 if "interrupted_at" in run else 0


def cmd_capacity(args: argparse.Namespace) -> int:
    """``prfaas capacity``: the rate each policy sustains at an SLO attainment goal."""
    import sys

    from agents.capacity import (
        CAPACITY_FILES,
        best_heuristic,
        check_goal,
        load_learned,
        paired_capacity,
        parse_scales,
        plot_attainment,
        points_csv,
        summarize_capacity,
        sweep,
    )
    from agents.compare import fmt_ci
    from prfaas_gym.cli import (
        _labels,
        _make_dir,
        _note_in_sample_tuning,
        _writable_dir,
        note_seeds_share_requests,
        policy_specs,
        refuse_results_over_inputs,
        results_dir_lock,
        scenario_from_args,
        write_atomically,
    )
    from prfaas_gym.errors import PrfaasInputError
    from prfaas_gym.metrics import json_safe

    goal = check_goal(args.goal)
    scales = parse_scales(args.scales)
    out_dir = _writable_dir(args.out) if args.out is not None else None
    names = policy_specs(args.policies)
    specs = dict(zip(_labels(names), names))
    if args.baseline is not None:
        given = args.baseline
        args.baseline = next((lab for lab, spec in specs.items() if given in (lab, spec)), None)
        if args.baseline is None:
            raise PrfaasInputError(f"{given!r} is not one of --policies "
                                   f"({', '.join(specs)})", "--baseline")
    sc = scenario_from_args(args)
    nominal = sc.mean_rate(args.split)
    rates = [nominal * x for x in scales]
    for scale, rate in ((scales[0], rates[0]), (scales[-1], rates[-1])):
        try:  # the grid's ends, so that a scale the workload cannot take fails here, named
            sc.workload(0, n=args.requests, rate=rate, split=args.split)
        except PrfaasInputError as e:
            sc.workload(0, n=args.requests, split=args.split)  # at its own rate: not --scales
            raise PrfaasInputError(f"{scale:g} x the split's {nominal:.4g} req/s = "
                                   f"{rate:.4g} req/s is more than the workload can take: "
                                   f"{e}", "--scales") from None
    learned = load_learned(sc, specs)  # a bad path's error before --out is created
    if out_dir is not None:
        refuse_results_over_inputs(out_dir, sc, names, CAPACITY_FILES)
    _note_in_sample_tuning(sc, names, args.split)
    note_seeds_share_requests(sc, args.split, args.requests, args.seeds)
    if out_dir is not None:
        _make_dir(out_dir)
    points = sweep(sc, specs, rates, args.seeds, split=args.split, n=args.requests,
                   progress=not args.no_progress, learned=learned)
    summary = summarize_capacity(points, goal)
    best = best_heuristic(summary, specs)
    baseline = args.baseline or best
    paired = paired_capacity(summary, baseline) if baseline is not None else {}

    from rich.console import Console
    from rich.table import Table

    title = (f"{sc.name}: rate sustained at SLO attainment >= {goal:g}, split {args.split}, "
             f"{args.seeds} seed{'s' if args.seeds > 1 else ''}, {len(rates)} rates "
             f"{rates[0]:.3g}-{rates[-1]:.3g} req/s ({scales[0]:g}-{scales[-1]:g}x the "
             f"split's {nominal:.3g} req/s)"
             + (f", --deployment {args.deployment}" if args.deployment else ""))
    table = Table(title=title, caption="per seed: where attainment first falls below the goal, "
                                       "interpolated between grid rates")
    for col in ("policy", "sustained req/s", "x scenario rate", "mean curve crosses",
                f"/ {baseline} (paired)" if baseline else "ratio"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for lab, s in summary.items():
        mean, half = s["sustained"]
        cross = s["mean_curve"]
        cross_text = {"above": f"> {cross.rate:.3g}", "below": f"< {cross.rate:.3g}"}.get(
            cross.censored or "", f"{cross.rate:.3g}")
        r = paired.get(lab)
        ratio = "-" if r is None or lab == baseline else (
            fmt_ci(*r["ratio"]) + ("" if len(r["ratios"]) == args.seeds
                                  else f" ({len(r['ratios'])} of {args.seeds} seeds)"))
        bounds = f" ({s['censored']} of {args.seeds} seeds a bound)" if s["censored"] else ""
        table.add_row(lab, fmt_ci(mean, half) + bounds,
                      fmt_ci(mean / nominal, half / nominal), cross_text, ratio)
    Console(width=160).print(table)
    for lab, s in summary.items():
        for kind, what in (("above", "met at every rate of the grid (a lower bound)"),
                           ("below", "missed at the lowest rate (an upper bound)")):
            k = sum(v.censored == kind for v in s["per_seed"].values())
            if k:
                print(f"note: {lab}: on {k} of {args.seeds} seeds the goal is {what}; widen "
                      "--scales", file=sys.stderr)
    if out_dir is not None:
        doc = {
            "scenario": sc.name, "goal": goal, "split": args.split,
            "seeds": list(range(args.seeds)), "requests": args.requests,
            "scenario_rate": nominal, "scales": scales, "rates": rates,
            "policies": specs, "best_heuristic": best, "baseline": baseline,
            "sources": sc.sources(),
            "results": {lab: {
                "sustained_rps": s["sustained"],
                "per_seed": {str(k): {"rate": v.rate, "censored": v.censored}
                             for k, v in s["per_seed"].items()},
                "censored_seeds": s["censored"],
                "mean_curve_crossing": {"rate": s["mean_curve"].rate,
                                        "censored": s["mean_curve"].censored},
                "attainment": [{"rate": r, "mean": m, "ci95": h}
                               for r, (m, h) in zip(s["rates"], s["curve"])],
                "ratio_to_baseline": (
                    None if lab not in paired else
                    {"mean_ci95": paired[lab]["ratio"],
                     "per_seed": {str(k): v for k, v in paired[lab]["ratios"].items()}}),
            } for lab, s in summary.items()},
        }
        with results_dir_lock(out_dir):
            write_atomically(out_dir / "capacity.csv", points_csv(points))
            write_atomically(out_dir / "capacity.json", json.dumps(
                json_safe(doc), indent=2, allow_nan=False) + "\n")
            plot_attainment(summary, goal, nominal, sc.name, out_dir / "attainment.png")
        for f in CAPACITY_FILES:
            print(f"wrote {out_dir / f}")
    return 0


#: what selects the scenario's requests, link and load, as compare takes it
SCENARIO_OPTIONS = ("scenario", *SOURCE_OPTIONS)


def add_agent_commands(sub: Any) -> None:
    from prfaas_gym.cli import add_trace_args, positive_float

    p = sub.add_parser("train", help="train a routing (or role-switching) policy with "
                                     "stable-baselines3")
    p.add_argument("--algo", choices=ALGOS, default="maskable_ppo")
    p.add_argument("--env", choices=ENV_IDS, default=ENV_IDS[0],
                   help=f"{ENV_IDS[0]} (default): the policy routes each request; "
                        f"{ROLES_ENV_ID}: it switches the local nodes' roles (every 60 s with the "
                        "shipped config) while --router routes")
    p.add_argument("--router", help=f"with --env {ROLES_ENV_ID}: the heuristic that routes "
                                    f"the requests (default {ROUTER})")
    p.add_argument("--scenario", required=True, help="scenario name or YAML path")
    add_trace_args(p, "at its own arrival times (add --rate to rescale); training, validation "
                      "and held-out runs take disjoint windows of it (by the scenario's "
                      "val_fraction and eval_fraction; 70/10/20%% by default)")
    p.add_argument("--rate", type=positive_float,
                   help="mean arrival rate (req/s): sets a synthetic workload's rate or "
                        "time-scales a recorded one (--trace's too); load randomisation "
                        "scales around it")
    p.add_argument("--timesteps", type=int, required=True,
                   help="env steps to train for (SB3 rounds up to whole rollouts)")
    p.add_argument("--n-envs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="hyperparameter YAML keyed by env id (default: shipped)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--vec", choices=VEC_KINDS, default="auto")
    p.add_argument("--eval-freq", type=int, default=20_000,
                   help="env steps between validations (default 20000)")
    p.add_argument("--eval-episodes", type=int, default=8,
                   help="validation episodes per validation (default 8; more confirm smaller "
                        "gains under --select significant)")
    p.add_argument("--select", choices=SELECT_RULES, default=SELECT_RULES[0],
                   help="how best_model.zip is picked from the validated models: "
                        "'significant' (the default) keeps the starting point (the warm "
                        "start's clone, or an untrained network) until a later model beats "
                        "the one kept with a paired 95%% interval over the validation "
                        "episodes (needs --eval-episodes >= 2); 'max' keeps the highest mean "
                        "validation goodput")
    p.add_argument("--warm-start",
                   help="clone this heuristic before RL ('best', the default: the best on "
                        "validation; 'none': start from scratch); actor-critic algorithms "
                        "only, dqn always starts from scratch")
    p.add_argument("--warm-start-episodes", type=int, default=96,
                   help="training episodes of the heuristic to clone")
    p.add_argument("--warm-start-epochs", type=int, default=100,
                   help="passes over those episodes when cloning")
    p.add_argument("--episode-requests", type=int,
                   help="requests per training/validation episode (default: the scenario's; "
                        f"{ROLES_ENV_ID}: 8 times that)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="also keep every validated model, as checkpoint_<steps>.zip beside "
                        "run.json (compare, simulate and heldout.py load it by path)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    from prfaas_gym.cli import _add_scenario_args, positive_int

    p = sub.add_parser("capacity", help="the arrival rate each policy sustains at an SLO "
                                        "attainment goal (DistServe's goodput), on the eval "
                                        "split unless --split says otherwise")
    _add_scenario_args(p)
    p.add_argument("--policies", required=True,
                   help="comma-separated heuristic names or checkpoint paths, as compare "
                        "takes them")
    p.add_argument("--goal", type=float, default=0.9,
                   help="the SLO attainment to sustain (default 0.9)")
    p.add_argument("--scales", default="0.6:1.6:0.1",
                   help="arrival rates to run, as multiples of the split's mean rate: "
                        "LO:HI:STEP (default 0.6:1.6:0.1) or a comma-separated list")
    p.add_argument("--baseline", help="the policy (a label or spec among --policies) the "
                                      "others are paired against (default: the heuristic "
                                      "that sustains the most)")
    p.set_defaults(split="eval")
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--out", help="directory for capacity.csv, capacity.json and "
                                 "attainment.png (created if absent)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_capacity)

    from agents.export import add_export_command

    add_export_command(sub)
