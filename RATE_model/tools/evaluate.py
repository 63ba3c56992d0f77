"""Evaluate any checkpoint of any environment on that environment's protocol.

    python -m RATE_model.tools.evaluate CKPT [--eval_episodes N] [--target_return A,B] [--eval_max_steps T]
        [<the env's evaluation flags, e.g. --eval_lengths 9,900 on T-Maze>] [--out FILE.jsonl]

The protocol is rebuilt from the flags the run recorded in the checkpoint (the env, its evaluation settings,
the training precision, the memory-noise setting), with the flags given here laid over them, so an unchanged
command reproduces the ``metrics`` of the run's ``results.json`` exactly. Prints one JSON line per target
return (the metrics without the per-episode list); ``--out`` writes them with their episodes as JSON lines.
``--help`` after a checkpoint lists that env's evaluation flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from RATE_model import envs
from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import MEMORY_NOISE, PRECISIONS, ConfigError, OneLineErrorParser, explicit_dests
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.precision import autocast, resolve_precision
from RATE_model.trainer import resolve_device

PROG = "python -m RATE_model.tools.evaluate"


def parser(env: Environment | None = None) -> argparse.ArgumentParser:
    """The command's flags; with ``env``, that env's evaluation flags too (defaults None: the run's values)."""
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False,
                           add_help=env is not None)
    p.add_argument("checkpoint", type=Path, help="a checkpoint (last.pt, best.pt) of any env")
    p.add_argument("--env", help="the environment (default: the checkpoint's)")
    p.add_argument("--out", type=Path, help="write every result with its episodes here (JSON lines)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--precision", choices=PRECISIONS, help="default: the precision the run trained and evaluated in")
    p.add_argument("--eval_memory_noise", choices=MEMORY_NOISE, help="default: the run's setting")
    p.add_argument("--val", action="store_true", help="play the validation seeds instead of the test seeds")
    if env is not None:
        env.add_eval_flags(p)
        p.set_defaults(**{a.dest: None for a in p._actions if a.dest not in ("help", "checkpoint", "val")})
    return p


def run_args(recorded: dict[str, Any], given: argparse.Namespace, explicit: set[str]) -> argparse.Namespace:
    """The run's recorded flags with the explicitly given ones laid over them."""
    args = argparse.Namespace(**recorded)
    for name, value in vars(given).items():
        if name in explicit or not hasattr(args, name):
            setattr(args, name, value)
    return args


def evaluate_checkpoint(model: RATE, env: Environment, args: argparse.Namespace, split: str, device: Any,
                        precision: str) -> dict[str, Any]:
    """``env.evaluate`` as training runs it: in the run's precision (``args.eval_memory_noise``: the ablation)."""
    with autocast(device, precision):
        return env.evaluate(model, args, split)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not [a for a in argv if not a.startswith("-")] and {"-h", "--help"} & set(argv):
        parser().print_help()  # no checkpoint yet: the common flags (after a checkpoint: its env's too)
        raise SystemExit(0)
    first, _ = parser().parse_known_args(argv)  # the checkpoint says which env's flags apply
    model, config = load_model(first.checkpoint)
    name = first.env or config.get("env")
    if not name:
        raise ConfigError(f"{first.checkpoint} records no env: pass --env NAME ({', '.join(envs.names())})")
    if config.get("env") and name != config["env"]:
        raise ConfigError(f"--env {name} but {first.checkpoint} was trained on {config['env']}")
    env = envs.get(name)
    p = parser(env)
    given = p.parse_args(argv)
    explicit = explicit_dests(p, argv)
    args = run_args(config.get("args") or {}, given, explicit)
    device = resolve_device(given.device or "cpu")
    model.to(device)
    precision = resolve_precision(given.precision or config.get("precision") or "fp32", device)
    args.eval_memory_noise = given.eval_memory_noise or getattr(args, "eval_memory_noise", None) or "none"
    split = "validation" if given.val else "test"
    targets = getattr(args, "target_return", None)
    if isinstance(targets, (int, float)):  # older runs recorded a single number
        targets = [float(targets)]
    one_at_a_time = targets is not None and len(targets) > 1 and not env.several_targets
    settings = [[t] for t in targets] if one_at_a_time else [targets]
    short, full = [], []
    with torch.no_grad():
        for target in settings:
            if target is not None:
                args.target_return = target
            env.check_eval_flags(args)  # each evaluation as its env takes it (one target at a time, or all)
            metrics = evaluate_checkpoint(model, env, args, split, device, precision)
            head = {"checkpoint": str(first.checkpoint), "env": name, "split": split,
                    **({"target_return": target[0]} if one_at_a_time else {})}
            full.append({**head, **metrics})
            short.append({**head, **{k: v for k, v in metrics.items() if k != "episodes"}})
            print(json.dumps(short[-1]), flush=True)
    if given.out:
        write_json_lines(given.out, full)
    return short


if __name__ == "__main__":
    run_main(main)
