"""Minigrid-Memory training data: the expert episodes written by ``get_data/collect_traj.py``.

Each episode is cut into consecutive windows of K·N steps (the last one padded, SPEC §2) with the
return-to-go of the whole episode. Observations stay uint8 in memory (a 31×31 episode window of 90
steps is 1.9 MB as uint8, four times that as float) and become float / 255 per batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from RATE_model.data import DataError, Trajectories, check_array, load_npz, pad_window, returns_to_go, stack_windows

OBS_SHAPE = (3, 84, 84)
FIELDS = ("obs", "action", "reward", "done")


def uint8_to_float(obs: Tensor) -> Tensor:
    """Batch transform: uint8 pixels -> float in [0, 1]."""
    return obs.float().div_(255.0)


def episode_files(data_dir: Path) -> list[Path]:
    """The episode files of a data folder in index order."""
    return sorted(Path(data_dir).glob("episode_*.npz"))


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked: obs uint8 [T, 3, 84, 84], action int [T] in 0..2, reward finite float [T],
    done [T]; any problem is a DataError naming the file and field."""
    try:
        ep = load_npz(path, FIELDS)
    except DataError as e:
        raise DataError(f"{e}; delete it and rerun collect_traj.py") from None
    T = len(ep["action"]) if ep["action"].ndim else 0
    if T == 0:
        raise DataError(f"{path} holds an empty episode")
    check_array("obs", ep["obs"], shape=(T, *OBS_SHAPE), dtype=np.uint8, source=path)
    check_array("action", ep["action"], shape=(T,), dtype="integer", source=path)
    check_array("reward", ep["reward"], shape=(T,), dtype="number", finite=True, source=path)
    check_array("done", ep["done"], shape=(T,), source=path)
    if ep["action"].min() < 0 or ep["action"].max() > 2:
        raise DataError(f"{path}: action holds values outside 0..2")
    return ep


def episode_windows(ep: dict[str, np.ndarray], window: int) -> list[dict[str, np.ndarray]]:
    """Consecutive windows of ``window`` steps covering the episode, the last one padded."""
    rtg = returns_to_go(ep["reward"])
    action = ep["action"].astype(np.int64)
    return [pad_window(ep["obs"][s:], action[s:], rtg[s:], window) for s in range(0, len(action), window)]


def minigrid_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                     progress: bool = True) -> Trajectories:
    """Windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of ``data_dir``."""
    files = episode_files(data_dir)
    if not Path(data_dir).is_dir():
        raise DataError(f"--data_dir {data_dir} is not a folder; create episodes with "
                        f"python3 MinigridMemory/get_data/collect_traj.py --out_dir {data_dir}")
    if not files:
        raise DataError(f"no episode_*.npz files in {data_dir}; create them with "
                        f"python3 MinigridMemory/get_data/collect_traj.py --out_dir {data_dir}")
    if max_episodes is not None:
        files = files[:max_episodes]
    windows = []
    for path in tqdm(files, desc="Minigrid-Memory data", disable=None if progress else True, leave=False):
        windows += episode_windows(load_episode(path), window)
    tensors = stack_windows(windows)
    tensors["action"] = tensors["action"].long()
    tensors["valid"] = tensors["valid"].bool()
    assert tensors["obs"].dtype == torch.uint8
    return Trajectories(tensors, obs_transform=uint8_to_float)
