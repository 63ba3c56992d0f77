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
    consecutive,
    episode_files,
    file_fields,
    folder_store,
    load_image_episode,
    uint8_to_float,
)
from VizDoom.VizDoom_src.vizdoom_env import PICKUP_REWARD

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
                    progress: bool = True, colour: str | None = None, choice_weight: float = 1.0) -> WindowDataset:
    """Consecutive windows of ``window`` (= K·N) steps from the first ``max_episodes`` episodes of
    ``data_dir``, read from its episode store (built on first use); with ``colour`` ("red" or "green") only
    the episodes of that pillar colour; ``choice_weight`` W ≠ 1: the :func:`choice_steps` weigh W in the loss."""
    store = folder_store(data_dir, load_episode, HOW.format(data_dir), max_episodes, progress, "ViZDoom episode store")
    files = episode_files(Path(data_dir))[:max_episodes]
    weight = None
    if choice_weight != 1.0:
        choice = choice_steps(files)
        if len(choice) != store.n_steps:
            raise DataError(f"the episode files of {data_dir} hold {len(choice)} steps, its episode store "
                            f"{store.n_steps}: delete {Path(data_dir) / 'store'} to rebuild it")
        weight = np.where(choice, choice_weight, 1.0)
    episodes = None
    if colour is not None:
        if colour not in COLOURS:
            raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
        episodes = np.flatnonzero(pillar_colours(files) == (colour == "red"))
    return consecutive(store, window, episodes, obs_transform=uint8_to_float, step_weight=weight)


def follows_pickup(rewards: np.ndarray) -> np.ndarray:
    """Whether each step comes right after a step whose reward shows a right item picked up (bool, the shape
    of ``rewards`` [..., T]; the first step of each row follows nothing)."""
    after = np.zeros(rewards.shape, bool)
    after[..., 1:] = rewards[..., :-1] >= PICKUP_REWARD
    return after


def choice_steps(files: list[Path]) -> np.ndarray:
    """The steps where the expert chooses its next item (bool [n_steps], the files' steps back to back):
    colour-dependent (their ``colour_dependent`` field) and right after a right item was picked up. There the
    turn it was making tells nothing about the next item, so imitation cannot follow the trajectory and needs
    the colour."""
    steps = []
    for f in files:
        side = file_fields(f, ("colour_dependent", "reward"))
        if "colour_dependent" not in side:
            raise DataError(f"{f} has no colour_dependent field (needed by --choice_weight): regenerate it "
                            "with generate_iter_data.py")
        steps.append(side["colour_dependent"].astype(bool) & follows_pickup(side["reward"]))
    return np.concatenate(steps)


def pillar_colours(files: list[Path]) -> np.ndarray:
    """Whether each episode file's pillar is red (bool [n]), read from its ``is_red`` field alone."""
    return np.array([bool(file_fields(f, ("is_red",))["is_red"][0]) for f in files], bool)
