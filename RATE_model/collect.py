"""Write generated episodes as ``<out_dir>/episode_<index>.npz`` files: in parallel, resumable, atomic.

Every environment's data generator is a function ``job(index) -> (episode, stats)`` that depends only on
its settings and ``index``; :func:`collect_episodes` runs the indices whose files are missing in worker
processes (each worker writes its own files, so frames never cross a pipe), shows a progress bar and
records the settings in ``meta.json``, refusing to extend a folder collected with other settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from RATE_model.files import FolderBusy, WriteError, atomic_write, hold_folder, remove_temporary, write_text

Job = Callable[[int], tuple[Mapping[str, np.ndarray], Mapping[str, float]]]
Save = Callable[[Path, int, Mapping[str, np.ndarray]], None]  # (out_dir, index, episode): writes it atomically


def episode_path(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / f"episode_{index:06d}.npz"


def save_episode(path: Path, episode: Mapping[str, np.ndarray], compressed: bool = True) -> None:
    """A (compressed) .npz, written atomically: an interrupted run never leaves a truncated file."""
    with atomic_write(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **episode)


def check_meta(out_dir: Path, meta: Mapping[str, Any]) -> None:
    """Create ``out_dir`` and its ``meta.json``, or check that the folder holds episodes made with ``meta``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "meta.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != dict(meta):
            raise ValueError(f"{out_dir} holds episodes collected with {old}, not {dict(meta)}; "
                             "use another --out_dir or delete the folder")
    else:
        write_text(path, json.dumps(dict(meta), indent=2))


def save_indexed(out_dir: Path, index: int, episode: Mapping[str, np.ndarray]) -> None:
    """The default writer of :func:`collect_episodes`: ``<out_dir>/episode_<index>.npz``."""
    save_episode(episode_path(out_dir, index), episode)


def _write(job: Job, save: Save, out_dir: Path, index: int) -> tuple[int, Mapping[str, float]]:
    episode, stats = job(index)
    save(out_dir, index, episode)
    return len(next(iter(episode.values()))), stats


def _init_worker(init: Callable[[], None] | None) -> None:
    cv2 = sys.modules.get("cv2")  # image envs resize with OpenCV: one process per core already
    if cv2 is not None:
        cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the pool
    if init is not None:
        init()


def collect_episodes(out_dir: Path, n_episodes: int, job: Job, meta: Mapping[str, Any], workers: int | None = None,
                     progress: bool = True, desc: str = "episodes",
                     worker_init: Callable[[], None] | None = None, context: str = "fork",
                     path_of: Callable[[Path, int], Path] = episode_path, save: Save = save_indexed) -> dict[str, Any]:
    """Make sure ``out_dir`` holds episodes 0..n_episodes-1; returns counts, summed job stats, the speed and the
    size of the files this call wrote (``mb_written``).

    ``worker_init``
    runs in each worker at start; on Ctrl-C or an error the workers get SIGTERM, so a job that owns a
    subprocess (a simulator) should install a SIGTERM handler there that closes it. ``context``: the start
    method of the workers (fork starts fastest; an env whose renderer is not fork-safe passes "forkserver").
    ``path_of(out_dir, index)`` is the file whose existence marks item ``index`` done and ``save`` writes an
    item (default: one ``.npz`` per episode; Atari writes replay checkpoints instead). ``job`` and ``save``
    must be picklable (module-level functions or ``functools.partial`` of them).
    """
    if n_episodes < 1:
        raise ValueError(f"--n_episodes must be >= 1, got {n_episodes}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    check_meta(out_dir, meta)
    with _holding(Path(out_dir)):
        return _collect(Path(out_dir), n_episodes, job, workers, progress, desc, worker_init, context, path_of, save)


@contextlib.contextmanager
def _holding(out_dir: Path) -> Iterator[None]:
    """``out_dir`` for this process alone (a second generator on it waits, then finds the episodes made),
    its temporary files of killed workers removed before and after."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hold_folder(out_dir, wait=False))
        except FolderBusy:
            print(f"waiting for the other process writing {out_dir} to end", file=sys.stderr, flush=True)
            stack.enter_context(hold_folder(out_dir))
        remove_temporary(out_dir)
        try:
            yield
        finally:
            remove_temporary(out_dir)


def _collect(out_dir: Path, n_episodes: int, job: Job, workers: int, progress: bool, desc: str,
             worker_init: Callable[[], None] | None, context: str, path_of: Callable[[Path, int], Path],
             save: Save) -> dict[str, Any]:
    todo = [i for i in range(n_episodes) if not path_of(out_dir, i).exists()]
    run = partial(_write, job, save, out_dir)
    t0, steps, totals = time.time(), 0, {}
    bar = tqdm(total=len(todo), desc=desc, disable=not progress)
    pool = None
    if workers == 1 or len(todo) <= 1:
        results = map(run, todo)
    else:
        pool = mp.get_context(context).Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(worker_init,))
        results = pool.imap_unordered(run, todo, chunksize=4)
    try:
        for length, stats in results:
            steps += length
            for k, v in stats.items():
                totals[k] = totals.get(k, 0) + v
            bar.update()
        if pool is not None:  # workers exit normally, running their finalizers (e.g. closing a simulator)
            pool.close()
            pool.join()
    except WriteError as e:
        done = sum(path_of(out_dir, i).exists() for i in range(n_episodes))
        raise WriteError(f"{e}; the {done} of {n_episodes} finished are kept in {out_dir}: free space, then "
                         "rerun the same command to go on") from None
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    seconds = time.time() - t0
    written = sum(path_of(out_dir, i).stat().st_size for i in todo)
    return {"out_dir": str(out_dir), "written": len(todo), "skipped": n_episodes - len(todo), "steps": steps,
            **totals, "seconds": round(seconds, 2),
            "episodes_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
            "mb_written": round(written / 2**20, 2)}


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], dict[str, Any]],
            argv: list[str] | None = None) -> dict[str, Any]:
    """A generator's command line: parse, run, print the stats as one JSON line; a bad value is one line
    on stderr (exit 2), Ctrl-C says how to resume (exit 130)."""
    args = parser.parse_args(argv)
    try:
        stats = run(args)
    except (ValueError, RuntimeError, OSError) as e:  # OSError: a WriteError, a folder that cannot be made
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    print(json.dumps(stats))
    return stats
