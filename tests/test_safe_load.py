"""Loading a file never runs code from it: checkpoints are read with ``torch.load(weights_only=True)``
(older checkpoints, which hold NumPy's RNG state as an array, still resume exactly), and the reference's
pickles and Atari's ``add_count`` go through an unpickler that admits only what arrays in lists and dicts
need. Anything else is a one-line error naming the file, and the code it carries is not run."""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import io
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from Atari.Atari_src.atari_data import read_add_count
from MuJoCo.MuJoCo_src.mujoco_data import read_reference_pickle
from RATE_model import checkpoint
from RATE_model.checkpoint import CheckpointError
from RATE_model.config import ModelConfig
from RATE_model.data import DataError, Trajectories, load_pickle
from RATE_model.model import RATE
from tests.helpers import fit_tiny, random_batch

ROOT = Path(__file__).resolve().parent.parent
MARKER = "ran_code_marker"  # what the payloads below would create (relative: each test runs in its tmp_path)


class RunsShell:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class RunsExec:
    def __reduce__(self):
        return (builtins.exec, (f"open({MARKER!r}, 'w').close()",))


class WritesFile:
    """Reduces to a bound method (``Path(MARKER).touch``): pickled through builtins.getattr."""

    def __reduce__(self):
        return (Path(MARKER).touch, ())


@dataclasses.dataclass
class Foreign:
    value: int = 1


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / MARKER).exists(), "loading a file ran code from it"


