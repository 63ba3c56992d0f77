"""MuJoCo training data: D4RL hdf5 files, the reference's pickles and our generated files, read into an
episode store, with Decision Transformer's window sampling.

A dataset ``<env>-<kind>`` (e.g. ``hopper-medium-replay``) is looked up in the data folder as, in order:

* ``hopper-medium-replay-v2.pkl`` — the reference's format (``download_d4rl_datasets.py`` writes it): a
  pickled list of trajectory dicts with ``observations``, ``actions``, ``rewards`` (and more, ignored);
* ``hopper_medium_replay-v2.hdf5`` — a D4RL file as D4RL names it (``~/.d4rl/datasets``);
* ``hopper-medium-replay-v5.hdf5`` — our generator's file (D4RL layout, collected on gymnasium v5).

D4RL layout: ``observations`` [N, state_dim], ``actions`` [N, act_dim], ``rewards`` [N], ``terminals``
[N], ``timeouts`` [N]; an episode ends at ``terminals | timeouts`` (files without ``timeouts``: after
1000 steps, as the reference's download script counts). A last episode cut by the end of the file is
dropped, as the reference does.

Training windows (SPEC §2), return-to-go / 1000. The reference draws trajectories ∝ length and starts
uniform inside them, and discards every window that runs past its trajectory's end, so a trajectory's
first and last K·N − 1 steps are seen in fewer windows than its middle, its first and final steps almost
never. We keep the windows past the end, padded and masked, and by default draw starts so that the first
steps are covered too (:func:`RATE_model.data.dt_style`; ``--window_starts uniform`` is the reference's
draw): every evaluation episode begins at the first step. States are normalised by the dataset's mean and
std inside the model (the statistics travel with its checkpoints, see ``state_stats``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from MuJoCo.MuJoCo_src.mujoco_env import DIMS, MAX_STEPS, RTG_SCALE, split_name
from RATE_model.config import ConfigError
from RATE_model.data import DataError, EpisodeStore, WindowDataset, check_array, dt_style, load_hdf5, load_pickle
from RATE_model.data import with_returns_to_go as _with_rtg
from RATE_model.logger import read_wandb_config
from RATE_model.store import fingerprint, open_or_write

READER_VERSION = 1  # part of a store's key: a changed reader rebuilds stores
DATA_DIR = Path(__file__).resolve().parent.parent / "MuJoCo_data"  # the default data folder (generator output)


def d4rl_filename(name: str) -> str:
    """D4RL's own file name of dataset ``name``: ``hopper-medium-replay`` -> ``hopper_medium_replay-v2.hdf5``."""
    env, kind = split_name(name)
    return f"{env}_{kind.replace('-', '_')}-v2.hdf5"


def candidates(data_dir: Path, name: str) -> list[Path]:
    """The files that can hold dataset ``name`` in ``data_dir``, in the order they are preferred."""
    d = Path(data_dir)
    return [d / f"{name}-v2.pkl", d / d4rl_filename(name), d / f"{name}-v5.hdf5"]


def find_dataset(data_dir: Path, name: str) -> Path | None:
    """The first file of :func:`candidates` that exists, else None."""
    return next((p for p in candidates(data_dir, name) if p.is_file()), None)


# ------------------------------------------------------------------------------------------ readers
def _checked(ep: dict[str, Any], state_dim: int, act_dim: int, source: str) -> dict[str, np.ndarray]:
    """obs float32 [T, state_dim], action float32 [T, act_dim], reward float32 [T], all finite."""
    obs = np.asarray(ep["observations"])
    T = len(obs)
    if T == 0:
        raise DataError(f"{source}: empty trajectory")
    check_array("observations", obs, shape=(T, state_dim), dtype="number", finite=True, source=source)
    check_array("actions", np.asarray(ep["actions"]), shape=(T, act_dim), dtype="number", finite=True, source=source)
    check_array("rewards", np.asarray(ep["rewards"]).reshape(-1), shape=(T,), dtype="number", finite=True,
                source=source)
    return {"obs": obs.astype(np.float32), "action": np.asarray(ep["actions"], np.float32),
            "reward": np.asarray(ep["rewards"], np.float32).reshape(-1)}


