"""Reading episode files safely: one-line :class:`DataError` naming the file and field for anything
missing, truncated, corrupt or of the wrong shape, dtype or value."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


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


def file_fields(path: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The fields ``names`` that the ``.npz`` episode file ``path`` has (the others, frames included, are
    not read)."""
    with np.load(path) as f:
        return {k: f[k] for k in names if k in f}


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


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a class or function its reader does not admit (it was not imported, nor run)."""

    def __init__(self, module: str, name: str):
        super().__init__(f"refusing to load {module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports only the globals of ``allowed`` ((module, name) -> object) and refuses
    every other with :class:`RefusedGlobal`, so loading a file never runs code from it."""

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any] | None = None):
        super().__init__(file)
        self.allowed = allowed or {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def _numpy_array_globals() -> dict[tuple[str, str], Any]:
    """What pickles of numpy arrays and scalars (inside lists and dicts) name, under numpy 1.x's module
    paths (``numpy.core``: the reference's files) and 2.x's (``numpy._core``). The functions are taken
    from numpy's own ``__reduce__`` output, so no private module is imported."""
    reconstruct = np.ndarray((0,)).__reduce__()[0]  # protocols 0-4
    frombuffer = np.arange(1).__reduce_ex__(5)[0]  # protocol 5
    scalar = np.float64(0).__reduce__()[0]  # numpy scalars
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}  # protocol 2's bytes
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    dtypes = getattr(np, "dtypes", None)  # the DType classes (numpy >= 1.25)
    for name in dir(dtypes) if dtypes is not None else ():
        cls = getattr(dtypes, name)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            allowed[("numpy.dtypes", name)] = cls
    return allowed


NUMPY_ARRAY_GLOBALS = _numpy_array_globals()


def load_pickle(path: str | Path) -> Any:
    """The object in a pickle file of numpy arrays in lists and dicts (the reference's MuJoCo datasets).
    Any other class or function in it is refused unrun; that and any read failure is a DataError naming
    the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, NUMPY_ARRAY_GLOBALS).load()
    except RefusedGlobal as e:
        raise DataError(f"{path} holds a pickled {e.qualname}, which a data file of arrays never holds; "
                        "refused without loading it (unpickling it could run code)") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, AttributeError, ...
        raise _unreadable(path, e) from None


def load_hdf5(path: str | Path, fields: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The named datasets of an HDF5 file (e.g. D4RL's ``observations``, ``actions``), plus those of
    ``optional`` that it has; any read failure or missing dataset is a DataError naming the file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in fields if k not in f]
            if missing:
                raise DataError(f"{path} lacks datasets {missing}")
            return {k: f[k][()] for k in (*fields, *optional) if k in f}
    except DataError:
        raise
    except Exception as e:  # OSError for truncated or foreign files, KeyError, TypeError
        raise _unreadable(path, e) from None


def load_image_episode(path: str | Path, fields: Sequence[str], obs_shape: Sequence[int], n_actions: int,
                       remedy: str) -> dict[str, np.ndarray]:
    """One generated episode file, checked: obs uint8 [T, *obs_shape], action integer [T] in
    0..n_actions-1, reward finite [T], and every other field of ``fields`` [T]. Any problem is a
    DataError naming the file and field, ending with ``remedy`` (how to regenerate it)."""
    try:
        ep = load_npz(path, fields)
        T = len(ep["action"]) if ep["action"].ndim else 0
        if T == 0:
            raise DataError(f"{path} holds an empty episode")
        check_array("obs", ep["obs"], shape=(T, *obs_shape), dtype=np.uint8, source=path)
        check_array("action", ep["action"], shape=(T,), dtype="integer", source=path)
        check_array("reward", ep["reward"], shape=(T,), dtype="number", finite=True, source=path)
        for name in fields:
            if name not in ("obs", "action", "reward"):
                check_array(name, ep[name], shape=(T,), source=path)
        if ep["action"].min() < 0 or ep["action"].max() >= n_actions:
            raise DataError(f"{path}: action holds values outside 0..{n_actions - 1}")
    except DataError as e:
        raise DataError(f"{e}; {remedy}") from None
    return ep
