"""Episode store: every step of every episode stored once, one ``.npy`` file per field, on disk or in RAM.

A store folder holds::

    meta.json      version, fields {name: {dtype, shape}}, n_episodes, n_steps, sources
    offsets.npy    int64 [n_episodes + 1]: episode i is rows offsets[i]:offsets[i+1] of every field
    <field>.npy    [n_steps, *shape], e.g. obs uint8 [n_steps, 3, 84, 84]

The field files are standard ``.npy`` (``np.load(path, mmap_mode="r")`` opens them), but training
reads rows with ``os.preadv`` instead of a memory map: mapped pages count toward the process's resident
memory, so a map over a 10 GB store shows a 10 GB RSS after one epoch, while pread goes through the
page cache, which the kernel reclaims freely.

:func:`open_or_build` builds a store from an environment's episode files on first use (progress bar),
reuses it while those files are unchanged (name, size and modification time of each), and rebuilds it
when they change. A truncated or corrupt store is a :class:`DataError` naming the file; it is never
deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from RATE_model.datafiles import DataError
from RATE_model.files import hold_folder, write_failure

VERSION = 1
HEADER_BYTES = 256  # fixed .npy header size, so a field file can be streamed before its length is known
META, OFFSETS = "meta.json", "offsets.npy"


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header of exactly HEADER_BYTES bytes (padded with spaces, as numpy does)."""
    text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    body = text.encode("latin1")
    pad = HEADER_BYTES - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER_BYTES - 10) + body + b" " * pad + b"\n"


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a C-ordered ``.npy`` file, parsed by numpy's own header readers;
    DataError naming the file otherwise."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{path} is corrupt or unreadable ({type(e).__name__}: {first}); "
                        "delete the store folder to rebuild it") from None
    if fortran:
        raise DataError(f"{path} is in Fortran order; delete the store folder to rebuild it")
    return tuple(shape), np.dtype(dtype), offset


