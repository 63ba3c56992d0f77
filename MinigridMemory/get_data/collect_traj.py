"""Collect successful Minigrid-Memory expert episodes as compressed .npz files (no download needed).

    python3 MinigridMemory/get_data/collect_traj.py --n_episodes 10000 --size 31 --epsilon 0.1

Each episode is ``<out_dir>/episode_<index>.npz`` holding obs uint8 [T, 3, 84, 84], action int64 [T],
reward float32 [T] and done bool [T]. Episode ``index`` depends only on (--seed, index), so runs are
deterministic, and a rerun skips the files already written (resume after Ctrl-C). Episodes that time
out are retried with the next attempt's seeds; only successful ones are written. ``meta.json``
records the settings, and a rerun with different settings into the same folder is refused.

``--format minari --dataset_id rate/minigrid-memory/size31-v0`` writes the episodes as a local Minari dataset
instead (``both``: as well): frames exact (no JPEG), the env spec ``rate/MinigridMemory-v0`` (size and timeout),
so ``Minari/train_minari.py`` evaluates in it. Every episode is terminated (only successes are written: the agent
stepped next to the matching object), none truncated.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from MinigridMemory.MinigridMemory_src.expert import expert_episode
from MinigridMemory.MinigridMemory_src.minigrid_env import (
    GYM_ID,
    N_ACTIONS,
    OBS_SIZE,
    check_size,
    default_timeout,
)
from RATE_model.collect import collect_episodes, episode_path
from RATE_model.config import OneLineErrorParser
from RATE_model.minari_data import add_export_flags, env_spec, export_frames, minari_episode, run_generator

__all__ = ["DATA_DIR", "collect", "episode_path", "episode_seeds", "main"]

DATA_DIR = Path(__file__).resolve().parent.parent / "MinigridMemory_data"
FIELDS = ("obs", "action", "reward", "done")
# The expert version in meta.json: folders collected by the first expert (no "expert" key), whose turn at
# the junction is not learnable from the observations, are refused instead of silently extended.
EXPERT = "look_first"


def episode_seeds(seed: int, index: int, attempt: int) -> tuple[int, int]:
    """(environment seed, action-noise seed) of one attempt at one episode."""
    env_seed, noise_seed = np.random.SeedSequence([seed, index, attempt]).generate_state(2)
    return int(env_seed), int(noise_seed)


def collect_one(index: int, size: int, epsilon: float, timeout: int | None, seed: int,
                max_attempts: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Run attempts at episode ``index`` until one succeeds; returns it and the number of retries."""
    for attempt in range(max_attempts):
        env_seed, noise_seed = episode_seeds(seed, index, attempt)
        ep = expert_episode(size, env_seed, epsilon, timeout, noise_seed=noise_seed)
        if ep["success"]:
            return {k: ep[k] for k in FIELDS}, {"retries": attempt}
    raise RuntimeError(f"episode {index}: no success in {max_attempts} attempts "
                       f"(epsilon {epsilon} too high for timeout {timeout}?)")


def collect(out_dir: Path = DATA_DIR, n_episodes: int = 10_000, size: int = 31, epsilon: float = 0.0,
            timeout: int | None = None, seed: int = 0, workers: int | None = None, max_attempts: int = 20,
            progress: bool = True) -> dict[str, Any]:
    """Make sure ``out_dir`` holds episodes 0..n_episodes-1; returns counts and the collection speed."""
    try:
        check_size(size)
    except ValueError as e:
        raise ValueError(f"--size: {e}") from None
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"--epsilon must be in [0, 1), got {epsilon}")
    if timeout is not None and timeout < 1:
        raise ValueError(f"--timeout must be >= 1, got {timeout}")
    if max_attempts < 1:
        raise ValueError(f"--max_attempts must be >= 1, got {max_attempts}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    meta = {"size": size, "epsilon": epsilon, "timeout": timeout or default_timeout(size), "seed": seed,
            "expert": EXPERT}
    job = partial(collect_one, size=size, epsilon=epsilon, timeout=timeout, seed=seed, max_attempts=max_attempts)
    desc = f"Minigrid-Memory {size}x{size} episodes"
    return collect_episodes(out_dir, n_episodes, job, meta, workers, progress, desc)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--n_episodes", type=int, default=10_000, help="successful episodes to write")
    p.add_argument("--size", type=int, default=31, help="grid size (odd, >= 7); the paper trains on 31")
    p.add_argument("--epsilon", type=float, default=0.0, help="probability of a random action per step")
    p.add_argument("--timeout", type=int, default=None, help="episode limit T (default 5*size^2, minigrid's)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i is a function of (seed, i)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help="output folder")
    p.add_argument("--max_attempts", type=int, default=20, help="retries of a timed-out episode")
    add_export_flags(p)
    return p


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """The episodes of ``folder`` as the Minari dataset ``--dataset_id`` (see the module docstring)."""
    episode = lambda ep: minari_episode(ep["obs"], ep["action"], ep["reward"], terminated=True, truncated=False)
    return export_frames(
        args, folder, episode, (3, OBS_SIZE, OBS_SIZE), N_ACTIONS,
        env=env_spec(GYM_ID, size=args.size, timeout=args.timeout or default_timeout(args.size)),
        algorithm_name="RATE scripted expert (MinigridMemory/MinigridMemory_src/expert.py), successes only",
        about="Minigrid-Memory episodes of RATE's generator (MinigridMemory/get_data/collect_traj.py)",
        details="Observations: the agent's 3x3 view as uint8 [3, 84, 84].")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_generator(build_parser(), collect, export_minari, argv)


if __name__ == "__main__":
    main()
