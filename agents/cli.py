"""``prfaas train`` and ``prfaas export``: registered on the main CLI's subparsers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.train import ALGOS, ENV_IDS, ROUTER
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
                router=args.router)
    run = json.loads((out / "run.json").read_text())
    best = run.get("best_validation") or {}
    print(f"run directory: {out}")
    if "interrupted_at" in run:
        print(f"interrupted at {run['interrupted_at']:,} of {run['timesteps']:,} steps: "
              f"final_model.zip is the model so far"
              + (", best_model.zip the best validated" if best else ""))
    ratio = best.get("ratio_to_best_heuristic")  # None when the best heuristic served nothing
    ratio_text = "n/a" if ratio is None else f"{ratio:.3f}x"
    against = ("the router alone" if run.get("env_id") == ROLES_ENV_ID
               else "the best heuristic")
    print(f"best validation goodput {best.get('goodput_rps', float('nan')):.3f} req/s "
          f"({ratio_text} {against}, {run['best_heuristic']['name']}) at "
          f"{best.get('timesteps')} steps; the best of the run's validations, so optimistic")
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
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--vec", choices=["auto", "subproc", "dummy"], default="auto")
    p.add_argument("--eval-freq", type=int, default=20_000, help="env steps between validations")
    p.add_argument("--eval-episodes", type=int, default=8)
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

    from agents.export import add_export_command

    add_export_command(sub)
