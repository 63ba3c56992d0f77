"""Writing run files safely: every file appears whole or not at all, a full disk is one line that says
what is intact, and a folder can be held by one process at a time.

Every writer of run files (checkpoints, ``config.json``, ``results.json``, figures, generated episodes,
the encoders' and the store's caches) goes through :func:`replacing` / :func:`atomic_write`: the content is
written to a temporary file beside the target and renamed over it only when complete, so the previous
version survives any failure, and the temporary file is removed. A failed write (``ENOSPC``, ``EDQUOT``,
a read-only folder, ...) becomes a :class:`WriteError` whose message names the file and what is intact;
the commands print it on one line and exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class WriteError(OSError):
    """A file could not be written; the message names it and what is intact, ``errno`` is the cause's."""


def write_failure(path: Path, e: OSError, intact: str = "") -> WriteError:
    """The one-line error for a failed write of ``path``; ``intact`` says what survived and how to go on."""
    reason = e.strerror or str(e) or type(e).__name__
    hint = " (free some space or set a folder on another disk)" if e.errno in NO_SPACE else ""
    error = WriteError(f"could not write {path}: {reason}{hint}" + (f"; {intact}" if intact else ""))
    error.errno = e.errno
    return error


@contextlib.contextmanager
def replacing(path: str | Path, intact: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends normally.
    On any failure the temporary file is removed and ``path`` is left as it was; an OSError (a full disk,
    a quota, a read-only folder) becomes a :class:`WriteError` naming ``path`` and ``intact``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):  # a WriteError: another file's, in the block
            raise write_failure(path, e, intact) from None
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, intact: str = "", fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file whose content replaces ``path`` when the block ends (see :func:`replacing`);
    ``fsync``: on disk before the rename (checkpoints: a power cut keeps the old or the new file)."""
    with replacing(path, intact) as tmp, open(tmp, "wb") as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str, intact: str = "") -> None:
    """``text`` (UTF-8) as the whole content of ``path``, atomically."""
    with atomic_write(path, intact) as f:
        f.write(text.encode())


def remove_temporary(folder: str | Path) -> None:
    """Remove the temporary files :func:`replacing` left in ``folder`` when its process was killed; call it
    only while holding the folder (no other process is writing there)."""
    for tmp in Path(folder).glob(".*.tmp[0-9]*"):
        with contextlib.suppress(OSError):
            tmp.unlink()


class FolderBusy(Exception):
    """Another live process holds the folder (see :func:`hold_folder`)."""


@contextlib.contextmanager
def hold_folder(folder: str | Path, wait: bool = True) -> Iterator[None]:
    """An exclusive lock on ``folder`` (which must exist) for the block: ``wait`` blocks until it is free,
    otherwise :class:`FolderBusy` is raised at once. The lock is the kernel's (``flock`` on the folder
    itself), so it leaves no file behind and ends with its process, however that ends. Without
    ``fcntl`` (not POSIX) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderBusy(f"{folder} is held by another running process") from None
        yield
    finally:
        os.close(fd)


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure as ``path`` (its format from the suffix), atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path
