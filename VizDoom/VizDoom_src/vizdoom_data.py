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
    WindowDataset,
    consecutive,
    episode_files,
    folder_store,
    load_image_episode,
    uint8_to_float,
)

OBS_SHAPE = (3, 64, 112)
N_ACTIONS = 5
FIELDS = ("obs", "action", "reward", "done", "is_red")
COLOURS = ("red", "green")
HOW = "python3 VizDoom/get_data/generate_iter_data.py --out_dir {}"


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked: obs uint8 [T, 3, 64, 112], action int [T] in 0..4, reward finite [T],
    done [T], is_red [T]; any problem is a DataError naming the file and field."""
    return load_image_episode(path, FIELDS, OBS_SHAPE, N_ACTIONS, "delete it and rerun generate_iter_data.py")


def vizdoom_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                    progress: bool = True, colour: str | None = None) -> WindowDataset:
    """Consecutive windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of
    ``data_dir``, read from its episode store (built on first use); with ``colour`` ("red" or "green") only
    the episodes of that pillar colour."""
    store = folder_store(data_dir, load_episode, HOW.format(data_dir), max_episodes, progress, "ViZDoom episode store")
    if colour is None:
        return consecutive(store, window, obs_transform=uint8_to_float)
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
    red = pillar_colours(episode_files(Path(data_dir))[:max_episodes])
    return consecutive(store, window, np.flatnonzero(red == (colour == "red")), obs_transform=uint8_to_float)


def pillar_colours(files: list[Path]) -> np.ndarray:
    """Whether each episode file's pillar is red (bool [n]), read from its ``is_red`` field alone."""
    red = np.empty(len(files), bool)
    for i, f in enumerate(files):
        with np.load(f) as ep:
            red[i] = bool(ep["is_red"][0])
    return red
