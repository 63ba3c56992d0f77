"""Does a trained ViZDoom model use the pillar's colour? Per-step action loss on held-out episodes, split by
whether the expert's action at that step depends on the colour.

    python3 VizDoom/get_data/generate_iter_data.py --seed 1 --n_episodes 500 --out_dir VizDoom/VizDoom_data/heldout
    python3 VizDoom/diagnostics/step_loss.py runs/vizdoom/DT/seed_1/checkpoints/last.pt

The episodes' ``colour_dependent`` field (written by the generator) marks the steps where the noise-free
expert would act differently had the pillar the other colour. A model that ignores the colour loses about
ln 2 more on those steps than on the others (it cannot tell which of two items to head for); one that uses
it loses about as much on both. Steps are also split by time (the pillar is on screen in steps 0-22) and
by whether the expert's action changes (where repeating the last action fails). Where the files record
``action_other_colour`` (the expert's action had the pillar been the other colour), ``preference`` gives the
sharper test at the colour-dependent steps: the mean of log p(the expert's action) − log p(the other-colour
action) and the share of steps where the model prefers the former (0 and 0.5: the colour is not used).
Prints one JSON object per checkpoint (``--out``: also written to a file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.data import episode_files, file_fields
from RATE_model.diagnose import dataset_losses, preference, split_means, window_fields
from VizDoom.get_data.generate_iter_data import DATA_DIR
from VizDoom.VizDoom_src.vizdoom_data import follows_pickup, vizdoom_dataset

HELD_OUT = DATA_DIR.with_name("heldout")
PILLAR_STEPS = 23  # the pillar stands 45 tics: on screen in steps 0..22
SIDE_FIELDS = ("colour_dependent", "action_other_colour", "reward")  # read from the files, beside the store


def step_groups(colour_dependent: np.ndarray, starts: np.ndarray, actions: np.ndarray,
                rewards: np.ndarray) -> dict[str, np.ndarray]:
    """The named step masks [n, T] of windows starting at episode steps ``starts`` [n] with ``actions`` and
    ``rewards`` [n, T]: colour-dependent or not, overall, while the pillar is on screen and after it is
    gone, at the steps where the expert's action changes (a new turn: where repeating the last action
    fails), and at the step right after a right item was picked up, where the expert chooses its next item
    and the turn it was making tells nothing about which."""
    T = colour_dependent.shape[1]
    late = (starts[:, None] + np.arange(T)[None]) >= PILLAR_STEPS
    dep = colour_dependent.astype(bool)
    changed = np.zeros_like(dep)
    changed[:, 1:] = actions[:, 1:] != actions[:, :-1]
    after = follows_pickup(rewards)
    return {"all": np.ones_like(dep), "colour_dependent": dep, "other": ~dep,
            "colour_dependent_pillar_in_view": dep & ~late, "colour_dependent_after_pillar": dep & late,
            "other_after_pillar": ~dep & late, "colour_dependent_action_changed": dep & changed,
            "colour_dependent_action_repeated": dep & ~changed & (np.arange(T) > 0)[None],
            "other_action_changed": ~dep & changed, "colour_dependent_after_pickup": dep & after}


def measure(path: Path, data_dir: Path, episodes: int, batch_size: int) -> dict[str, Any]:
    """Per-group loss, accuracy and step counts of checkpoint ``path`` on the first ``episodes`` episodes."""
    model, _ = load_model(path)
    cfg = model.cfg
    files = episode_files(data_dir)[:episodes]
    side: dict[str, list[np.ndarray]] = {k: [] for k in SIDE_FIELDS}
    for path_e in files:  # each file once; the windows below index into these
        for k, v in file_fields(path_e, SIDE_FIELDS).items():
            side[k].append(v)
    if len(side["colour_dependent"]) < len(files):
        raise ConfigError(f"episodes of {data_dir} have no colour_dependent field: regenerate the folder with the "
                          "current generate_iter_data.py")
    window = cfg.context_length * cfg.sections
    data = vizdoom_dataset(data_dir, window, len(files), progress=False)
    table = data.epoch_windows(0, 0)  # every window of every episode, as in training
    losses = dataset_losses(model, data, table, batch_size)
    logp, action, ce, hit = (losses[k] for k in ("logp", "action", "ce", "hit"))
    window_of = {k: window_fields(v, table, window) for k, v in side.items() if len(v) == len(files)}
    groups = step_groups(window_of["colour_dependent"], table[:, 1], action, window_of["reward"])
    res = split_means(ce, hit, groups)
    dep_loss, other_loss = res["colour_dependent"]["loss"], res["other"]["loss"]
    gap = None if dep_loss is None or other_loss is None else dep_loss - other_loss
    out = {"checkpoint": str(path), "episodes": len(files), "windows": len(table), "window": window, "groups": res,
           "gap_colour_dependent_minus_other": gap, "ln2": float(np.log(2))}
    if "action_other_colour" in window_of:  # files that record the expert's other-colour action
        alt = window_of["action_other_colour"]
        out["preference"] = {name: preference(logp, action, alt, groups[name]) for name in
                             ("colour_dependent", "colour_dependent_after_pillar", "colour_dependent_action_changed",
                              "colour_dependent_action_repeated", "colour_dependent_after_pickup")}
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--data_dir", type=Path, default=HELD_OUT, help="held-out episodes (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=500, help="first N episodes of --data_dir")
    p.add_argument("--batch_size", type=int, default=25)
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "batch_size"))
    if not episode_files(args.data_dir):
        raise ConfigError(f"no episodes in {args.data_dir}: run python3 VizDoom/get_data/generate_iter_data.py "
                          f"--seed 1 --n_episodes {args.episodes} --out_dir {args.data_dir}")
    torch.manual_seed(0)
    out = [measure(c, args.data_dir, args.episodes, args.batch_size) for c in args.checkpoints]
    for r in out:
        print(json.dumps(r))
    if args.out:
        write_json_lines(args.out, out)
    return out


if __name__ == "__main__":
    run_main(main)
