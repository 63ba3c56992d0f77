"""Pretrain an environment's image encoder by behaviour cloning from single frames, for training with
``--init_encoder FILE --freeze_encoder``.

    python -m RATE_model.tools.pretrain_encoder --env NAME [<the train script's data flags>] [--frames G,...]
        [--eval_frames G,...] [--curriculum G:STEPS] [--heldout_episodes N] [--heldout_dir DIR] [--d_model D]
        [--steps N] [--pixel_norm] [--save_encoder FILE] [--out FILE.jsonl]

The frames are every step of the training data's episodes, read as the env's train script reads them (its
data flags and config.yaml defaults, ``RATE_model.envs.Environment.frames``; the flags that only cut episodes
into training windows are taken and change nothing); the last ``--heldout_episodes`` episodes are held out, or,
with ``--heldout_dir``, the first ``--heldout_episodes`` episodes of that folder are. The network is the sequence
models' own observation encoder at ``--d_model`` (default: the train script's) and a small head
(``RATE_model.pretrain``); it prints one JSON line per ``--eval_every`` steps: training loss, held-out loss and
action accuracy, and the accuracy of always taking the most frequent action (a frame-blind floor). The encoder
is saved (``--save_encoder``) with the flags and the last evaluation. ``--help`` after ``--env NAME`` lists that
env's data flags.

What the env adds: Atari's input is its 4-frame stack (its observations). ViZDoom gives the pillar's colour
beside each frame (a sequence model has it from memory) and names groups of steps, for ``--frames`` (train on
the steps in all of them), ``--eval_frames`` (evaluate on those; default: as ``--frames``) and ``--curriculum``:
``colour_dependent`` (the expert would act differently had the pillar the other colour), ``after_pickup`` (those
right after a right item was picked up, where the expert chooses its next item), ``red`` and ``green`` (the
pillar); its held-out lines add ``preference``, for the expert's action over the other-colour one (0.5: the
colour is not used), overall and per group.

    python -m RATE_model.tools.pretrain_encoder --env atari --game Breakout --save_encoder runs/atari/Breakout_enc.pt
    python -m RATE_model.tools.pretrain_encoder --env vizdoom --frames after_pickup --eval_frames colour_dependent \\
        --max_episodes 3000 --heldout_dir VizDoom/VizDoom_data/heldout --heldout_episodes 500 --d_model 64 \\
        --steps 1000 --eval_every 100 --save_encoder runs/visible/encoders/after_pickup.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from RATE_model import envs
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import PRECISIONS, ConfigError, OneLineErrorParser, check_positive
from RATE_model.encoders import build_encoders, save_encoder
from RATE_model.envs import Environment, set_train_defaults
from RATE_model.precision import describe_precision, resolve_precision
from RATE_model.pretrain import frame_bc
from RATE_model.trainer import resolve_device

PROG = "python -m RATE_model.tools.pretrain_encoder"
TOOL = "RATE_model.tools.pretrain_encoder"  # the encoder file's info["script"]


def group_names(text: str) -> list[str]:
    """argparse type: group names separated by commas."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected group names separated by commas, got {text!r}")
    return names


def curriculum(text: str) -> tuple[list[str], int]:
    """argparse type: ``G[,G...]:STEPS``, e.g. ``red:400``."""
    names, _, steps = text.rpartition(":")
    try:
        n = int(steps)
    except ValueError:
        n = -1
    if not names or n < 1:
        raise argparse.ArgumentTypeError(f"expected GROUPS:STEPS with STEPS >= 1, e.g. red:400, got {text!r}")
    return group_names(names), n


