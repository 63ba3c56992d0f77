"""Checkpoints: model, optimizer, scheduler, every RNG, progress counters and the full config,
written atomically (temporary file + rename) so a crash never leaves a half-written file."""

from __future__ import annotations

import functools
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the run's configuration."""


@functools.cache
def code_version() -> str:
    """The git commit of the code, ``-dirty`` with uncommitted changes (``unknown`` outside a git checkout)."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT_VERSION, "code_version": code_version(), **payload}, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint, turning unreadable files into a one-line CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = (str(e).splitlines() or [""])[0]
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


# Settings that may differ between a run and its resumption without changing what is computed.
RESUME_FREE_TRAIN = frozenset({"device", "ckpt_every", "log_every", "precision", "amp_bf16", "num_workers"})
RESUME_FREE_ARGS = frozenset({"resume", "no_wandb", "runs_dir", "data_dir", "device", "ckpt_every", "log_every",
                              "precision", "amp_bf16", "num_workers", "text", "ckpt_folder", "seed", "start_seed",
                              "end_seed", "target_return"})  # like every eval_* flag: evaluation only


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