def _d4rl_arrays(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The datasets of a D4RL-layout hdf5 file (next_observations and timeouts if it has them) and the
    bounds [n + 1] of its complete episodes (see the module docstring for where episodes end)."""
    data = load_hdf5(path, ("observations", "actions", "rewards", "terminals"),
                     optional=("next_observations", "timeouts"))
    N = len(data["rewards"])
    for k in data:
        check_array(k, data[k], shape=(N, *data[k].shape[1:]), source=path)
    ends = data["terminals"].astype(bool)
    if "timeouts" in data:
        ends |= data["timeouts"].astype(bool)
    else:  # the reference's rule for files without timeouts: an episode lasts at most 1000 steps
        ends = _ends_without_timeouts(ends)
    stops = np.flatnonzero(ends) + 1
    if len(stops) == 0:
        raise DataError(f"{path} holds no complete episode (no terminals or timeouts among {N} steps)")
    return data, np.concatenate([[0], stops])


def split_d4rl(path: Path, fields: tuple[str, ...] = ("observations", "actions", "rewards")
               ) -> list[dict[str, np.ndarray]]:
    """The complete episodes of a D4RL-layout hdf5 file as dicts of ``fields`` (those the file has)."""
    data, bounds = _d4rl_arrays(path)
    keep = [k for k in fields if k in data]
    return [{k: data[k][a:b] for k in keep} for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def read_d4rl(path: Path, env: str) -> list[dict[str, np.ndarray]]:
    """The complete episodes (obs, action, reward) of a D4RL-layout hdf5 file, checked."""
    state_dim, act_dim = DIMS[env]
    data, bounds = _d4rl_arrays(path)
    whole = _checked({k: data[k][:bounds[-1]] for k in ("observations", "actions", "rewards")}, state_dim,
                     act_dim, str(path))  # shapes and NaN checked once, on every kept step
    return [{k: v[a:b] for k, v in whole.items()} for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _ends_without_timeouts(terminals: np.ndarray) -> np.ndarray:
    ends, t = terminals.copy(), 0
    for i, term in enumerate(terminals):
        t += 1
        if term or t == MAX_STEPS:
            ends[i], t = True, 0
    return ends


def read_reference_pickle(path: Path, env: str) -> list[dict[str, np.ndarray]]:
    """The trajectories of the reference's pickle: a list of dicts with observations, actions, rewards."""
    state_dim, act_dim = DIMS[env]
    trajectories = load_pickle(path)
    if not isinstance(trajectories, list) or not trajectories:
        raise DataError(f"{path} must hold a non-empty list of trajectory dicts, found {type(trajectories).__name__}")
    out = []
    for i, tr in enumerate(trajectories):
        missing = {"observations", "actions", "rewards"} - set(tr) if isinstance(tr, dict) else {"a dict"}
        if missing:
            raise DataError(f"{path}: trajectory {i} lacks {sorted(missing)}")
        out.append(_checked(tr, state_dim, act_dim, f"{path}: trajectory {i}"))
    return out


def read_dataset(path: Path, env: str) -> list[dict[str, np.ndarray]]:
    """Episodes (obs, action, reward) of a pickle or hdf5 dataset file."""
    return read_reference_pickle(path, env) if Path(path).suffix == ".pkl" else read_d4rl(path, env)


# ------------------------------------------------------------------------------------------ store and windows
def mujoco_store(source: Path, env: str, store_dir: Path) -> EpisodeStore:
    """The episode store of dataset file ``source`` in ``store_dir`` (obs, action, reward, rtg), built on
    first use and rebuilt when the file changes."""
    key = [fingerprint(source), {"reader": READER_VERSION, "env": env}]

    def episodes() -> Iterator[tuple[dict[str, np.ndarray], str]]:
        for i, ep in enumerate(read_dataset(source, env)):
            yield _with_rtg(ep), f"{Path(source).name}#{i}"

    return open_or_write(store_dir, key, episodes)


def state_stats(store: EpisodeStore, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+1e-6, as the reference) of the states over every step of the store, read in chunks."""
    mean, std = store.moments("obs", chunk)
    return mean, std + np.float32(1e-6)


def mujoco_dataset(store: EpisodeStore, window: int, n_windows: int, starts: str = "covering") -> WindowDataset:
    """Decision Transformer's windows over the store (padded windows kept; ``starts``: see
    :func:`RATE_model.data.dt_style`), return-to-go / 1000."""
    return dt_style(store, window, n_windows, starts, rtg_scale=RTG_SCALE)


def data_folder(data_dir: Path | None) -> Path:
    """The data folder: ``data_dir`` if given, else wandb_config.yaml's ``mujoco: data_dir_prefix:`` (the
    paper README's key), else MuJoCo/MuJoCo_data."""
    if data_dir:
        return Path(data_dir)
    try:
        configured = (read_wandb_config().get("mujoco") or {}).get("data_dir_prefix")
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"wandb_config.yaml: {e}") from None
    return Path(configured) if configured else DATA_DIR