def parser(env: Environment | None = None, help: bool = True) -> OneLineErrorParser:
    """The command's flags; with ``env``, its data flags too, their defaults the train script's."""
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False, add_help=help)
    p.add_argument("--env", required=help, help=f"the environment: {', '.join(envs.names()) or 'none known'}")
    groups = f" ({env.name}'s: {', '.join(env.frame_groups) or 'none'})" if env is not None else ""
    p.add_argument("--frames", type=group_names, default=[],
                   help=f"train on the steps in every one of these groups of the env{groups} (default: every step)")
    p.add_argument("--eval_frames", type=group_names, help="evaluate on the held-out steps in every one of these "
                                                           "groups (default: as --frames)")
    p.add_argument("--curriculum", type=curriculum, metavar="GROUPS:STEPS",
                   help="the first STEPS optimizer steps train only on the frames also in these groups, e.g. red:400")
    p.add_argument("--heldout_episodes", type=int, default=10,
                   help="the last N episodes of the data are held out (with --heldout_dir: its first N)")
    p.add_argument("--heldout_dir", type=Path, help="hold out the first --heldout_episodes episodes of this folder "
                                                    "(for envs whose data are folders of episode files)")
    p.add_argument("--d_model", type=int, help="encoder output width (default: the train script's d_model)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval_every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 autocast on a CPU with native bf16, else fp32")
    p.add_argument("--pixel_norm", action="store_true",
                   help="standardise each pixel by its mean and spread in the training frames (fitted once, saved "
                        "with the encoder): for screens whose moving objects are a few pixels of a constant "
                        "background, e.g. Pong")
    p.add_argument("--save_encoder", type=Path, help="write the trained encoder's weights here, for --init_encoder "
                                                      "(without it: a measurement only)")
    p.add_argument("--out", type=Path, help="also write the evaluations here, one JSON line each")
    if env is not None:
        env.add_data_flags(p)
        defaults = set_train_defaults(p, env, env.add_data_flags)
        p.set_defaults(d_model=defaults.get("d_model"))
    return p


def check_args(env: Environment, args: argparse.Namespace) -> None:
    """Flag values that cannot work (before any data is read)."""
    check_positive(args, ("d_model", "steps", "batch_size", "eval_every"))
    if args.d_model is None:
        raise ConfigError(f"--d_model: {env.name}'s train script has no default; give one")
    resolve_device(args.device)
    if args.heldout_episodes < 0:
        raise ConfigError(f"--heldout_episodes must be >= 0, got {args.heldout_episodes}")
    if args.heldout_dir is not None and args.heldout_episodes < 1:
        raise ConfigError(f"--heldout_episodes must be >= 1 with --heldout_dir, got {args.heldout_episodes}")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {args.lr}")
    for flag, names in (("--frames", args.frames), ("--eval_frames", args.eval_frames or []),
                        ("--curriculum", args.curriculum[0] if args.curriculum else [])):
        bad = [n for n in names if n not in env.frame_groups]
        if bad:
            raise ConfigError(f"{flag}: {env.name} has no frame group {bad[0]!r}; its groups: "
                              f"{', '.join(env.frame_groups) or 'none'}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    first, _ = parser(help=False).parse_known_args(argv)  # the env says which data flags apply
    env = envs.get(first.env) if first.env else None
    args = parser(env).parse_args(argv)
    assert env is not None  # parse_args requires --env
    check_args(env, args)
    heldout = None  # read first: an env without held-out folders says so before the training data are read
    if args.heldout_dir is not None:
        heldout = env.frames(args, args.heldout_dir, args.heldout_episodes)
    frames = env.frames(args)
    if heldout is None and args.heldout_episodes >= frames.store.n_episodes:
        raise ConfigError(f"--heldout_episodes {args.heldout_episodes} leaves none of the {frames.store.n_episodes} "
                          "episodes to train on")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    print(describe_precision(args.precision, device), flush=True)
    torch.manual_seed(args.seed)  # the encoder's initial weights
    encoder = build_encoders(frames.encoder or env.name, args.d_model, **frames.encoder_kwargs).obs
    _, rows = frame_bc(frames, encoder, args.d_model, args.steps, args.batch_size, args.lr, args.heldout_episodes,
                       args.eval_every, args.seed, precision, device, pixel_norm=args.pixel_norm, heldout=heldout,
                       train_frames=args.frames, eval_frames=args.eval_frames, curriculum=args.curriculum)
    info = {"script": TOOL, "env": env.name,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "last_evaluation": rows[-1]}
    if args.save_encoder:
        save_encoder(encoder.cpu(), args.save_encoder, info)
    if args.out:
        write_json_lines(args.out, rows)
    return rows


if __name__ == "__main__":
    run_main(main)
