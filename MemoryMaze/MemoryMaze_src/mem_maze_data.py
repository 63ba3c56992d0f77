"""Memory Maze training data: episode files in the reference layout (ours from ``get_data/collect_data.py``,
or the paper's DreamerV3 episodes) read through the shared episode store.

The reference window rule: windows of K·N steps (90) at offsets 0, K·N, 2·K·N, … below 500 − K·N (only
the first 500 steps of an episode are read), kept when they hold at least 2 rewards; return-to-go of the
whole episode; the action is the one-hot's argmax. The store keeps each episode's first 500 steps as
uint8 [3, 64, 64] frames; observations become float / 255 on the training device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from RATE_model.data import (
    DataError,
    WindowDataset,
    check_array,
    fixed_offsets,
    folder_store,
    load_npz,
    returns_to_go,
    uint8_to_float,
)
from RATE_model.data import (
    episode_files as all_episode_files,
)

FRAME = (64, 64, 3)  # the files' frames, height × width × RGB
N_ACTIONS = 6
READ_STEPS = 500  # the reference loader reads only the first 500 steps of each episode
MIN_WINDOW_REWARD = 2.0  # the reference keeps windows holding at least 2 rewards
PATTERN = "*.npz"  # ours are episode_<index>.npz; the paper's files have other names
HOW = "python3 MemoryMaze/get_data/collect_data.py --out_dir {}"
REMEDY = "delete it and rerun collect_data.py"


def episode_files(data_dir: Path) -> list[Path]:
    """The episode files of a data folder in name order."""
    return all_episode_files(data_dir, PATTERN)


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked (obs uint8 [T, 64, 64, 3], action one-hot [T, 6], reward finite [T]), as
    the store's episode: its first 500 steps, frames [3, 64, 64], action index, whole-episode return-to-go."""
    try:
        ep = load_npz(path, ("obs", "action", "reward"))
        T = len(ep["reward"]) if ep["reward"].ndim == 1 else -1
        if T < 1:
            raise DataError(f"{path}: reward has shape {ep['reward'].shape}, expected (T,) with T >= 1")
        check_array("obs", ep["obs"], shape=(T, *FRAME), dtype=np.uint8, source=path)
        check_array("action", ep["action"], shape=(T, N_ACTIONS), dtype="number", finite=True, source=path)
        check_array("reward", ep["reward"], dtype="number", finite=True, source=path)
    except DataError as e:
        raise DataError(f"{e}; {REMEDY}") from None
    n = min(T, READ_STEPS)
    return {"obs": np.ascontiguousarray(ep["obs"][:n].transpose(0, 3, 1, 2)),
            "action": ep["action"][:n].argmax(1).astype(np.int8),
            "reward": ep["reward"][:n].astype(np.float32),
            "rtg": returns_to_go(ep["reward"].astype(np.float32))[:n]}


def mem_maze_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                     min_window_reward: float = MIN_WINDOW_REWARD, progress: bool = True,
                     stride: int | None = None) -> WindowDataset:
    """The reference's windows of ``window`` (= K·N) steps over the first ``max_episodes`` episodes of
    ``data_dir``, read from its episode store (built on first use); ``stride`` (default: ``window``, the
    reference) is the step between window offsets (smaller: overlapping windows, more of them)."""
    store = folder_store(data_dir, load_episode, HOW.format(data_dir), max_episodes, progress,
                         "Memory Maze episode store", PATTERN)
    try:
        return fixed_offsets(store, window, stride=stride or window, stop=READ_STEPS - window,
                             keep=lambda d, w: d.window_sums(w) >= min_window_reward, obs_transform=uint8_to_float)
    except DataError:
        raise DataError(f"no window of {window} steps inside the first {READ_STEPS} steps of an episode in {data_dir} "
                        f"holds >= {min_window_reward:g} rewards (--window_min_reward); collect longer episodes "
                        "or more of them") from None
