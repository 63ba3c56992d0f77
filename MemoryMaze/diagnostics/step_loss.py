"""Where does a trained Memory Maze model fail to clone its data? Per-step action loss and accuracy on
held-out episodes (teacher-forced, every 90-step window of their first 500 steps), split by what the step
depends on.

    python3 MemoryMaze/get_data/collect_data.py --seed 1 --n_episodes 20 --max_steps 500 --out_dir HELD_OUT
    python3 MemoryMaze/diagnostics/step_loss.py runs/memory_maze/RATE/seed_1/checkpoints/last.pt --data_dir HELD_OUT

Groups: all steps; the episode's first window (steps 0-89: a new maze, the oracle explores) and the later ones
(a remembered layout and remembered targets shorten the trips); each K-step part of the window
(``segment_k``: RATE's segments, the same steps of DT's one context; how much context or memory the model
has at that step); the steps right after a target is reached (a new target is
assigned and the oracle chooses where to go: explore or head for a remembered target) and the others; the
steps where the oracle's action changes (a new turn) and those where it repeats. Prints one JSON object per
checkpoint (``--out``: also written to a file). ``pretrain_encoder.py`` prints a single-frame policy's
held-out accuracy for comparison (no context at all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from MemoryMaze.MemoryMaze_src.mem_maze_data import mem_maze_dataset
from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import OneLineErrorParser, check_positive
from RATE_model.diagnose import dataset_losses, split_means, window_fields

AFTER_TARGET = 30  # steps after a reached target counted as "a new target was just assigned"


def step_groups(starts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, segment: int) -> dict[str, np.ndarray]:
    """Named step masks [n, T] of windows starting at episode steps ``starts`` [n] with the data's ``actions``
    and ``rewards`` [n, T] (T = N segments of ``segment`` steps)."""
    n, T = actions.shape
    first_window = np.broadcast_to((starts == 0)[:, None], (n, T))
    since = np.full((n, T), np.inf)
    for t in range(1, T):  # steps since the last reward inside the window (inf: none yet)
        since[:, t] = np.where(rewards[:, t - 1] > 0, 1, since[:, t - 1] + 1)
    just_assigned = since <= AFTER_TARGET
    changed = np.zeros((n, T), bool)
    changed[:, 1:] = actions[:, 1:] != actions[:, :-1]
    groups = {"all": np.ones((n, T), bool), "first_window": first_window, "later_windows": ~first_window,
              "after_target_reached": just_assigned, "other": ~just_assigned,
              "action_changed": changed, "action_repeated": ~changed & (np.arange(T) > 0)[None]}
    for k in range(T // segment):
        groups[f"segment_{k + 1}"] = np.broadcast_to((np.arange(T) // segment == k)[None], (n, T))
    return groups


def measure(path: Path, data_dir: Path, episodes: int | None, batch_size: int) -> dict[str, Any]:
    """Per-group loss, accuracy and step counts of checkpoint ``path`` on the episodes of ``data_dir``."""
    model, run = load_model(path)
    cfg = model.cfg
    window = cfg.context_length * cfg.sections
    segment = int(run.get("model", {}).get("context_length") or cfg.context_length)  # K (DT's cfg holds K·N)
    data = mem_maze_dataset(data_dir, window, episodes, min_window_reward=0, progress=False)
    store = data.store
    rewards = [store.take("reward", np.arange(store.offsets[i], store.offsets[i + 1])) for i in range(store.n_episodes)]
    table = data.epoch_windows(0, 0)  # every window of every episode
    losses = dataset_losses(model, data, table, batch_size)  # no_grad inside
    groups = step_groups(table[:, 1], losses["action"], window_fields(rewards, table, window), segment)
    return {"checkpoint": str(path), "model_mode": cfg.model_mode, "episodes": store.n_episodes, "windows": len(table),
            "window": window, "groups": split_means(losses["ce"], losses["hit"], groups)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--data_dir", type=Path, required=True, help="held-out episodes (collect_data.py --seed 1)")
    p.add_argument("--episodes", type=int, help="first N episodes of --data_dir (default: all)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "batch_size"))
    torch.manual_seed(0)
    out = [measure(c, args.data_dir, args.episodes, args.batch_size) for c in args.checkpoints]
    print("\n".join(json.dumps(r) for r in out))
    if args.out:
        write_json_lines(args.out, out)
    return out


if __name__ == "__main__":
    run_main(main)
