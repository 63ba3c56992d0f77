"""Generate Memory Maze 9×9 training data with an oracle (no DreamerV3 run, no download).

    python3 MemoryMaze/get_data/collect_data.py --n_episodes 5000 --max_steps 1000 --epsilon 0.1

``--oracle visible`` (the default) acts only on what its camera has shown it: it explores until it has
seen the current target, then goes there by the shortest path over the cells it has seen, so its data can
be imitated from the frames and reward memory; ``--oracle privileged`` reads the layout and the target's
position from the first step (the earlier data, kept for comparison). See ``MemoryMaze_src/expert.py``.

Each episode is ``<out_dir>/episode_<index>.npz`` with the reference loader's fields: obs uint8
[T, 64, 64, 3] (the frame seen before acting), action one-hot float32 [T, 6], reward float32 [T].
Episode ``index`` depends only on (--seed, index): its maze seed is ``episode_seeds(seed, index)[0]``
(always >= 2**30, so never one of the evaluation seeds). The training loader reads only the first 500
steps of each episode, so ``--max_steps 500`` halves the work at no loss for training. A rerun skips
the files already written (resume after Ctrl-C); ``meta.json`` records the settings, and a rerun with
other settings into the same folder is refused. The environment runs ~30–50 steps/s per process, so
every core is used by default.

``--format minari --dataset_id rate/memory-maze/9x9-v0`` writes the episodes as a local Minari dataset instead
(``both``: as well) in the agent's spaces: frames exact (no JPEG) as uint8 [3, 64, 64] (the files' frames
transposed), actions as integers 0..5 (the files' one-hot argmax), the env spec ``rate/MemoryMaze9x9-v0``
(``max_steps``; not privileged: the oracle's extra state never reaches the agent). Every episode is truncated
(the task has no terminal state: it ends after ``--max_steps`` steps), none terminated.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from MemoryMaze.MemoryMaze_src.expert import oracle_episode
from MemoryMaze.MemoryMaze_src.memory_maze_env import (
    GYM_ID,
    MAX_STEPS,
    N_ACTIONS,
    OBS_SHAPE,
    START_METHOD,
    MemoryMazeEnv,
)
from RATE_model.collect import collect_episodes
from RATE_model.config import OneLineErrorParser
from RATE_model.minari_data import add_export_flags, env_spec, export_frames, minari_episode, run_generator

DATA_DIR = Path(__file__).resolve().parent.parent / "MemoryMaze_data" / "episodes"
# recorded in meta.json: a changed oracle must not extend an old folder
EXPERTS = {"privileged": "bfs_next_cell_v1", "visible": "visible_frontier_v1"}
TRAIN_SEED_BASE = 2**30  # maze seeds of the data are >= this; evaluation seeds are below it

_ENV: dict[int, MemoryMazeEnv] = {}  # one simulator per worker process and episode length


def episode_seeds(seed: int, index: int) -> tuple[int, int]:
    """(maze seed, action-noise seed) of episode ``index``."""
    maze_seed, noise_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return TRAIN_SEED_BASE + int(maze_seed % TRAIN_SEED_BASE), int(noise_seed)


def collect_one(index: int, max_steps: int, epsilon: float, seed: int,
                oracle: str = "visible") -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Oracle episode ``index``; stats: targets reached, targets assigned and how many of those the oracle
    had seen when they were assigned (visible oracle)."""
    if max_steps not in _ENV:
        _ENV[max_steps] = MemoryMazeEnv(max_steps=max_steps, privileged=True)
    maze_seed, noise_seed = episode_seeds(seed, index)
    ep = oracle_episode(_ENV[max_steps], maze_seed, max_steps, epsilon, noise_seed, oracle)
    seen = ep.pop("seen_at_assignment")
    return ep, {"targets": int(ep["reward"].sum()), "assigned": len(seen), "assigned_seen": int(seen.sum())}


def collect(out_dir: Path = DATA_DIR, n_episodes: int = 5000, max_steps: int = MAX_STEPS, epsilon: float = 0.1,
            seed: int = 0, workers: int | None = None, progress: bool = True,
            oracle: str = "visible") -> dict[str, Any]:
    """Make sure ``out_dir`` holds episodes 0..n_episodes-1; returns counts, targets per episode and speed."""
    if oracle not in EXPERTS:
        raise ValueError(f"--oracle must be one of {sorted(EXPERTS)}, got {oracle!r}")
    if not 1 <= max_steps <= MAX_STEPS:
        raise ValueError(f"--max_steps must be in 1..{MAX_STEPS}, got {max_steps}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon must be in [0, 1], got {epsilon}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    meta = {"max_steps": max_steps, "epsilon": epsilon, "seed": seed, "oracle": oracle, "expert": EXPERTS[oracle]}
    job = partial(collect_one, max_steps=max_steps, epsilon=epsilon, seed=seed, oracle=oracle)
    stats = collect_episodes(out_dir, n_episodes, job, meta, workers, progress, "Memory Maze episodes",
                             context=START_METHOD)
    if stats["written"]:
        stats["targets_per_episode"] = round(stats["targets"] / stats["written"], 3)
        stats["episodes_per_hour"] = round(stats["episodes_per_s"] * 3600, 1)
        if oracle == "visible":
            stats["seen_at_assignment"] = round(stats["assigned_seen"] / max(stats["assigned"], 1), 3)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--n_episodes", type=int, default=5000, help="episodes to write (the paper: 5000)")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS,
                   help="steps per episode (the task: 1000; training reads the first 500)")
    p.add_argument("--oracle", choices=sorted(EXPERTS), default="visible",
                   help="visible: acts on what it has seen (explores, remembers); privileged: reads the maze")
    p.add_argument("--epsilon", type=float, default=0.1, help="probability of a random action per step")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i is a function of (seed, i)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help="output folder")
    add_export_flags(p)
    return p


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """The episodes of ``folder`` as the Minari dataset ``--dataset_id`` (see the module docstring)."""
    episode = lambda ep: minari_episode(ep["obs"].transpose(0, 3, 1, 2), ep["action"].argmax(1), ep["reward"],
                                        terminated=False, truncated=True)
    return export_frames(args, folder, episode, OBS_SHAPE, N_ACTIONS, env=env_spec(GYM_ID, max_steps=args.max_steps),
                         algorithm_name=f"RATE {args.oracle} oracle (MemoryMaze/MemoryMaze_src/expert.py)",
                         about="Memory Maze 9x9 episodes of RATE's generator (MemoryMaze/get_data/collect_data.py)",
                         details="Observations: the camera as uint8 [3, 64, 64]; actions 0 noop, 1 forward, 2 left, "
                                 "3 right, 4 forward+left, 5 forward+right.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_generator(build_parser(), collect, export_minari, argv)


if __name__ == "__main__":
    main()
