"""ViZDoom-Two-Colors training data: the episode files of ``get_data/generate_iter_data.py`` (or the notebook).

The files are converted once into an episode store, ``<data_dir>/store/`` (every frame once, uint8,
read from disk per batch; rebuilt when the files change). Each episode gives consecutive windows of
K·N steps (one window for the reference's 90-step episodes; an episode cut short by death is padded),
with the return-to-go of the whole episode. Observations become float / 255 on the training device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from RATE_model.data import (
    DataError,
    WindowDataset,
    check_array,
    consecutive,
    episode_store,
    load_npz,
    uint8_to_float,
)

OBS_SHAPE = (3, 64, 112)
N_ACTIONS = 5
FIELDS = ("obs", "action", "reward", "done", "is_red")
STORE = "store"  # the episode store's folder inside the data folder
HOW = "python3 VizDoom/get_data/generate_iter_data.py --out_dir {}"


def episode_files(data_dir: Path) -> list[Path]:
    """The episode files of a data folder in index order."""
    return sorted(Path(data_dir).glob("episode_*.npz"))


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked: obs uint8 [T, 3, 64, 112], action int [T] in 0..4, reward finite [T],
    done [T], is_red [T]; any problem is a DataError naming the file and field."""
    try:
        ep = load_npz(path, FIELDS)
    except DataError as e:
        raise DataError(f"{e}; delete it and rerun generate_iter_data.py") from None
    T = len(ep["action"]) if ep["action"].ndim else 0
    if T == 0:
        raise DataError(f"{path} holds an empty episode")
    check_array("obs", ep["obs"], shape=(T, *OBS_SHAPE), dtype=np.uint8, source=path)
    check_array("action", ep["action"], shape=(T,), dtype="integer", source=path)
    check_array("reward", ep["reward"], shape=(T,), dtype="number", finite=True, source=path)
    check_array("done", ep["done"], shape=(T,), source=path)
    check_array("is_red", ep["is_red"], shape=(T,), source=path)
    if ep["action"].min() < 0 or ep["action"].max() >= N_ACTIONS:
        raise DataError(f"{path}: action holds values outside 0..{N_ACTIONS - 1}")
    return ep


def vizdoom_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                    progress: bool = True) -> WindowDataset:
    """Consecutive windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of
    ``data_dir``, read from its episode store (built on first use)."""
    if not Path(data_dir).is_dir():
        raise DataError(f"--data_dir {data_dir} is not a folder; create episodes with {HOW.format(data_dir)}")
    files = episode_files(data_dir)
    if not files:
        raise DataError(f"no episode_*.npz files in {data_dir}; create them with {HOW.format(data_dir)}")
    if max_episodes is not None:
        files = files[:max_episodes]
    store = episode_store(Path(data_dir) / STORE, files, load_episode, progress, "ViZDoom episode store")
    return consecutive(store, window, obs_transform=uint8_to_float)
