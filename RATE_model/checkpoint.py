"""Checkpoints: model, optimizer, scheduler, every RNG, progress counters and the full config,
written atomically (temporary file + rename) so a crash never leaves a half-written file.

A checkpoint holds only tensors and plain Python values, and it is read with ``torch.load(weights_only=True)``:
reading a file never runs code from it. Older checkpoints also hold NumPy's RNG key as a uint32 array;
that, and only that, is admitted besides (see ``_OLD_NUMPY_GLOBALS``), so they still resume.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import random
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from RATE_model.config import ModelConfig, TrainConfig
from RATE_model.files import atomic_write
from RATE_model.model import RATE

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the run's configuration."""


@functools.cache
def git_state() -> dict[str, Any]:
    """{"commit": the code's full git commit, "dirty": whether tracked files have uncommitted changes}
    ({"commit": "unknown", "dirty": None} outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    if commit.returncode or status.returncode:
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def code_version() -> str:
    """The code's commit (12 digits), ``-dirty`` with uncommitted changes (``unknown`` outside git)."""
    git = git_state()
    return "unknown" if git["dirty"] is None else git["commit"][:12] + ("-dirty" if git["dirty"] else "")


def rng_state() -> dict[str, Any]:
    """Every global RNG's state, in types the safe unpickler reads (tensors, ints, floats, tuples, dicts)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (or, from an older checkpoint, NumPy's state as a tuple)."""
    random.setstate(state["python"])
    npy = state["numpy"]
    if isinstance(npy, dict):
        npy = (npy["bit_generator"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
               npy["cached_gaussian"])
    np.random.set_state(npy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, payload: dict[str, Any], intact: str = "") -> None:
    """Write ``payload`` to ``path`` atomically and on disk (fsync); a failed write (a full disk) is a
    WriteError naming ``path`` and ``intact`` (what survived), with the older file and no temporary left."""
    with atomic_write(path, intact, fsync=True) as f:  # a file object: torch reports the OSError itself
        torch.save({"format": FORMAT_VERSION, "code_version": code_version(), **payload}, f)


def _old_reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return _RECONSTRUCT(cls, shape, dtype)


def _old_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if spec != "u4":
        raise pickle.UnpicklingError(f"refusing to build the dtype {spec!r}")
    return np.dtype(spec, align, copy)


_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's private _reconstruct, wherever this numpy keeps it
# Checkpoints written before rng_state() stored plain types hold np.random.get_state()'s uint32 key array,
# pickled as ndarray + dtype('u4'). Admitted under their pickled names, restricted to exactly that.
_OLD_NUMPY_GLOBALS = [(_old_reconstruct, "numpy._core.multiarray._reconstruct"),
                      (_old_reconstruct, "numpy.core.multiarray._reconstruct"),
                      (np.ndarray, "numpy.ndarray"), (_old_dtype, "numpy.dtype"),
                      (type(np.dtype("u4")), f"numpy.dtypes.{type(np.dtype('u4')).__name__}")]


# What the weights-only unpickler says when a file asks for a global, call or object it does not admit.
_REFUSALS = ("GLOBAL", "unrecognized function", "Can only build", "Can only create new object", "refusing to")


def _unpickler_reason(e: BaseException) -> str | None:
    """The weights-only unpickler's own one-line reason inside torch's long message, or None."""
    if not isinstance(e, pickle.UnpicklingError):
        return None
    text = str(e)
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return found.group(0)
    tail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[0] if lines and "WeightsUnpickler error:" in text else None


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint without running code from it (``weights_only``), turning unreadable files and
    files holding objects a checkpoint never holds into a one-line CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_OLD_NUMPY_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # a plain pickle, refused below anyway
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = _unpickler_reason(e)
        if reason is not None and any(r in reason for r in _REFUSALS):
            raise CheckpointError(f"checkpoint {path} holds objects a checkpoint never holds ({reason}); "
                                  "refused without loading it: unpickling them could run code") from None
        first = reason or (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a RATE checkpoint of format {FORMAT_VERSION}")
    return ckpt


def check_compatible(ckpt_model_config: dict[str, Any], model_config: dict[str, Any], path: Path) -> None:
    """Fail clearly when a checkpoint was made with a different network."""
    diff = [k for k in model_config if ckpt_model_config.get(k) != model_config[k] and k != "memory_grad"]
    if diff:
        pairs = ", ".join(f"{k}: checkpoint {ckpt_model_config.get(k)!r} vs run {model_config[k]!r}" for k in diff)
        raise CheckpointError(f"checkpoint {path} was made with a different model config ({pairs})")


# Settings that may differ between a run and its resumption without changing what is computed (like every
# eval_* flag: evaluation only).
RESUME_FREE_TRAIN = frozenset({"device", "ckpt_every", "log_every", "precision", "amp_bf16", "num_workers"})
RESUME_FREE_ARGS = frozenset({"resume", "no_wandb", "wandb_timeout", "runs_dir", "data_dir", "device", "ckpt_every",
                              "log_every", "precision", "amp_bf16", "num_workers", "text", "ckpt_folder", "seed",
                              "start_seed", "end_seed", "target_return", "val_episodes"})


TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                  if f.default is not dataclasses.MISSING}


def check_resumable(ckpt_config: dict[str, Any], run_config: dict[str, Any], path: Path) -> None:
    """Fail clearly when a checkpoint's run settings (env, training, data flags) differ from this run's,
    so the resumed run could not continue the same computation. Evaluation flags may differ."""
    diffs: list[str] = []
    if "env" in ckpt_config and "env" in run_config and ckpt_config["env"] != run_config["env"]:
        diffs.append(f"env: checkpoint {ckpt_config['env']!r} vs run {run_config['env']!r}")
    for section, free in (("train", RESUME_FREE_TRAIN), ("args", RESUME_FREE_ARGS)):
        old, new = ckpt_config.get(section), run_config.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        if section == "train":  # a setting added since the checkpoint was written: it trained at the default
            old = {**TRAIN_DEFAULTS, **old}
        for k in sorted(set(old) | set(new)):
            if k in free or k.startswith("eval_") or _same(old.get(k), new.get(k)):
                continue
            diffs.append(f"{k}: checkpoint {old.get(k)!r} vs run {new.get(k)!r}")
    if diffs:
        listed = "; ".join(dict.fromkeys(diffs))
        raise CheckpointError(f"checkpoint {path} was made with different settings ({listed}); "
                              "resume with the original flags or start a new --ckpt_folder")


def _same(a: Any, b: Any) -> bool:
    norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)  # noqa: E731 (JSON turns tuples into lists)
    return norm(a) == norm(b)


# fields of ModelConfig that older checkpoints record: (the value that computes what the network does now,
# the flag that set another value, the last commit that had it)
REMOVED_MODEL_FIELDS = {"action_inputs": (True, "--no_action_inputs", "1f9e311")}


def model_config_of(ckpt: dict[str, Any], path: Path) -> ModelConfig:
    """The checkpoint's ModelConfig; fields of removed features are dropped where they hold the value that
    computes what the network does now, and refused in one line where they do not."""
    fields = dict(ckpt["model_config"])
    for name, (same, flag, commit) in REMOVED_MODEL_FIELDS.items():
        if name in fields and fields.pop(name) != same:
            raise CheckpointError(f"checkpoint {path} was trained with {flag}, which was removed after commit {commit}")
    return ModelConfig(**fields)


def load_model(path: Path) -> tuple[RATE, dict[str, Any]]:
    """The checkpoint's network (CPU, eval mode) and its run config."""
    ckpt = load(Path(path))
    model = RATE(model_config_of(ckpt, Path(path)))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt.get("config") or {}