# ------------------------------------------------------------------------------------------ checkpoints
def _old_rng_state() -> dict:
    """rng_state() as the code before weights_only wrote it: NumPy's state as a tuple holding an array."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _data(n=16, T=12):
    return Trajectories(random_batch(n, T, valid_len=[T if i % 2 else 7 for i in range(n)]))


def test_new_checkpoints_hold_only_what_the_safe_unpickler_reads(tmp_path):
    np.random.seed(3)
    np.random.randn()  # a cached Gaussian: part of the legacy state
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"rng": checkpoint.rng_state(), "config": {"a": [1, 2.5, None, "x"]}})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    want = (np.random.randn(4), random.random(), torch.rand(3))
    checkpoint.set_rng_state(checkpoint.load(path)["rng"])
    got = (np.random.randn(4), random.random(), torch.rand(3))
    assert np.array_equal(want[0], got[0]) and want[1] == got[1] and torch.equal(want[2], got[2])


def test_checkpoint_in_the_old_format_resumes_bit_exactly(tmp_path, monkeypatch):
    full = fit_tiny(tmp_path / "full", lambda: [_data(), _data()])
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "rng_state", _old_rng_state)
        np.random.seed(11)
        fit_tiny(tmp_path / "crash", lambda: [_data(), _data()], stop_after=5)
    last = tmp_path / "crash" / "checkpoints" / "last.pt"
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(last)  # really the old format
    key = torch.load(last, weights_only=False)["rng"]["numpy"][1]  # our own file, written just above
    np.random.seed(99)
    torch.manual_seed(123)  # resume must restore every RNG itself
    resumed = fit_tiny(tmp_path / "crash", lambda: [_data(), _data()], resume=last)
    assert resumed.step == full.step == 16
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    checkpoint.set_rng_state(checkpoint.load(last)["rng"])
    assert np.array_equal(np.random.get_state()[1], key)


DEMO = sorted(ROOT.glob("runs/demo/tmaze/*/seed_1/checkpoints/last.pt"))


@pytest.mark.skipif(not DEMO, reason="no demo checkpoints in runs/demo (made by the README's demo)")
@pytest.mark.parametrize("original", DEMO, ids=[p.parts[-4] for p in DEMO])
def test_real_checkpoints_still_load(original, tmp_path):
    """The demo's checkpoints: those written before weights_only (NumPy's state as a tuple) and after."""
    copy = tmp_path / "last.pt"
    shutil.copyfile(original, copy)  # never touch the real file
    ckpt = checkpoint.load(copy)
    trusted = torch.load(copy, map_location="cpu", weights_only=False)
    model = RATE(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    for k, v in trusted["model"].items():
        assert torch.equal(ckpt["model"][k], v), k
    checkpoint.set_rng_state(ckpt["rng"])
    npy = trusted["rng"]["numpy"]  # a tuple before weights_only, a dict of plain types since
    assert np.array_equal(np.random.get_state()[1], npy[1] if isinstance(npy, tuple) else npy["key"].numpy())
    assert ckpt["step"] == trusted["step"] and ckpt["config"] == trusted["config"]


def _torch_saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT_VERSION, "model": {}, "x": obj}, buf)
    return buf.getvalue()


REFUSED = {
    "torch_save_os_system": (lambda: _torch_saved(RunsShell()), "posix.system"),
    "torch_save_exec": (lambda: _torch_saved(RunsExec()), "exec"),
    "torch_save_bound_method": (lambda: _torch_saved(WritesFile()), "getattr"),
    "pickle2_os_system": (lambda: pickle.dumps({"format": 1, "x": RunsShell()}, protocol=2), "posix.system"),
    "foreign_class": (lambda: _torch_saved(Foreign()), "Foreign"),
    "float_array": (lambda: _torch_saved(np.zeros(3, np.float32)), "dtype"),  # only the RNG key's uint32 is admitted
    "object_array": (lambda: _torch_saved(np.array([RunsShell()], dtype=object)), "dtype"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_checkpoint_that_would_run_code_is_refused_in_one_line(case, tmp_path):
    make, needle = REFUSED[case]
    path = tmp_path / "crafted.pt"
    path.write_bytes(make())
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    line = one_line(e)
    assert str(path) in line and "a checkpoint never holds" in line and needle in line, line


@pytest.mark.parametrize("data", [pickle.dumps({"x": RunsShell()}, protocol=5), b"\x80\x02garbage", b""],
                         ids=["pickle5_os_system", "garbage", "empty"])
def test_other_unreadable_checkpoints_are_one_line_errors(data, tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="unreadable") as e:
        checkpoint.load(path)
    assert str(path) in one_line(e)


# -------------------------------------------------------------------------------------- data pickles
def _trajectories() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"observations": rng.random((5, 3)).astype(np.float32), "actions": rng.random((5, 2)),
             "rewards": rng.random(5).astype(np.float64), "terminals": np.arange(5) == 4,
             "steps": np.arange(5, dtype=np.int64), "codes": np.arange(5, dtype=np.int32),
             "scalar": np.float32(1.5), "count": np.int64(7), "nested": [np.zeros(2, np.uint8), {"k": 1.0}]}
            for _ in range(3)]


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_of_arrays_in_lists_and_dicts_load(protocol, tmp_path):
    want = _trajectories()
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(want, protocol=protocol))
    _assert_same(load_pickle(path), want)


def test_pickles_written_by_numpy_1_load(tmp_path):
    """numpy 1.x names its functions numpy.core.* (the reference's files); protocol 2 has no frame lengths,
    so renaming the module is exact."""
    want = _trajectories()
    raw = pickle.dumps(want, protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in raw and b"numpy._core" not in raw
    path = tmp_path / "old.pkl"
    path.write_bytes(raw)
    _assert_same(load_pickle(path), want)


CRAFTED = {"os_system": (RunsShell, "posix.system"), "exec": (RunsExec, "builtins.exec"),
           "bound_method": (WritesFile, "builtins.getattr"), "foreign_class": (Foreign, "Foreign")}


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_pickle_that_would_run_code_is_refused_in_one_line(case, tmp_path):
    cls, needle = CRAFTED[case]
    path = tmp_path / "hopper-medium-v2.pkl"
    path.write_bytes(pickle.dumps([{"observations": np.zeros((2, 11), np.float32), "x": cls()}]))
    for read in (load_pickle, lambda p: read_reference_pickle(p, "hopper")):
        with pytest.raises(DataError) as e:
            read(path)
        line = one_line(e)
        assert str(path) in line and needle in line and "refused" in line, line


def test_atari_add_count_admits_no_globals_at_all(tmp_path):
    path = tmp_path / "add_count_ckpt.0.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(1234, f)
    assert read_add_count(path) == 1234
    for obj, needle in ((RunsShell(), "posix.system"), (np.int64(5), "scalar")):  # as strict as before
        with gzip.open(path, "wb") as f:
            pickle.dump(obj, f)
        with pytest.raises(DataError) as e:
            read_add_count(path)
        line = one_line(e)
        assert str(path) in line and needle in line, line
