"""Minigrid-Memory training data: the expert episodes written by ``get_data/collect_traj.py``.

The episode files are converted once into an episode store, ``<data_dir>/store/`` (every frame once,
uint8, read from disk per batch; rebuilt when the episode files change), and each episode is cut into
consecutive windows of K·N steps (the last one padded, SPEC §2) with the return-to-go of the whole
episode. Observations become float / 255 on the training device.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from RATE_model.data import (
    WindowDataset,
    consecutive,
    folder_store,
    load_image_episode,
    uint8_to_float,
)

OBS_SHAPE = (3, 84, 84)
FIELDS = ("obs", "action", "reward", "done")
HOW = "python3 MinigridMemory/get_data/collect_traj.py --out_dir {}"


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """One episode file, checked: obs uint8 [T, 3, 84, 84], action int [T] in 0..2, reward finite float [T],
    done [T]; any problem is a DataError naming the file and field."""
    return load_image_episode(path, FIELDS, OBS_SHAPE, 3, "delete it and rerun collect_traj.py")


def minigrid_dataset(data_dir: Path, window: int, max_episodes: int | None = None,
                     progress: bool = True) -> WindowDataset:
    """Windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of ``data_dir``,
    read from its episode store (built on first use)."""
    store = folder_store(data_dir, load_episode, HOW.format(data_dir), max_episodes, progress,
                         "Minigrid-Memory episode store")
    longer = int((store.lengths > window).sum())
    if longer:  # their later windows start afresh: a cue seen in an earlier one cannot be learned
        print(f"note: {longer} of {len(store.lengths)} episodes in {data_dir} are longer than the K·N = {window}-step "
              f"training window (longest {int(store.lengths.max())}); each is cut into windows that start afresh "
              "(new memory, or a new context for DT), so a cue seen in an earlier window cannot teach a later "
              "decision", file=sys.stderr)
    return consecutive(store, window, obs_transform=uint8_to_float)