class NpyField:
    """One field file of a store, read by row ranges with ``os.preadv`` (no memory map).

    Picklable for DataLoader workers started with spawn or forkserver: the file is reopened per process.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, data_offset: int):
        self.path, self.shape, self.dtype, self.data_offset = Path(path), tuple(shape), np.dtype(dtype), data_offset
        self.row_bytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _file(self) -> int:
        if self._pid != os.getpid():  # first use in this process (a forked worker must not share our fd)
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd  # type: ignore[return-value]

    def read_into(self, row: int, out: np.ndarray) -> None:
        """Fill the C-contiguous ``out`` [n, *shape] with rows row..row+n-1."""
        view = memoryview(out).cast("B")
        pos, fd = self.data_offset + row * self.row_bytes, self._file()
        while view.nbytes:
            got = os.preadv(fd, [view], pos)
            if got <= 0:
                raise DataError(f"{self.path} ends early (row {row}): the store is truncated; "
                                "delete the store folder to rebuild it")
            view, pos = view[got:], pos + got


class EpisodeStore:
    """Episodes of step-aligned fields: ``fields[name]`` [n_steps, *shape] (arrays in RAM or :class:`NpyField`
    on disk) and ``offsets`` [n_episodes + 1]."""

    def __init__(self, fields: Mapping[str, np.ndarray | NpyField], offsets: np.ndarray, path: Path | None = None):
        self.fields, self.offsets, self.path = dict(fields), np.asarray(offsets, np.int64), path
        self.lengths = np.diff(self.offsets)

    @classmethod
    def from_episodes(cls, episodes: Iterable[Mapping[str, np.ndarray]]) -> EpisodeStore:
        """A store in RAM holding ``episodes`` (each a dict of arrays with the same first dimension)."""
        episodes = list(episodes)
        if not episodes:
            raise DataError("no episodes: the dataset is empty")
        lengths = [_episode_length(ep) for ep in episodes]
        fields = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
        return cls(fields, np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def open(cls, path: str | Path) -> EpisodeStore:
        """The store in folder ``path``, checked: meta, offsets, and every field file's shape, dtype and size."""
        path = Path(path)
        meta = read_meta(path)
        n_steps = meta["n_steps"]
        offsets = _load_small(path / OFFSETS)
        if (offsets.ndim != 1 or len(offsets) != meta["n_episodes"] + 1 or offsets[0] != 0
                or offsets[-1] != n_steps or (np.diff(offsets) < 1).any()):
            raise DataError(f"{path / OFFSETS} does not match {path / META} (episode offsets); "
                            "delete the store folder to rebuild it")
        fields = {}
        for name, spec in meta["fields"].items():
            file = path / f"{name}.npy"
            shape, dtype, offset = _read_npy_header(file)
            want_shape, want_dtype = (n_steps, *spec["shape"]), np.dtype(spec["dtype"])
            if shape != want_shape or dtype != want_dtype:
                raise DataError(f"{file} holds {dtype} {shape}, expected {want_dtype} {want_shape}; "
                                "delete the store folder to rebuild it")
            field = NpyField(file, tuple(spec["shape"]), dtype, offset)
            size, expected = file.stat().st_size, offset + n_steps * field.row_bytes
            if size != expected:
                raise DataError(f"{file} has {size} bytes, expected {expected}: the store is truncated or corrupt; "
                                "delete the store folder to rebuild it")
            fields[name] = field
        return cls(fields, offsets, path)

    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def n_steps(self) -> int:
        return int(self.offsets[-1])

    def spec(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """Per-step shape and dtype of field ``name``."""
        f = self.fields[name]
        return (f.shape[1:], f.dtype) if isinstance(f, np.ndarray) else (f.shape, f.dtype)

    def head(self, n: int) -> EpisodeStore:
        """The first ``n`` episodes (no copy)."""
        return EpisodeStore(self.fields, self.offsets[:n + 1], self.path)

    def take(self, name: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Field ``name`` at global step indices ``rows`` [b, ...] -> [b, ..., *shape] (into ``out`` if given).

        On disk, each window ``rows[i]`` is served by one contiguous read of rows min..max (the windows of
        the samplers are contiguous up to padding and frame stacking), then indexed in RAM."""
        f = self.fields[name]
        if isinstance(f, np.ndarray):
            return f[rows] if out is None else np.take(f, rows, axis=0, out=out)
        shape, dtype = self.spec(name)
        if out is None:
            out = np.empty((*rows.shape, *shape), dtype)
        flat_rows = rows.reshape(len(rows), -1)
        flat_out = out.reshape(len(rows), flat_rows.shape[1], *f.shape)
        for r, o in zip(flat_rows, flat_out, strict=True):  # one read per window, not per step
            lo, hi = int(r.min()), int(r.max()) + 1
            if hi - lo == len(r) and (np.diff(r) == 1).all():
                f.read_into(lo, o)
            else:
                block = np.empty((hi - lo, *f.shape), f.dtype)
                f.read_into(lo, block)
                o[...] = block[r - lo]
        return out

    def in_memory(self) -> EpisodeStore:
        """The same episodes with every field read into RAM (a small dataset: batches need no disk reads, so
        the trainer needs no DataLoader workers)."""
        if self.path is None:
            return self
        rows = np.arange(self.n_steps)[None]
        return EpisodeStore({k: self.take(k, rows)[0] for k in self.fields}, self.offsets)

    def moments(self, name: str, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (float32, per element of the step's shape) of field ``name`` over every
        step, read ``chunk`` steps at a time in float64 (a store on disk is never loaded whole)."""
        total = np.zeros(self.spec(name)[0], np.float64)
        total_sq = np.zeros_like(total)
        for lo in range(0, self.n_steps, chunk):
            x = self.take(name, np.arange(lo, min(lo + chunk, self.n_steps))[None])[0].astype(np.float64)
            total += x.sum(0)
            total_sq += (x * x).sum(0)
        mean = total / max(self.n_steps, 1)
        std = np.sqrt(np.maximum(total_sq / max(self.n_steps, 1) - mean * mean, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All fields of episode ``i``."""
        rows = np.arange(self.offsets[i], self.offsets[i + 1])[None]
        return {k: self.take(k, rows)[0] for k in self.fields}


def _episode_length(ep: Mapping[str, np.ndarray], source: Any = None) -> int:
    lengths = {k: len(v) for k, v in ep.items()}
    where = f"{source}: " if source is not None else ""
    if len(set(lengths.values())) != 1:
        raise DataError(f"{where}fields disagree on the episode length: {lengths}")
    n = next(iter(lengths.values()))
    if n < 1:
        raise DataError(f"{where}empty episode")
    return n


def _load_small(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path} is corrupt or unreadable ({type(e).__name__}); "
                        "delete the store folder to rebuild it") from None


def read_meta(path: Path) -> dict[str, Any]:
    """A store's meta.json, checked for the keys every reader needs."""
    file = Path(path) / META
    try:
        meta = json.loads(file.read_text())
        ok = (isinstance(meta, dict) and isinstance(meta.get("fields"), dict) and isinstance(meta.get("n_steps"), int)
              and isinstance(meta.get("n_episodes"), int) and isinstance(meta.get("sources"), list))
    except (OSError, ValueError) as e:
        raise DataError(f"{file} is missing or unreadable ({type(e).__name__}); "
                        "delete the store folder to rebuild it") from None
    if not ok:
        raise DataError(f"{file} is not an episode-store description; delete the store folder to rebuild it")
    return meta


class StoreWriter:
    """Streams episodes into a new store folder; the folder appears only when :meth:`close` succeeds.

    The first episode fixes the fields, per-step shapes and dtypes; a later episode that differs is a
    DataError naming its source. Memory use is one episode at a time."""

    def __init__(self, path: str | Path, sources: list[Any] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.building-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.sources = sources or []
        self.files: dict[str, Any] = {}
        self.specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.lengths: list[int] = []

    def append(self, episode: Mapping[str, np.ndarray], source: Any = None) -> None:
        n = _episode_length(episode, source)
        if not self.files:
            for k, v in episode.items():
                self.specs[k] = (tuple(v.shape[1:]), v.dtype)
                self.files[k] = open(self.tmp / f"{k}.npy", "wb")  # noqa: SIM115 (closed in close/abort)
                self.files[k].write(b"\0" * HEADER_BYTES)
        where = f"{source}: " if source is not None else ""
        if set(episode) != set(self.specs):
            raise DataError(f"{where}fields {sorted(episode)} differ from the first episode's {sorted(self.specs)}")
        for k, v in episode.items():
            if (tuple(v.shape[1:]), v.dtype) != self.specs[k]:
                raise DataError(f"{where}{k} is {v.dtype} {v.shape[1:]} per step, the first episode's is "
                                f"{self.specs[k][1]} {self.specs[k][0]}")
            self.files[k].write(memoryview(np.ascontiguousarray(v)).cast("B"))
        self.lengths.append(n)

    def close(self) -> EpisodeStore:
        """Write headers, offsets and meta.json, move the folder into place (replacing an older store) and
        return the store opened from disk."""
        if not self.lengths:
            self.abort()
            raise DataError(f"no episodes to store in {self.path}")
        n_steps = int(sum(self.lengths))
        for k, f in self.files.items():
            f.seek(0)
            f.write(_npy_header(self.specs[k][1], (n_steps, *self.specs[k][0])))
            f.close()
        np.save(self.tmp / OFFSETS, np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64))
        meta = {"version": VERSION, "n_episodes": len(self.lengths), "n_steps": n_steps,
                "fields": {k: {"dtype": np.lib.format.dtype_to_descr(d), "shape": list(s)}
                           for k, (s, d) in self.specs.items()},
                "sources": self.sources}
        (self.tmp / META).write_text(json.dumps(meta))
        old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
        if self.path.exists():
            self.path.rename(old)
        self.tmp.rename(self.path)
        if old.exists():
            shutil.rmtree(old)
        return EpisodeStore.open(self.path)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def fingerprint(path: Path) -> list[Any]:
    """What identifies a source file's version: [name, size, modification time in ns]."""
    st = Path(path).stat()
    return [Path(path).name, st.st_size, st.st_mtime_ns]


def open_or_build(path: str | Path, sources: Sequence[Path], read: Callable[[Path], Mapping[str, np.ndarray]],
                  progress: bool = True, desc: str = "building episode store") -> EpisodeStore:
    """The store at ``path`` holding the episodes of the files ``sources`` (in order), each read with
    ``read`` (which raises DataError naming a bad file).

    Built on first use; reused while the source files are unchanged, also for a prefix of the files it
    was built from (fewer episodes requested); rebuilt, with a note on stderr, when they change."""
    sources = list(sources)
    if not sources:
        raise DataError(f"no episode files to build {path} from")
    prints = [fingerprint(p) for p in sources]

    def episodes() -> Iterator[tuple[Mapping[str, np.ndarray], Any]]:
        for src in tqdm(sources, desc=desc, disable=None if progress else True, leave=False):
            yield read(src), src

    return open_or_write(path, prints, episodes, reuse_prefix=True)


def open_or_write(path: str | Path, key: list[Any],
                  episodes: Callable[[], Iterable[tuple[Mapping[str, np.ndarray], Any]]],
                  reuse_prefix: bool = False) -> EpisodeStore:
    """The store at ``path`` described by ``key`` (JSON values: source fingerprints, sampling settings),
    written from ``episodes()`` — (episode, source) pairs — on first use or when the stored key differs
    (with a note on stderr). With ``reuse_prefix`` a store whose key starts with ``key`` (one entry per
    episode) is reused for its first ``len(key)`` episodes. Holds a lock on the parent folder, so
    torchrun ranks write a store once."""
    path = Path(path)
    key = json.loads(json.dumps(key))  # the form meta.json gives back (tuples become lists)
    path.parent.mkdir(parents=True, exist_ok=True)
    with hold_folder(path.parent):  # torchrun ranks write a store once: the others wait, then read it
        for leftover in path.parent.glob(f".{path.name}.building-*"):  # from a killed build; we hold the lock
            shutil.rmtree(leftover, ignore_errors=True)
        if path.exists():
            meta = read_meta(path)
            stored = meta["sources"][:len(key)] if reuse_prefix else meta["sources"]
            if meta.get("version") == VERSION and stored == key:
                store = EpisodeStore.open(path)
                return store.head(len(key)) if reuse_prefix else store
            print(f"{path}: its sources or settings changed since this store was built; rebuilding it",
                  file=sys.stderr, flush=True)
        try:
            with StoreWriter(path, key) as writer:
                for episode, src in episodes():
                    writer.append(episode, source=src)
                return writer.close()
        except OSError as e:  # a read-only data folder, a full disk, ...
            raise write_failure(path, e, "the partial store was removed; the episode files it is made from "
                                         "are untouched") from None
