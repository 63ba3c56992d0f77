"""Trajectory windows in memory, padding, and per-epoch batch orders (SPEC §2).

A window holds K·N steps; a shorter trajectory is padded at the end with its last observation,
action -10, return-to-go 0 and valid = False.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from RATE_model.encoders import ACTION_PAD


class DataError(ValueError):
    """Missing, corrupt or inconsistent training data; the message names the file or field."""


def check_array(name: str, array: Any, *, shape: Sequence[int | None] | None = None,
                dtype: str | type | np.dtype | None = None, finite: bool = False,
                source: str | Path | None = None) -> np.ndarray:
    """Return ``array`` if it has the expected shape, dtype and values; raise DataError naming the
    file (``source``) and field (``name``) otherwise.

    ``shape``: expected shape, ``None`` entries match any size. ``dtype``: an exact dtype, or a kind
    (``"integer"``, ``"floating"``, ``"bool"``, ``"number"``). ``finite``: reject NaN and inf.
    """
    where = f"{source}: {name}" if source is not None else name
    if not isinstance(array, np.ndarray):
        raise DataError(f"{where} is a {type(array).__name__}, expected an array")
    if shape is not None and (array.ndim != len(shape)
                              or any(e is not None and e != a for e, a in zip(shape, array.shape, strict=True))):
        want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
        raise DataError(f"{where} has shape {array.shape}, expected {want}")
    if dtype is not None:
        kinds = {"integer": np.integer, "floating": np.floating, "bool": np.bool_, "number": np.number}
        ok = (np.issubdtype(array.dtype, kinds[dtype]) or (dtype == "number" and array.dtype == np.bool_)
              if isinstance(dtype, str) and dtype in kinds else array.dtype == np.dtype(dtype))
        if not ok:
            raise DataError(f"{where} has dtype {array.dtype}, expected "
                            f"{dtype if isinstance(dtype, str) else np.dtype(dtype)}")
    if finite and np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DataError(f"{where} holds NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return array


def _unreadable(path: Path, e: BaseException) -> DataError:
    first = str(e).splitlines()[0] if str(e) else ""
    return DataError(f"{path} is corrupt or unreadable ({type(e).__name__}: {first})")


def load_npz(path: str | Path, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file; any read failure or missing field is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in fields if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks fields {missing} (has {sorted(f.files)})")
            return {k: f[k] for k in fields}
    except DataError:
        raise
    except Exception as e:  # np.load raises many types for truncated/foreign files
        raise _unreadable(path, e) from None


def load_pickle(path: str | Path) -> Any:
    """The object in a pickle file (trusted data only); any read failure is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:  # UnpicklingError, EOFError, ValueError, AttributeError, ...
        raise _unreadable(path, e) from None


def load_hdf5(path: str | Path, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """The named datasets of an HDF5 file (e.g. D4RL's ``observations``, ``actions``); any read failure
    or missing dataset is a DataError naming the file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in fields if k not in f]
            if missing:
                raise DataError(f"{path} lacks datasets {missing}")
            return {k: f[k][()] for k in fields}
    except DataError:
        raise
    except Exception as e:  # OSError for truncated or foreign files, KeyError, TypeError
        raise _unreadable(path, e) from None


def returns_to_go(rewards: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Suffix sums of ``rewards`` [T] times ``scale``: R_t = scale * sum_{t' >= t} r_t'."""
    return (np.cumsum(rewards[::-1])[::-1] * scale).astype(np.float32)


def pad_window(obs: np.ndarray, actions: np.ndarray, rtg: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Pad one trajectory (or cut it) to ``length`` steps; returns obs, action, rtg [T, 1], valid."""
    n = min(len(obs), length)
    pad = length - n
    obs_p = np.concatenate([obs[:n], np.repeat(obs[n - 1:n], pad, axis=0)]) if pad else obs[:n]
    act = actions[:n]
    act_pad = np.full((pad, *act.shape[1:]), ACTION_PAD, dtype=act.dtype)
    return {
        "obs": obs_p,
        "action": np.concatenate([act, act_pad]) if pad else act,
        "rtg": np.concatenate([rtg[:n], np.zeros(pad, np.float32)])[:, None].astype(np.float32),
        "valid": np.arange(length) < n,
    }


def stack_windows(windows: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    """Stack padded windows into batched tensors."""
    if not windows:
        raise DataError("no trajectories to stack: the dataset is empty")
    return {k: torch.from_numpy(np.stack([w[k] for w in windows])) for k in windows[0]}


@dataclass
class Trajectories:
    """Fixed-length trajectory windows held as tensors: obs [n, T, ...], action [n, T], rtg [n, T, 1], valid [n, T]."""

    tensors: dict[str, Tensor]
    obs_transform: Callable[[Tensor], Tensor] | None = None  # e.g. uint8 -> float / 255

    def __post_init__(self) -> None:
        n = {k: v.shape[0] for k, v in self.tensors.items()}
        if len(set(n.values())) != 1:
            raise DataError(f"trajectory fields disagree on the number of windows: {n}")
        missing = {"obs", "action", "rtg", "valid"} - set(self.tensors)
        if missing:
            raise DataError(f"trajectory data lacks fields: {sorted(missing)}")

    def __len__(self) -> int:
        return self.tensors["obs"].shape[0]

    @property
    def window(self) -> int:
        return self.tensors["obs"].shape[1]

    def batch(self, idx: Tensor, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """The windows at ``idx`` moved to ``device`` (observations transformed there)."""
        out = {k: v[idx].to(device, non_blocking=True) for k, v in self.tensors.items()}
        if self.obs_transform is not None:
            out["obs"] = self.obs_transform(out["obs"])
        return out

    @staticmethod
    def concat(parts: list[Trajectories]) -> Trajectories:
        """One dataset from several with the same window length."""
        keys = parts[0].tensors.keys()
        return Trajectories({k: torch.cat([p.tensors[k] for p in parts]) for k in keys}, parts[0].obs_transform)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> list[Tensor]:
    """The batch index lists of one epoch; a pure function of (seed, epoch) so a resumed run sees the
    same order."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    batches = list(perm.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def segments(batch: dict[str, Tensor], K: int) -> Iterator[dict[str, Tensor]]:
    """Split a batch of K·N-step windows into N segments of K steps, stopping after the last segment
    that holds any valid step (the rest would contribute nothing)."""
    T = batch["valid"].shape[1]
    last = int(batch["valid"].any(0).nonzero().max()) + 1 if batch["valid"].any() else 0
    for s in range(0, min(T, -(-last // K) * K), K):
        yield {k: v[:, s:s + K] for k, v in batch.items()}
