"""Atari training data: the DQN-replay layout (the published dataset, and ours from
``get_data/collect_replay.py``) read into the shared episode store with Decision Transformer's sampling.

The layout: ``<root>/<Game>/<run>/replay_logs/<name>_ckpt.<N>.gz``, one gzip stream per element and
checkpoint N, each the output of ``np.save`` — ``$store$_observation`` (n, 84, 84) uint8,
``$store$_action`` (n,) int32, ``$store$_reward`` (n,) float32 (not clipped), ``$store$_terminal`` (n,)
uint8, ``invalid_range`` (the indices next to the write cursor) — and ``add_count``, the number of
transitions ever added (a pickled int). The arrays are dopamine's circular buffer: when add_count > n,
the oldest transition sits at add_count % n. Every episode starts with 3 all-zero padding transitions.

Decision Transformer's sampling (``create_dataset.py``): draw a checkpoint uniformly from the last 50
(0..49), take the next trajectories after where the last visit to that checkpoint stopped, repeat until
500 000 transitions; trajectories end at terminals. What we do differently, on purpose:

* 10 trajectories per visit (the reference's off-by-one takes 11);
* the trajectory that was cut by the start of a checkpoint (it began before the oldest transition) and
  the one still running at its end are dropped, as are the padding transitions; the reference keeps the
  partial ones, the padding, and trajectories whose start it then discards when a visit runs out;
* a visit that runs out keeps the complete trajectories it found, and an exhausted checkpoint is not
  drawn again (the reference restarts the visit and can loop forever);
* trajectories are read in chronological order (from add_count), up to ``max_index`` transitions per
  checkpoint (the reference's 100 000, in storage order).

Observations are read by streaming each gzip file once, keeping only the rows of the chosen trajectories,
so a 1M-transition checkpoint (7 GB of frames) never sits in memory; the store keeps single frames and
stacks 4 at batch time (steps before an episode's start repeat its first frame).
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from Atari.Atari_src.atari_env import N_ACTIONS
from RATE_model.data import DataError, RestrictedUnpickler, WindowDataset, dt_style, returns_to_go, uint8_to_float
from RATE_model.files import atomic_write
from RATE_model.store import EpisodeStore, fingerprint, open_or_write

ELEMENTS = {"observation": np.uint8, "action": np.int32, "reward": np.float32, "terminal": np.uint8}
FRAME = (84, 84)
PAD = 3  # zero transitions dopamine writes before every episode (frame stack 4 - 1)
N_BUFFERS = 50  # the reference draws from checkpoints 0..49
TRANSITIONS = 500_000
PER_VISIT = 10
MAX_INDEX = 100_000  # the reference's replay_capacity: only the first 100 000 transitions of a checkpoint
FRAME_STACK = 4
HOW = ("set --data_dir (or `atari: data:` in wandb_config.yaml) to a DQN-replay folder, or generate one with "
       "python3 Atari/get_data/collect_replay.py --game {game}")
_CKPT = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


def replay_logs(root: Path, game: str, run: int | str = 1) -> Path:
    return Path(root) / game / str(run) / "replay_logs"


def element_file(logs: Path, name: str, n: int) -> Path:
    """File of checkpoint ``n``: ``name`` is an element (observation, action, ...), ``add_count`` or
    ``invalid_range``."""
    prefix = "$store$_" if name in ELEMENTS else ""
    return Path(logs) / f"{prefix}{name}_ckpt.{n}.gz"


# ------------------------------------------------------------------------------------------ writing
def write_checkpoint(logs: Path, n: int, observation: np.ndarray, action: np.ndarray, reward: np.ndarray,
                     terminal: np.ndarray, add_count: int | None = None, compresslevel: int = 1) -> None:
    """Checkpoint ``n`` in the DQN-replay layout (what dopamine's ``OutOfGraphReplayBuffer.save`` writes):
    the arrays are the buffer's storage, ``add_count`` defaults to their length (a buffer filled once).
    Each file is written under a temporary name and renamed, observation last (it marks completeness)."""
    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    size = len(terminal)
    add_count = size if add_count is None else int(add_count)
    cursor = add_count % size
    invalid = (cursor - 1 + np.arange(PAD + 2)) % size  # dopamine: update horizon 1, stack 4

    def put(name: str, value: int | np.ndarray) -> None:
        with atomic_write(element_file(logs, name, n)) as raw, gzip.open(raw, "wb", compresslevel=compresslevel) as f:
            if isinstance(value, np.ndarray):
                np.save(f, value, allow_pickle=False)
            else:
                pickle.dump(value, f)

    put("add_count", add_count)
    put("invalid_range", invalid)
    for name, arr in (("action", action), ("reward", reward), ("terminal", terminal), ("observation", observation)):
        put(name, np.asarray(arr, ELEMENTS[name]))


def buffer_of_episodes(episodes: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One checkpoint's arrays from whole episodes (obs [T, 84, 84], action, reward [T]), each preceded
    by the 3 zero transitions dopamine adds and ending with terminal = 1."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ELEMENTS}
    for ep in episodes:
        T = len(ep["reward"])
        term = np.zeros(PAD + T, np.uint8)
        term[-1] = 1
        parts["observation"].append(np.concatenate([np.zeros((PAD, *FRAME), np.uint8), ep["obs"]]))
        parts["action"].append(np.concatenate([np.zeros(PAD, np.int32), ep["action"]]).astype(np.int32))
        parts["reward"].append(np.concatenate([np.zeros(PAD, np.float32), ep["reward"]]).astype(np.float32))
        parts["terminal"].append(term)
    return {k: np.concatenate(v) for k, v in parts.items()}


# ------------------------------------------------------------------------------------------ reading
# gzip.BadGzipFile is an OSError; a stream cut short raises EOFError; a garbled one zlib.error
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, pickle.UnpicklingError, TypeError)


def _corrupt(path: Path, e: BaseException | str) -> DataError:
    why = e if isinstance(e, str) else f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    return DataError(f"{path} is truncated or corrupt ({why}); copy or generate this checkpoint again")


def read_add_count(path: Path) -> int:
    """The ``add_count`` file: a pickled int (dopamine), or an ``np.save``d scalar. The pickle may name no
    class or function at all (an int needs none): anything that would import code is refused."""
    try:
        with gzip.open(path) as f:
            raw = f.read()
        stream = io.BytesIO(raw)
        value = np.load(stream) if raw.startswith(b"\x93NUMPY") else RestrictedUnpickler(stream).load()  # no globals
        return int(value)
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from None


def _open_npy(f: Any, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if read is None:
        raise _corrupt(path, f".npy format version {version}")
    shape, fortran, dtype = read(f)
    if fortran:
        raise _corrupt(path, "Fortran-ordered array")
    return tuple(shape), np.dtype(dtype)


def read_array(path: Path, dtype: Any, ndim: int = 1) -> np.ndarray:
    """A whole small element file (action, reward, terminal, invalid_range), checked."""
    try:
        with gzip.open(path) as f:
            arr = np.load(f, allow_pickle=False)
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from None
    if arr.ndim != ndim or not np.can_cast(arr.dtype, dtype, "same_kind"):
        raise DataError(f"{path} holds {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} with {ndim} dimension(s)")
    return arr.astype(dtype, copy=False)


def read_rows(path: Path, ranges: Sequence[tuple[int, int]], shape: tuple[int, ...],
              dtype: Any) -> Iterator[np.ndarray]:
    """Rows lo..hi-1 of the gzipped ``.npy`` at ``path`` for each (lo, hi) of ``ranges`` (sorted, disjoint),
    streamed: one pass over the file, only the requested rows in memory. ``shape`` is the expected array
    shape, checked against the header."""
    try:
        with gzip.open(path) as f:
            got_shape, got_dtype = _open_npy(f, path)
            if got_shape != tuple(shape) or got_dtype != np.dtype(dtype):
                raise DataError(f"{path} holds {got_dtype} {got_shape}, expected {np.dtype(dtype)} {tuple(shape)}")
            row = int(np.prod(shape[1:], dtype=np.int64)) * got_dtype.itemsize
            base = f.tell()
            for lo, hi in ranges:
                f.seek(base + lo * row)
                buf = f.read((hi - lo) * row)
                if len(buf) != (hi - lo) * row:
                    raise _corrupt(path, f"ends before row {hi}")
                yield np.frombuffer(buf, got_dtype).reshape(hi - lo, *shape[1:])
    except _READ_ERRORS as e:
        raise _corrupt(path, e) from None


def checkpoint_files(logs: Path, n: int) -> list[Path]:
    """The six files of checkpoint ``n``; DataError naming the first one missing."""
    files = [element_file(logs, name, n) for name in (*ELEMENTS, "add_count", "invalid_range")]
    for f in files:
        if not f.exists():
            raise DataError(f"checkpoint {n} of {logs} is incomplete: {f.name} is missing "
                            "(some published runs lack a checkpoint: choose others with --buffers)")
    return files


class Checkpoint:
    """The trajectories of one checkpoint, from its small files: ``episodes`` [k, 2] are (start, end)
    positions in chronological order (padding included, end exclusive) of the complete trajectories
    among the first ``max_index`` transitions; position p is storage index (first + p) % size."""

    def __init__(self, logs: Path, n: int, max_index: int = MAX_INDEX):
        self.logs, self.n = Path(logs), n
        checkpoint_files(logs, n)
        terminal = read_array(element_file(logs, "terminal", n), np.uint8)
        self.size = size = len(terminal)
        add_count = read_add_count(element_file(logs, "add_count", n))
        invalid = read_array(element_file(logs, "invalid_range", n), np.int64)
        if size == 0 or add_count < 1:
            raise DataError(f"checkpoint {n} of {logs} is empty (add_count {add_count}, {size} transitions)")
        cursor = add_count % size
        if len(invalid) and (invalid[0] + 1) % size != cursor:  # dopamine: indices cursor-1 .. cursor+3
            raise DataError(f"{element_file(logs, 'invalid_range', n)} does not match add_count {add_count} "
                            f"({size} transitions): the checkpoint's files come from different saves")
        full = add_count > size  # something was overwritten: the oldest trajectory may have lost its start
        self.first = cursor if full else 0
        chrono = terminal[(self.first + np.arange(min(add_count, size, max_index))) % size]
        ends = np.flatnonzero(chrono) + 1
        # a full buffer's oldest trajectory began before its oldest transition: only whole ones after it
        starts = ends[:-1] if full else np.concatenate([[0], ends[:-1]])
        self.episodes = np.stack([starts, ends[1:] if full else ends], 1).astype(np.int64)

    @property
    def lengths(self) -> np.ndarray:
        """Transitions per trajectory without its padding."""
        return np.maximum(self.episodes[:, 1] - self.episodes[:, 0] - PAD, 1)

    def read(self, chosen: Sequence[int], game: str) -> Iterator[tuple[dict[str, np.ndarray], str]]:
        """The trajectories ``chosen`` (indices into ``episodes``) as store episodes, streamed."""
        size, logs, n = self.size, self.logs, self.n
        action = read_array(element_file(logs, "action", n), np.int32)
        reward = read_array(element_file(logs, "reward", n), np.float32)
        for name, arr in (("action", action), ("reward", reward)):
            if len(arr) != size:
                raise DataError(f"{element_file(logs, name, n)} has {len(arr)} entries, the terminal file {size}")
        if not np.isfinite(reward).all():
            raise DataError(f"{element_file(logs, 'reward', n)} holds NaN or infinite rewards")
        if action.min() < 0 or action.max() >= N_ACTIONS[game]:
            raise DataError(f"{element_file(logs, 'action', n)} holds actions outside {game}'s "
                            f"0..{N_ACTIONS[game] - 1}: is this another game's data?")
        pieces: list[tuple[int, int, int]] = []  # (storage lo, storage hi, trajectory): a wrapped one has two
        for j in chosen:
            s, e = self.episodes[j]
            lo = (self.first + s) % size
            if lo + (e - s) <= size:
                pieces.append((lo, lo + (e - s), j))
            else:
                pieces += [(lo, size, j), (0, lo + (e - s) - size, j)]
        pieces.sort()
        need = Counter(p[2] for p in pieces)
        parts: dict[int, list[np.ndarray]] = {}
        rows = read_rows(element_file(logs, "observation", n), [p[:2] for p in pieces], (size, *FRAME), np.uint8)
        for (_, _, j), frames in zip(pieces, rows, strict=True):
            parts.setdefault(j, []).append(frames)
            if len(parts[j]) < need[j]:
                continue
            s, e = self.episodes[j]
            idx = (self.first + np.arange(s, e)) % size
            got = parts.pop(j)  # in storage order: a wrapped trajectory's piece at the storage end comes first
            frames = np.concatenate(got[::-1])
            skip = 0
            while skip < min(PAD, len(idx) - 1) and not frames[skip].any() and action[idx[skip]] == 0:
                skip += 1
            r = reward[idx[skip:]]
            yield ({"obs": np.ascontiguousarray(frames[skip:]), "action": action[idx[skip:]].astype(np.int8),
                    "reward": r, "rtg": returns_to_go(r)},
                   f"{game} checkpoint {n} trajectory {j}")


def find_checkpoints(logs: Path) -> list[int]:
    """Checkpoint numbers with an observation file, ascending."""
    return sorted(int(m.group(1)) for p in Path(logs).glob("*_ckpt.*.gz") if (m := _CKPT.match(p.name)))


def default_buffers(logs: Path) -> list[int]:
    """The reference's checkpoints 0..49, or the last 50 below 50 that the folder's numbering reaches."""
    found = find_checkpoints(logs)
    if not found:
        return []
    hi = min(found[-1], N_BUFFERS - 1)
    return list(range(max(0, hi - N_BUFFERS + 1), hi + 1))


def dt_plan(lengths: Sequence[np.ndarray], n_transitions: int, per_visit: int,
            rng: np.random.Generator) -> tuple[list[list[int]], int]:
    """Decision Transformer's draw: until ``n_transitions`` are taken, pick a buffer uniformly among those
    with trajectories left and take its next ``per_visit`` trajectories. Returns, per buffer, the chosen
    trajectory indices (consecutive from 0), and the transitions taken."""
    taken = [0] * len(lengths)
    live = [b for b, ls in enumerate(lengths) if len(ls)]
    total = 0
    while total < n_transitions and live:
        b = live[int(rng.integers(len(live)))]
        stop = min(taken[b] + per_visit, len(lengths[b]))
        total += int(lengths[b][taken[b]:stop].sum())
        taken[b] = stop
        if stop == len(lengths[b]):
            live.remove(b)
    return [list(range(t)) for t in taken], total


def atari_store(root: Path, game: str, run: int | str = 1, buffers: Sequence[int] | None = None,
                n_transitions: int = TRANSITIONS, per_visit: int = PER_VISIT, max_index: int = MAX_INDEX,
                seed: int = 0, store_dir: Path | None = None, progress: bool = True) -> EpisodeStore:
    """The episode store of Decision Transformer's sample of ``<root>/<game>/<run>``: built on first use
    into ``store_dir`` (default ``<root>/<game>/<run>/store_<seed>``), reused while the checkpoint files
    and the settings are unchanged."""
    logs = replay_logs(root, game, run)
    if not logs.is_dir():
        raise DataError(f"{logs} is not a folder; " + HOW.format(game=game))
    buffers = default_buffers(logs) if buffers is None else list(buffers)
    if not buffers:
        raise DataError(f"no checkpoint files ($store$_observation_ckpt.<N>.gz) in {logs}; " + HOW.format(game=game))
    settings = {"layout": "dqn-replay", "game": game, "buffers": buffers, "n_transitions": n_transitions,
                "per_visit": per_visit, "max_index": max_index, "seed": seed}
    key = [settings] + [fingerprint(f) for b in buffers for f in checkpoint_files(logs, b)]

    def episodes() -> Iterator[tuple[dict[str, np.ndarray], str]]:
        """Only when the store must be (re)built: read the checkpoints' terminals, draw, stream the frames."""
        ckpts = [Checkpoint(logs, b, max_index)
                 for b in tqdm(buffers, desc=f"{game} checkpoints", disable=None if progress else True, leave=False)]
        chosen, total = dt_plan([c.lengths for c in ckpts], n_transitions, per_visit, np.random.default_rng(seed))
        if total == 0:
            raise DataError(f"no complete trajectory in checkpoints {buffers[0]}..{buffers[-1]} of {logs}")
        if total < n_transitions:
            print(f"{logs}: the checkpoints hold only {total} transitions in complete trajectories "
                  f"(asked for {n_transitions}); using them all", file=sys.stderr, flush=True)
        bar = tqdm(total=total, desc=f"{game} episode store", unit="step", disable=None if progress else True,
                   leave=False)
        for ckpt, ids in zip(ckpts, chosen, strict=True):
            for ep, src in ckpt.read(ids, game):
                bar.update(len(ep["reward"]))
                yield ep, src
        bar.close()

    return open_or_write(store_dir or logs.parent / f"store_{seed}", key, episodes)


def atari_dataset(store: EpisodeStore, window: int, n_windows: int | None = None,
                  starts: str = "covering") -> WindowDataset:
    """Decision-Transformer windows (a fresh draw of ``n_windows`` each epoch; ``starts``: see
    :func:`RATE_model.data.dt_style`) of ``window`` steps, observations the 4 last frames as float in [0, 1]."""
    return dt_style(store, window, n_windows, starts, frame_stack=FRAME_STACK, obs_transform=uint8_to_float)
