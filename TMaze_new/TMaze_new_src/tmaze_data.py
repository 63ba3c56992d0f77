"""Oracle T-Maze dataset (SPEC §4): generated on first use and cached as .npz files.

For every N in 1..max_n_final: 2000 trajectories in corridors of T = N·K (goal side up/down × 1000
noise seeds), each padded to max_n_final·K steps. The whole dataset is a few MB, so its episode store
lives in RAM (the .npz files are its cache on disk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from RATE_model.collect import save_episode
from RATE_model.data import DataError, WindowDataset, check_array, consecutive, load_npz, with_returns_to_go
from RATE_model.store import EpisodeStore
from TMaze_new.TMaze_new_src.tmaze_env import TMazeVecEnv

DATA_DIR = Path(__file__).resolve().parent.parent / "TMaze_new_data"
FIELDS = ("obs", "action", "reward")


def oracle_episodes(T: int, n_per_side: int, seed_offset: int = 0) -> dict[str, np.ndarray]:
    """Run the oracle in 2·n_per_side corridors of timeout T; every episode takes T-1 steps."""
    goals = np.repeat([1, -1], n_per_side)
    seeds = seed_offset + np.arange(2 * n_per_side)
    env = TMazeVecEnv(T, goals, seeds)
    obs = [env.reset()]
    actions, rewards = [], []
    for _ in range(T - 1):
        a = env.oracle_actions()
        o, r, _, _ = env.step(a)
        actions.append(a)
        rewards.append(r)
        obs.append(o)
    return {"obs": np.stack(obs[:-1], 1), "action": np.stack(actions, 1), "reward": np.stack(rewards, 1)}


def load_or_generate(K: int, n: int, n_per_side: int = 1000, data_dir: Path = DATA_DIR) -> dict[str, np.ndarray]:
    """Episodes of T = n·K from the cache, generating and saving them on first use."""
    path = Path(data_dir) / f"tmaze_K{K}_N{n}_{2 * n_per_side}.npz"
    if path.exists():
        try:
            data = load_npz(path, FIELDS)
            check_episodes(data, 2 * n_per_side, n * K - 1, path)
        except DataError as e:
            raise DataError(f"{e}; delete it to regenerate") from None
        return data
    if path.parent.exists() and not path.parent.is_dir():
        raise DataError(f"--data_dir {path.parent} is not a folder")
    data = oracle_episodes(n * K, n_per_side, seed_offset=100_000 * n)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_episode(path, data)  # atomically: ranks may generate at once
    return data


def check_episodes(data: dict[str, np.ndarray], n: int, T: int, path: Path) -> None:
    """Shapes, dtypes and values of a cached T-Maze file: obs float [n, T, 4], action int [n, T] in 0..3,
    reward float [n, T]; raises DataError naming the file and field."""
    check_array("obs", data["obs"], shape=(n, T, 4), dtype="floating", finite=True, source=path)
    check_array("action", data["action"], shape=(n, T), dtype="integer", source=path)
    check_array("reward", data["reward"], shape=(n, T), dtype="floating", finite=True, source=path)
    if data["action"].size and (data["action"].min() < 0 or data["action"].max() > 3):
        raise DataError(f"{path}: action holds values outside 0..3")


def tmaze_dataset(K: int, segment_counts: list[int], window_segments: int, n_per_side: int = 1000,
                  data_dir: Path = DATA_DIR, progress: bool = True) -> WindowDataset:
    """Windows of ``window_segments``·K steps from corridors of n·K, n in ``segment_counts`` (one padded
    window per episode)."""
    episodes = []
    for n in tqdm(segment_counts, desc="T-Maze data", disable=None if progress else True, leave=False):
        ep = load_or_generate(K, n, n_per_side, data_dir)
        episodes += [with_returns_to_go({"obs": o, "action": a, "reward": r})
                     for o, a, r in zip(ep["obs"], ep["action"], ep["reward"], strict=True)]
    return consecutive(EpisodeStore.from_episodes(episodes), window_segments * K)


def stage_segment_counts(min_n: int, max_n: int, curriculum: bool) -> list[list[int]]:
    """Training stages: with a curriculum N = min..1, min..2, …; without, one stage of all N."""
    if curriculum:
        return [list(range(min_n, n + 1)) for n in range(min_n, max_n + 1)]
    return [list(range(min_n, max_n + 1))]

