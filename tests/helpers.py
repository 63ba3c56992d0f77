"""Small model/batch builders shared by the tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from RATE_model import RATE, ModelConfig
from RATE_model.cli import run_main
from RATE_model.config import TrainConfig
from RATE_model.data import Windows
from RATE_model.trainer import Trainer

MODES = ("RATE", "DT", "DTXL", "RATEM", "RATE_wo_nmt")
ARCHS = ("TrXL", "TrXL-I", "GTrXL")


ROOT = Path(__file__).resolve().parent.parent
TMAZE_SCRIPT = "TMaze_new/TMaze_new_src/train_tmaze.py"
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def tiny_tmaze(tmp: Path, folder: str, *extra: str) -> list[str]:
    """The command of a T-Maze run of ~60 optimizer steps in a couple of seconds (run it with cwd=ROOT)."""
    return [sys.executable, TMAZE_SCRIPT, "--smoke", "--no_wandb", "--device", "cpu", "--runs_dir", str(tmp / "runs"),
            "--data_dir", str(tmp / "data"), "--ckpt_folder", folder, "--batch_size", "16", "--epochs", "6",
            "--dropout", "0.1", *extra]


def params(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's model parameters."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def tiny_config(mode: str = "RATE", arch: str = "TrXL", **kw) -> ModelConfig:
    uses_cache = mode in ("RATE", "DTXL", "RATE_wo_nmt")
    uses_mrv = mode in ("RATE", "RATEM")
    base = dict(model_mode=mode, arch_mode=arch, context_length=4, sections=3, n_layer=2, n_head=2, d_model=16,
                d_head=8, d_inner=16, num_mem_tokens=2, mem_len=10 if uses_cache else 0,
                n_head_ca=2 if uses_mrv else 0, mrv_act="relu" if uses_mrv else "no_act", dropout=0.1)
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(mode: str = "RATE", arch: str = "TrXL", **kw) -> RATE:
    return RATE(tiny_config(mode, arch, **kw)).eval()


def random_batch(B: int, T: int, valid_len: list[int] | None = None) -> dict[str, torch.Tensor]:
    batch = {
        "obs": torch.randn(B, T, 4),
        "rtg": torch.randn(B, T, 1),
        "action": torch.randint(0, 4, (B, T)),
        "valid": torch.ones(B, T, dtype=torch.bool),
    }
    if valid_len is not None:
        for b, n in enumerate(valid_len):
            batch["valid"][b, n:] = False
            batch["action"][b, n:] = -10
    return batch


def run_segments(model: RATE, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Logits of every segment, memory and cache flowing forward."""
    K = model.cfg.context_length
    state, out = None, []
    for s in range(0, batch["obs"].shape[1], K):
        seg = {k: v[:, s:s + K] for k, v in batch.items()}
        logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state)
        out.append(logits)
    return out


def fit_tiny(run_dir: Path, stages: Callable[[], list[Windows]], stop_after: int | None = None,
             resume: Path | None = None, **train: object) -> Trainer:
    """Train a tiny RATE (dropout on) for 2 epochs on ``stages()`` (built after seeding); with ``stop_after``
    crash at that optimizer step and save the checkpoint the SIGTERM handler / ckpt_every would have written."""
    torch.manual_seed(0)
    model = tiny_model("RATE", dropout=0.1).train()
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 4, "warmup_steps": 2, "seed": 7, **train})
    trainer = Trainer(model, cfg, run_dir, {}, stages())
    if stop_after is None:
        trainer.fit(resume=resume, progress=False)
    else:
        crash_at(trainer, stop_after)
    return trainer


def crash_at(trainer: Trainer, step: int) -> None:
    """Fit until optimizer step ``step``, crash there and save the checkpoint the SIGTERM handler /
    ckpt_every would have written."""
    orig = trainer.train_batch

    def train_batch(batch):
        if trainer.step == step:
            raise KeyboardInterrupt("simulated crash")
        return orig(batch)

    trainer.train_batch = train_batch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(progress=False)
    trainer.save()


def check_attention_tool(ckpt, out, length: int) -> dict:
    """``python -m RATE_model.tools.attention`` on a checkpoint of any env, through its env's interface: the
    maps, the per-step shares (memory + cache + segment = 1 for every o_t) and the summary of a short episode."""
    import json

    from RATE_model.tools import attention

    summary = attention.main([str(ckpt), "--seed", "0", "--length", str(length), "-o", str(out)])
    assert 1 <= summary["steps"] <= length and summary["pngs"]
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in summary["pngs"])
    rows = (out / "attention_share.csv").read_text().splitlines()[1:]
    assert rows and all(abs(sum(map(float, r.split(",")[3:6])) - 1) < 1e-3 for r in rows)
    assert json.loads((out / "summary.json").read_text())["steps"] == summary["steps"]
    return summary


def cli_error(main: Callable[[list[str] | None], object], argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one stderr line of a command's ``main`` run on ``argv`` as its ``__main__`` runs it (``run_main``), which
    must exit with status 2 (tests/test_bad_input.py runs a real script in a subprocess once)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1, lines
    return lines[0]
