"""Training windows over an episode store, their samplers, and the DataLoader that feeds the trainer (SPEC §2).

A window is ``(episode, start)``: steps start .. start+L-1 of one episode. Steps past the episode's end
are padding: observation = the episode's last observation, action -10, return-to-go 0, valid False.
Return-to-go is computed over the whole episode when the store is built, then sliced.

Three samplers, each a window table on top of the same gather:

* :func:`consecutive` — windows covering each episode back to back, the last one padded (T-Maze,
  Minigrid-Memory, ViZDoom);
* :func:`dt_style` — a fresh draw every epoch, as in Decision Transformer (Atari, MuJoCo), by default with
  every step of an episode, its first ones included, in at least as many windows as a middle step;
* :func:`fixed_offsets` — windows at offsets 0, s, 2s, … kept by a predicate (Memory Maze).

With ``frame_stack`` S > 1 each step's observation is the stack of its S last stored frames, built at
batch time; steps before the episode start repeat its first frame.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm.auto import tqdm

from RATE_model.datafiles import (
    DataError,
    RefusedGlobal,
    RestrictedUnpickler,
    check_array,
    file_fields,
    load_hdf5,
    load_image_episode,
    load_npz,
    load_pickle,
)
from RATE_model.encoders import ACTION_PAD
from RATE_model.files import WriteError, atomic_write
from RATE_model.store import EpisodeStore, open_or_build

__all__ = ["STORE", "WINDOW_STARTS", "WINDOW_STARTS_HELP", "DataError", "EpisodeStore", "RefusedGlobal",
           "RestrictedUnpickler", "Trajectories", "WindowDataset", "Windows", "batch_loader", "check_array",
           "consecutive", "dt_style", "embedded", "epoch_batches", "episode_files", "episode_store", "file_fields",
           "fixed_offsets", "folder_store", "load_hdf5", "load_image_episode", "load_npz", "load_pickle",
           "returns_to_go", "uint8_to_float", "weights_key"]


def returns_to_go(rewards: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Suffix sums of ``rewards`` [T] times ``scale``: R_t = scale * sum_{t' >= t} r_t'."""
    return (np.cumsum(rewards[::-1])[::-1] * scale).astype(np.float32)


def with_returns_to_go(episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The episode's obs, action and reward plus its return-to-go ``rtg`` (float32 [T]): the one the reader
    gave (e.g. over a whole episode of which only the first steps are kept), else the rewards' suffix sums."""
    rtg = episode["rtg"] if "rtg" in episode else returns_to_go(episode["reward"])
    return {"obs": episode["obs"], "action": episode["action"], "reward": episode["reward"],
            "rtg": np.asarray(rtg, np.float32)}


def uint8_to_float(obs: Tensor) -> Tensor:
    """Batch transform: uint8 pixels -> float in [0, 1]."""
    return obs.float().div_(255.0)


def episode_store(path: str | Path, sources: Sequence[Path], read: Callable[[Path], Mapping[str, np.ndarray]],
                  progress: bool = True, desc: str = "building episode store") -> EpisodeStore:
    """The on-disk store of the episode files ``sources`` (obs, action, reward from ``read``, plus rtg),
    built on first use and rebuilt when the files change (see :func:`RATE_model.store.open_or_build`)."""
    return open_or_build(path, sources, lambda p: with_returns_to_go(read(p)), progress, desc)


STORE = "store"  # the episode store's folder inside a folder of episode files


def episode_files(data_dir: str | Path, pattern: str = "episode_*.npz") -> list[Path]:
    """The episode files of a data folder in name (= index) order."""
    return sorted(Path(data_dir).glob(pattern))


def folder_store(data_dir: str | Path, read: Callable[[Path], Mapping[str, np.ndarray]], how: str,
                 max_episodes: int | None = None, progress: bool = True, desc: str = "building episode store",
                 pattern: str = "episode_*.npz") -> EpisodeStore:
    """The episode store ``<data_dir>/store`` of the first ``max_episodes`` episode files of ``data_dir``
    (see :func:`episode_store`); a missing folder or no files is a DataError ending with ``how``, the
    command that makes them."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data_dir {data_dir} is not a folder; create episodes with {how}")
    files = episode_files(data_dir, pattern)[:max_episodes]
    if not files:
        raise DataError(f"no {pattern} files in {data_dir}; create them with {how}")
    return episode_store(data_dir / STORE, files, read, progress, desc)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


# ---------------------------------------------------------------------------------------- window sources
class Windows(Dataset):
    """What the trainer reads: windows of ``window`` steps, a batch per item.

    ``epoch_windows(seed, epoch)`` lists the keys of one epoch's windows (a pure function of its
    arguments, so a resumed run sees the same windows); ``self[keys]`` gathers them as CPU tensors
    obs [b, L, ...] (raw, e.g. uint8), action [b, L] (or [b, L, A]), rtg [b, L, 1], valid [b, L];
    :meth:`to_device` moves a batch and applies ``obs_transform`` there (uint8 crosses the bus, not float).
    """

    obs_transform: Callable[[Tensor], Tensor] | None = None
    in_memory: bool = True  # all data in RAM: gathering is cheap, DataLoader workers would only add overhead

    def epoch_windows(self, seed: int, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, keys: np.ndarray) -> dict[str, Tensor]:
        raise NotImplementedError

    def to_device(self, raw: dict[str, Tensor], device: torch.device | str = "cpu") -> dict[str, Tensor]:
        out = {k: v.to(device, non_blocking=True) for k, v in raw.items()}
        if self.obs_transform is not None:
            out["obs"] = self.obs_transform(out["obs"])
        return out

    def batch(self, idx: Tensor | np.ndarray | Sequence[int], device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Windows ``idx`` of the first epoch's list (seed 0), on ``device`` with observations transformed."""
        return self.to_device(self[self.epoch_windows(0, 0)[np.asarray(idx, dtype=np.int64)]], device)


