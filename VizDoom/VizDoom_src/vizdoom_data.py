"""ViZDoom-Two-Colors training data: the episode files of ``get_data/generate_iter_data.py`` (or the notebook).

The files are converted once into an episode store, ``<data_dir>/store/`` (every frame once, uint8,
read from disk per batch; rebuilt when the files change). Each episode gives consecutive windows of
K·N steps (one window for the reference's 90-step episodes; an episode cut short by death is padded),
with the return-to-go of the whole episode. Observations become float / 255 on the training device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from RATE_model.data import WindowDataset, consecutive, folder_store, load_image_episode, uint8_to_float
from VizDoom.VizDoom_src.vizdoom_env import PICKUP_REWARD

OBS_SHAPE = (3, 64, 112)
N_ACTIONS = 5
FIELDS = ("obs", "action", "reward", "done", "is_red")
HOW = "python3 VizDoom/get_data/generate_iter_data.py --out_dir {}"


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked: obs uint8 [T, 3, 64, 112], action int [T] in 0..4, reward finite [T],
    done [T], is_red [T]; any problem is a DataError naming the file and field."""
    return load_image_episode(path, FIELDS, OBS_SHAPE, N_ACTIONS, "delete it and rerun generate_iter_data.py")


def vizdoom_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                    progress: bool = True) -> WindowDataset:
    """Consecutive windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of
    ``data_dir``, read from its episode store (built on first use)."""
    store = folder_store(data_dir, load_episode, HOW.format(data_dir), max_episodes, progress, "ViZDoom episode store")
    return consecutive(store, window, obs_transform=uint8_to_float)


def follows_pickup(rewards: np.ndarray) -> np.ndarray:
    """Whether each step comes right after a step whose reward shows a right item picked up (bool, the shape
    of ``rewards`` [..., T]; the first step of each row follows nothing)."""
    after = np.zeros(rewards.shape, bool)
    after[..., 1:] = rewards[..., :-1] >= PICKUP_REWARD
    return after
