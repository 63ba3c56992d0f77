"""Measure the chain: per-step action loss of trained checkpoints on held-out episodes, split by what each step
depends on (the env's step groups).

    python -m RATE_model.tools.step_loss CKPT [CKPT ...] [--episodes N] [--data_dir DIR] [--out FILE.jsonl]

The model runs over every window of the held-out episodes exactly as in training (segment by segment,
memory and cache carried, teacher-forced actions). Each env names its groups of steps
(:meth:`RATE_model.envs.Environment.step_groups`), e.g. T-Maze's decision step, whose action depends on the
cue seen at step 0, against the corridor steps: a gap near ln 2 between such groups, when the cue decides
between two actions, means the model does not use the cue. Prints one JSON line per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from RATE_model import envs
from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.diagnose import dataset_losses, split_means


def measure(path: Path, episodes: int, batch_size: int, data_dir: Path | None = None) -> dict[str, Any]:
    """Loss (nats), argmax accuracy and step count per step group of checkpoint ``path`` on ``episodes``
    held-out episodes of its env, cut into the run's training windows."""
    model, config = load_model(path)
    if not config.get("env"):
        raise ConfigError(f"{path} records no env")
    env = envs.get(config["env"])
    if not model.enc.spec.discrete:
        raise ConfigError(f"step_loss measures cross-entropy of discrete actions; {env.name} has continuous ones")
    args = argparse.Namespace(**(config.get("args") or {}))
    window = model.cfg.context_length * model.cfg.sections
    data = env.heldout(args, window, episodes, data_dir)
    table = data.epoch_windows(0, 0)  # every window of every held-out episode, in a fixed order
    torch.manual_seed(0)
    losses = dataset_losses(model, data, table, batch_size)
    groups = {"all": np.ones_like(losses["hit"]), **env.step_groups(data, table, losses["action"])}
    result = split_means(losses["ce"], losses["hit"], groups)
    return {"checkpoint": str(path), "env": env.name, "episodes": episodes, "windows": len(table), "window": window,
            "groups": result, "ln2": float(np.log(2))}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(prog="python -m RATE_model.tools.step_loss", description=__doc__.split("\n\n")[0],
                           allow_abbrev=False)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--episodes", type=int, default=200, help="held-out episodes (default: %(default)s)")
    p.add_argument("--data_dir", type=Path, help="a folder of held-out episodes, for envs that read them from files")
    p.add_argument("--batch_size", type=int, default=32, help="windows per forward pass")
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    check_positive(args, ("episodes", "batch_size"))
    out = [measure(c, args.episodes, args.batch_size, args.data_dir) for c in args.checkpoints]
    for r in out:
        print(json.dumps(r), flush=True)
    if args.out:
        write_json_lines(args.out, out)
    return out


if __name__ == "__main__":
    run_main(main)