@dataclass
class Trajectories(Windows):
    """Windows held as tensors: obs [n, T, ...], action [n, T], rtg [n, T, 1], valid [n, T]; keys are indices."""

    tensors: dict[str, Tensor]
    obs_transform: Callable[[Tensor], Tensor] | None = None

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

    def epoch_windows(self, seed: int, epoch: int) -> np.ndarray:
        return np.arange(len(self))

    def __getitem__(self, keys: np.ndarray) -> dict[str, Tensor]:
        idx = torch.as_tensor(np.asarray(keys), dtype=torch.long)
        return {k: v[idx] for k, v in self.tensors.items()}


class WindowDataset(Windows):
    """Windows of ``window`` steps over an :class:`EpisodeStore`; keys are rows ``(episode, start)``.

    ``windows`` is the fixed window table [n, 2], or a function of a NumPy generator returning a fresh
    table of ``n_windows`` rows each epoch. ``rtg_scale`` multiplies the stored return-to-go."""

    def __init__(self, store: EpisodeStore, window: int,
                 windows: np.ndarray | Callable[[np.random.Generator], np.ndarray], n_windows: int | None = None,
                 frame_stack: int = 1, rtg_scale: float = 1.0,
                 obs_transform: Callable[[Tensor], Tensor] | None = None):
        missing = {"obs", "action", "rtg"} - set(store.fields)
        if missing:
            raise DataError(f"episode store {store.path or '(in memory)'} lacks fields {sorted(missing)}")
        self.store, self.window, self.frame_stack, self.rtg_scale = store, window, frame_stack, rtg_scale
        self.obs_transform = obs_transform
        self.in_memory = store.path is None
        if callable(windows):
            if n_windows is None:
                raise ValueError("a window-drawing function needs n_windows")
            self._draw, self._n = windows, n_windows
        else:
            self._table = np.asarray(windows, np.int64).reshape(-1, 2)
            self._draw, self._n = None, len(self._table)
        if self._n == 0:
            raise DataError(f"no training windows in episode store {store.path or '(in memory)'}")

    def __len__(self) -> int:
        return self._n

    def epoch_windows(self, seed: int, epoch: int) -> np.ndarray:
        if self._draw is None:
            return self._table
        return self._draw(np.random.default_rng([seed, epoch]))

    def _steps(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Episode index [b], step within the episode [b, L] (past the end: the last step) and valid [b, L]."""
        keys = np.asarray(keys, np.int64).reshape(-1, 2)
        ep, steps = keys[:, 0], keys[:, 1:2] + np.arange(self.window)
        last = self.store.lengths[ep][:, None] - 1
        return ep, np.minimum(steps, last), steps <= last

    def __getitem__(self, keys: np.ndarray) -> dict[str, Tensor]:
        s = self.store
        ep, steps, valid = self._steps(keys)
        rows = s.offsets[ep][:, None] + steps  # padding repeats the last step
        obs_rows = stacked(rows, s.offsets[ep][:, None], self.frame_stack) if self.frame_stack > 1 else rows
        shape, dtype = s.spec("obs")
        obs = torch.empty((*obs_rows.shape, *shape), dtype=_torch_dtype(dtype))
        if get_worker_info() is not None:  # in a DataLoader worker: gather straight into shared memory,
            obs.share_memory_()            # so the batch reaches the main process without another copy
        s.take("obs", obs_rows, out=obs.numpy())
        action = s.take("action", rows)
        action = action.astype(np.int64 if np.issubdtype(action.dtype, np.integer) else np.float32)
        action[~valid] = ACTION_PAD
        rtg = s.take("rtg", rows).astype(np.float32) * np.float32(self.rtg_scale)
        rtg[~valid] = 0.0
        return {"obs": obs, "action": torch.from_numpy(action),
                "rtg": torch.from_numpy(rtg[..., None]), "valid": torch.from_numpy(valid)}

    def with_store(self, store: EpisodeStore, obs_transform: Callable[[Tensor], Tensor] | None) -> WindowDataset:
        """The same windows and epochs over another store of the same steps (e.g. one whose ``obs``
        are cached encodings)."""
        if not np.array_equal(store.offsets, self.store.offsets):
            raise ValueError("the new store must hold the same episodes and steps")
        other = copy.copy(self)
        other.store, other.obs_transform, other.in_memory = store, obs_transform, store.path is None
        return other

    @property
    def tensors(self) -> dict[str, Tensor]:
        """Every window of the first epoch as one batch (for small datasets: inspection and tests)."""
        return self[self.epoch_windows(0, 0)]

    def window_sums(self, windows: np.ndarray, field: str = "reward") -> np.ndarray:
        """Sum of ``field`` over the valid steps of each window (e.g. reward collected inside it)."""
        ep, steps, valid = self._steps(windows)
        return (self.store.take(field, self.store.offsets[ep][:, None] + steps) * valid).sum(1)


def stacked(rows: np.ndarray, first: np.ndarray, frame_stack: int) -> np.ndarray:
    """Rows of the frames stacked at each of ``rows`` [...]: ``rows − S + 1 … rows`` [..., S], clamped at
    ``first`` (the row of each one's episode start, broadcast against ``rows``): an episode's first steps
    repeat its first frame."""
    back = rows[..., None] - np.arange(frame_stack - 1, -1, -1)
    return np.maximum(back, np.asarray(first)[..., None])


def episode_starts(store: EpisodeStore, rows: np.ndarray) -> np.ndarray:
    """The row of the first step of the episode each global step row belongs to."""
    return store.offsets[np.searchsorted(store.offsets, rows, side="right") - 1]


def frames_at(store: EpisodeStore, rows: np.ndarray, frame_stack: int = 1) -> np.ndarray:
    """Observations at the global step rows ``rows`` [n] -> [n, *obs] (``frame_stack`` S > 1: [n, S, *frame], each
    step's last S frames, clamped at its episode's start). Consecutive rows are one read (with the S − 1 frames
    before them), others one read per step."""
    rows = np.asarray(rows, np.int64)
    if len(rows) and (np.diff(rows) == 1).all():
        first = max(int(rows[0]) - frame_stack + 1, 0)
        block = store.take("obs", np.arange(first, int(rows[-1]) + 1)[None])[0]
        return block[stacked(rows, episode_starts(store, rows), frame_stack) - first] if frame_stack > 1 \
            else block
    if frame_stack == 1:
        return store.take("obs", rows)
    return store.take("obs", stacked(rows, episode_starts(store, rows), frame_stack))


@torch.no_grad()
def embedded(data: Windows, encode: Callable[[Tensor], Tensor], batch_size: int = 1024,
             progress: bool = True, device: torch.device | str = "cpu", key: str | None = None) -> Windows:
    """``data`` with every stored observation replaced by ``encode(obs_transform(obs))`` [d], computed once
    (float32, in RAM): training a model whose observation encoder is frozen then skips the encoder, whose
    outputs cannot change (the model takes [B, T, d] observations as encoded, ``Encoders.embed_obs``).
    Frames are encoded on ``device`` (the encoder's); the cache stays on the CPU. With frame stacking (Atari)
    each step's encoding is that of its stack, and the returned windows stack nothing. Only
    :class:`WindowDataset`.

    ``key`` (the encoder's :func:`weights_key`) keeps the encodings of a store on disk beside it, in
    ``<store>/encodings/<key>-<steps>.npy``, and reads them back on the next call with the same encoder, frame
    stack, transform and steps: runs that share a frozen encoder encode the store once."""
    if not isinstance(data, WindowDataset):
        raise DataError("a frozen encoder's cache needs windows over an episode store")
    s, S = data.store, data.frame_stack
    file = None
    if key is not None and s.path is not None:
        steps = weights_key([torch.from_numpy(s.offsets)], S, getattr(data.obs_transform, "__qualname__", None),
                            torch.device(device).type)
        file = Path(s.path) / "encodings" / f"{key}-{steps}.npy"
    out = _read_encodings(file, s.n_steps) if file is not None and file.exists() else None
    if out is None:
        out = _encode_store(data, encode, batch_size, progress, device)
        if file is not None:
            _write_encodings(file, out)
    fields = {k: s.take(k, np.arange(s.n_steps)[None])[0] for k in s.fields if k != "obs"}
    cached = data.with_store(EpisodeStore({**fields, "obs": out}, s.offsets), None)
    cached.frame_stack = 1
    return cached


def weights_key(tensors: Iterable[Tensor] | torch.nn.Module, *extra: Any) -> str:
    """A short digest of a module's parameters and buffers (or of ``tensors``) and ``extra`` values: equal
    exactly when the values, shapes and dtypes are."""
    if isinstance(tensors, torch.nn.Module):
        tensors = tensors.state_dict().values()
    h = hashlib.sha256(repr(extra).encode())
    for x in tensors:
        x = x.detach().cpu().contiguous()
        h.update(f"{x.dtype}{tuple(x.shape)}".encode())
        h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()[:16]


def _read_encodings(file: Path, n_steps: int) -> np.ndarray | None:
    """The cached encodings in ``file``, or None (and the file removed) when it is unreadable or of the wrong
    length: the cache is rebuilt, never trusted."""
    try:
        out = np.load(file)
        if out.ndim == 2 and len(out) == n_steps and out.dtype == np.float32:
            return out
    except (OSError, ValueError):
        pass
    file.unlink(missing_ok=True)
    return None


def _write_encodings(file: Path, out: np.ndarray) -> None:
    """Write the encodings atomically (a partial file never takes the cache's name); a read-only store folder
    only costs the cache."""
    with contextlib.suppress(WriteError), atomic_write(file) as f:
        np.save(f, out)


def _encode_store(data: WindowDataset, encode: Callable[[Tensor], Tensor], batch_size: int, progress: bool,
                  device: torch.device | str) -> np.ndarray:
    s, S = data.store, data.frame_stack
    out = None
    for lo in tqdm(range(0, s.n_steps, batch_size), desc="encoding the frames once (frozen encoder)", unit="batch",
                   disable=not progress, leave=False):
        rows = np.arange(lo, min(lo + batch_size, s.n_steps))
        obs = torch.from_numpy(frames_at(s, rows, S)).to(device)
        if data.obs_transform is not None:
            obs = data.obs_transform(obs)
        z = encode(obs).float().cpu().numpy()
        if out is None:
            out = np.empty((s.n_steps, *z.shape[1:]), np.float32)
        out[rows] = z
    return out


# ---------------------------------------------------------------------------------------- samplers
def consecutive(store: EpisodeStore, window: int, episodes: np.ndarray | None = None, **kw: Any) -> WindowDataset:
    """Windows covering every episode (or only the store indices ``episodes``) back to back: starts 0, L, 2L,
    … < length; the last one padded."""
    eps = np.arange(store.n_episodes) if episodes is None else np.asarray(episodes, np.int64)
    per_ep = -(-store.lengths[eps] // window)
    ep = np.repeat(eps, per_ep)
    first = np.repeat(np.cumsum(per_ep) - per_ep, per_ep)
    return WindowDataset(store, window, np.stack([ep, (np.arange(len(ep)) - first) * window], 1), **kw)


WINDOW_STARTS = ("covering", "uniform")
WINDOW_STARTS_HELP = ("where training windows start: covering (default) puts every step of an episode, its first ones "
                      "included, in at least as many windows as a middle step; uniform is Decision Transformer's draw "
                      "(start uniform over the steps: an episode's first step in 1/window as many)")


def dt_style(store: EpisodeStore, window: int, n_windows: int | None = None, starts: str = "covering",
             **kw: Any) -> WindowDataset:
    """Decision-Transformer sampling, redrawn every epoch; windows running past an episode's end are padded.
    ``n_windows`` per epoch defaults to n_steps / window, one pass over the data in expectation.

    ``starts="uniform"`` is the reference's draw: episode ∝ its length, start uniform over its steps. Step
    t < window of an episode then lies in t + 1 possible windows against ``window`` for a middle step, so an
    episode's first steps are trained on up to ``window`` times less often (hopper-medium, window 60: 0.2
    windows per episode hold its first step, 11.5 a middle step), yet every evaluation episode starts there.
    ``starts="covering"`` (the default): episode ∝ length + window − 1, start = max(0, u) with u uniform over
    −(window − 1) … length − 1, so every step lies in at least as many windows as a middle step (step
    t < window in window + t) and no window starts before its episode: a memory model begins each episode
    from its initial memory, as in evaluation."""
    if starts not in WINDOW_STARTS:
        raise ValueError(f"window starts {starts!r} is not one of {', '.join(WINDOW_STARTS)}")
    n = n_windows or max(1, store.n_steps // window)
    before = window - 1 if starts == "covering" else 0
    return WindowDataset(store, window, partial(_draw_dt_style, store.lengths, n, before), n, **kw)


def _draw_dt_style(lengths: np.ndarray, n: int, before: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows (episode, start): episode ∝ length + before, start max(0, u), u uniform over −before … length − 1."""
    weight = lengths + before
    ep = rng.choice(len(lengths), size=n, p=weight / weight.sum())
    return np.stack([ep, np.maximum(rng.integers(-before, lengths[ep]), 0)], 1)


def fixed_offsets(store: EpisodeStore, window: int, stride: int, stop: int,
                  keep: Callable[[WindowDataset, np.ndarray], np.ndarray] | None = None, **kw: Any) -> WindowDataset:
    """Windows at offsets 0, stride, 2·stride, … below ``stop`` that lie wholly inside their episode and
    pass ``keep(dataset, windows) -> bool mask`` (e.g. ``dataset.window_sums(w) >= 2``)."""
    offsets = np.arange(0, stop, stride)
    table = np.stack(np.broadcast_arrays(np.arange(store.n_episodes)[:, None], offsets[None]), -1).reshape(-1, 2)
    table = table[table[:, 1] + window <= store.lengths[table[:, 0]]]
    if keep is not None and len(table):
        table = table[keep(WindowDataset(store, window, table, **kw), table)]
    return WindowDataset(store, window, table, **kw)


# ---------------------------------------------------------------------------------------- order and loading
def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> list[Tensor]:
    """The batch index lists of one epoch; a pure function of (seed, epoch) so a resumed run sees the
    same order."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    batches = list(perm.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


# Workers start from a clean server process, not by forking the training process: a forked worker shares
# the trainer's heap copy-on-write, and the trainer's next writes then copy page after page (measured:
# the first T-Maze step of every epoch took 11.9 s instead of 2.6 s). So datasets must pickle (they do:
# a store pickles as its index and file names).
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _worker_init(_: int) -> None:
    # Ctrl-C / SIGTERM reach the whole process group; the main process stops cleanly (checkpoint first)
    # and shuts its workers down, which must not die mid-batch on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def default_workers(data: Windows) -> int:
    """DataLoader worker processes: none for data in RAM, else half the cores (1 to 4)."""
    return 0 if data.in_memory else min(4, max(1, (os.cpu_count() or 2) // 2))


def batch_loader(data: Windows, batches: Sequence[np.ndarray], num_workers: int = 0,
                 pin_memory: bool = False) -> Iterator[dict[str, Tensor]]:
    """The batches (lists of window keys) gathered in order, by ``num_workers`` worker processes reading
    ahead while the model trains (in this process when 0)."""
    workers = dict(num_workers=num_workers, prefetch_factor=2, worker_init_fn=_worker_init,
                   multiprocessing_context=_START_METHOD) if num_workers else {}
    loader = DataLoader(data, sampler=batches, batch_size=None, pin_memory=pin_memory,
                        generator=torch.Generator(), **workers)  # own generator: the global RNG stream stays untouched
    return iter(loader)
