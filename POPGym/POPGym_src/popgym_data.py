"""POPGym training data: one ``.npz`` per episode, ``<data_dir>/popgym-<Task>-v0/train_data_{i}.npz`` with
``obs`` [T, D] (the flat components of ``popgym_env.flat_obs``), ``action`` [T] (int, MultiDiscrete
flattened) or [T, A] (float, Pendulum), ``reward`` [T] and ``done`` [T] — the layout of the paper's files,
so those load as well as the ones ``get_data/gen_popgym_data.py`` writes.

The files become an episode store (``<task folder>/store``, rebuilt when they change), cut into consecutive
windows of K·N steps with the return-to-go of the whole episode.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from POPGym.POPGym_src.popgym_env import TaskSpec
from RATE_model.data import STORE, DataError, WindowDataset, check_array, consecutive, episode_store, load_npz
from RATE_model.store import EpisodeStore

FIELDS = ("obs", "action", "reward", "done")
PATTERN = re.compile(r"train_data_(\d+)\.npz")
HOW = "python3 POPGym/get_data/gen_popgym_data.py --tasks {task} --out_dir {out}"


def task_files(folder: Path) -> list[Path]:
    """The episode files of a task folder in index order (``train_data_2`` before ``train_data_10``)."""
    found = [(int(m.group(1)), p) for p in Path(folder).glob("train_data_*.npz") if (m := PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def load_episode(path: Path, spec: TaskSpec) -> dict[str, np.ndarray]:
    """One episode file, checked against the task's spaces; any problem is a DataError naming file and field."""
    ep = load_npz(path, FIELDS)
    obs = check_array("obs", ep["obs"], dtype="number", finite=True, source=path)
    if obs.ndim == 1:  # a single-component observation may be stored flat
        obs = obs[:, None]
    T = len(obs)
    check_array("obs", obs, shape=(T, spec.obs_dim), source=path)
    if spec.discrete:
        action = check_array("action", ep["action"], shape=(T,), dtype="integer", source=path)
        if T and (action.min() < 0 or action.max() >= spec.n_actions):
            raise DataError(f"{path}: action holds values outside 0..{spec.n_actions - 1}")
    else:
        action = check_array("action", np.asarray(ep["action"]).reshape(T, -1), shape=(T, spec.n_actions),
                             dtype="floating", finite=True, source=path).astype(np.float32)
    reward = check_array("reward", ep["reward"], shape=(T,), dtype="number", finite=True, source=path)
    if T == 0:
        raise DataError(f"{path}: empty episode")
    return {"obs": obs.astype(np.float32), "action": action, "reward": reward.astype(np.float32)}


def popgym_store(folder: Path, spec: TaskSpec, max_episodes: int | None = None, progress: bool = True) -> EpisodeStore:
    """The episode store of the first ``max_episodes`` episodes of a task folder (built on first use), read
    into RAM (3 000 episodes of a task are at most ~130 MB)."""
    files = task_files(folder)[:max_episodes]
    if not files:
        raise DataError(f"no train_data_*.npz files in {folder}; create them with "
                        f"{HOW.format(task=Path(folder).name, out=Path(folder).parent)}")
    return episode_store(Path(folder) / STORE, files, lambda p: load_episode(p, spec), progress,
                         f"{Path(folder).name} episode store").in_memory()


def real_stats(store: EpisodeStore, spec: TaskSpec) -> dict[str, list[float]]:
    """``obs_mean`` / ``obs_std`` of the real (Box) observation components over every training step: the
    ``popgym`` encoder standardises them (a component that never varies keeps std 1). Empty without reals."""
    real = [i for i, n in enumerate(spec.obs_nvec) if n == 0]
    if not real:
        return {}
    mean, std = store.moments("obs")
    std = np.where(std[real] > 1e-6, std[real], 1.0)
    return {"obs_mean": mean[real].tolist(), "obs_std": std.tolist()}


def popgym_dataset(store: EpisodeStore, window: int) -> WindowDataset:
    """Consecutive windows of ``window`` (= K·N) steps covering every episode, the last one padded."""
    return consecutive(store, window)
