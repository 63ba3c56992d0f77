"""What the MuJoCo test files share: D4RL-layout files written by hand, the tiny continuous-action model, the
one-line error check, and one torch thread per module."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent
# the paper README's --env_id table, 0..11
PAPER_TABLE = ["halfcheetah-medium", "halfcheetah-medium-replay", "halfcheetah-expert",
               "walker2d-medium", "walker2d-medium-replay", "walker2d-expert",
               "hopper-medium", "hopper-medium-replay", "hopper-expert",
               "halfcheetah-medium-expert", "walker2d-medium-expert", "hopper-medium-expert"]
QUIET = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_thread


def one_line(e: object) -> str:
    """The text of an error (a pytest ExceptionInfo, an exception or captured stderr), which must be one line."""
    text = str(e.value if hasattr(e, "value") else e).strip()
    assert "\n" not in text, text
    return text


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a 2-core machine torch's idle intra-op threads spin and starve the evaluation's
    env worker processes (the --smoke run took 60 s instead of 6 s with 2 threads), and this file's models
    are too small to gain from a second thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def d4rl_arrays(lengths: list[int], ends: list[str], tail: int = 0, state_dim: int = 11, act_dim: int = 3,
                seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """D4RL-layout arrays of episodes of ``lengths`` ending in ``ends`` ("terminal" | "timeout"), plus
    ``tail`` steps of an unfinished episode; and the complete episodes as the reader should return them."""
    rng = np.random.default_rng(seed)
    n = sum(lengths) + tail
    data = {"observations": rng.normal(size=(n, state_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    data["next_observations"] = np.roll(data["observations"], -1, 0)
    stops = np.cumsum(lengths)
    for stop, end in zip(stops, ends, strict=True):
        data["terminals" if end == "terminal" else "timeouts"][stop - 1] = True
    episodes = [{"obs": data["observations"][a:b], "action": data["actions"][a:b], "reward": data["rewards"][a:b]}
                for a, b in zip([0, *stops[:-1]], stops, strict=True)]
    return data, episodes


def write_h5(path: Path, data: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if k not in skip:
                f.create_dataset(k, data=v)
    return path


def write_d4rl_file(path: Path, lengths: list[int], ends: list[str] | None = None, tail: int = 0,
                    **kw) -> list[dict[str, np.ndarray]]:
    """A D4RL-layout hdf5 file (every episode ends with a terminal unless ``ends`` says otherwise);
    returns its complete episodes."""
    data, episodes = d4rl_arrays(lengths, ends or ["terminal"] * len(lengths), tail, **kw)
    write_h5(path, data)
    return episodes


def assert_same_episodes(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == {"obs", "action", "reward"}
        for k in ("obs", "action", "reward"):
            assert g[k].dtype == np.float32
            np.testing.assert_array_equal(g[k], w[k])


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


def mujoco_config(mode: str = "RATE", mean=None, std=None, state_dim: int = 11, act_dim: int = 3, **kw):
    env_kwargs = {"state_dim": state_dim, "act_dim": act_dim}
    if mean is not None:
        env_kwargs.update(state_mean=list(map(float, mean)), state_std=list(map(float, std)))
    return tiny_config(mode, env="mujoco", env_kwargs=env_kwargs, **kw)


def continuous_batch(B: int, T: int, state_dim: int = 11, act_dim: int = 3, scale: float = 1.0,
                     offset: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randn(B, T, state_dim, generator=g) * scale + offset,
            "rtg": torch.randn(B, T, 1, generator=g),
            "action": torch.rand(B, T, act_dim, generator=g) * 2 - 1,
            "valid": torch.ones(B, T, dtype=torch.bool)}

