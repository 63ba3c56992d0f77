"""Measure the chain: per-step action loss of trained checkpoints on held-out episodes, split by what each step
depends on (the env's step groups).

    python -m RATE_model.tools.step_loss CKPT [CKPT ...] [--episodes N] [--data_dir DIR] [--out FILE.jsonl]

The model runs over every window of the held-out episodes exactly as in training (segment by segment,
memory and cache carried, teacher-forced actions). Each env names its groups of steps
(:meth:`RATE_model.envs.Environment.step_groups`), e.g. T-Maze's decision step, whose action depends on the
cue seen at step 0, against the corridor steps: a gap near ln 2 between such groups, when the cue decides
between two actions, means the model does not use the cue. Where the held-out data records what the expert
would have done with the other cue (:meth:`RATE_model.envs.Environment.counterfactual`, e.g. ViZDoom's
other-colour action), ``preference`` gives the sharper test at the env's chosen groups: the mean of
log p(the data's action) − log p(the other action) and the share of steps where the model prefers the
former (0 and 0.5: the cue is not used); the env may add summary numbers
(:meth:`RATE_model.envs.Environment.step_summary`). Prints one JSON line per checkpoint.

The held-out episodes are the env's: T-Maze generates oracle episodes on unused seeds; ViZDoom and Memory
Maze read a folder made by their generator with another seed (``--data_dir``, default
``<Env>/<Env>_data/heldout``; a missing folder is a one-line error naming the command that makes it).
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
from RATE_model.data import WindowDataset
from RATE_model.diagnose import dataset_losses, preference, split_means


def measure(path: Path, episodes: int, batch_size: int, data_dir: Path | None = None) -> dict[str, Any]:
    """Loss (nats), argmax accuracy and step count per step group of checkpoint ``path`` on ``episodes``
    held-out episodes of its env (those of ``data_dir`` for an env that reads them from files), cut into the
    run's training windows; the env's summary numbers and, where its data has counterfactual actions, the
    model's ``preference`` for the data's action."""
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
    n_episodes = data.store.n_episodes if isinstance(data, WindowDataset) else episodes  # a folder may hold fewer
    out = {"checkpoint": str(path), "env": env.name, "episodes": n_episodes, "windows": len(table), "window": window,
           "groups": result, "ln2": float(np.log(2)), **env.step_summary(result)}
    other = env.counterfactual(data, table)
    if other is not None:
        actions, names = other
        out["preference"] = {name: preference(losses["logp"], losses["action"], actions, groups[name])
                             for name in names}
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(prog="python -m RATE_model.tools.step_loss", description=__doc__.split("\n\n")[0],
                           allow_abbrev=False)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--episodes", type=int, default=200,
                   help="held-out episodes (default: %(default)s; from a folder: its first N)")
    p.add_argument("--data_dir", type=Path, help="a folder of held-out episodes, for envs that read them from files "
                   "(default: the env's, e.g. VizDoom/VizDoom_data/heldout)")
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
