"""Segment-wise training (SPEC §2): one trainer for every model mode and environment.

``memory_grad='bptt'``: a trajectory batch runs through its N segments with memory flowing forward
*with* gradients; loss = mean over segments of the valid-step loss; one optimizer step per batch.
``memory_grad='detach'``: the paper code's procedure — memory detached between segments and one
optimizer step per segment (no gradient ever reaches the Memory Retention Valve).
"""

from __future__ import annotations

import math
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from RATE_model import checkpoint as ckpt_io
from RATE_model.config import TrainConfig
from RATE_model.data import Trajectories, epoch_batches, segments
from RATE_model.logger import RunLogger
from RATE_model.model import RATE, State


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str | None) -> torch.device:
    """``None``/'auto' -> cuda when available, else cpu; otherwise the named device (checked)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return dev


def action_loss(logits: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Summed loss over valid steps and their count. Discrete: cross-entropy (logits [B, K, A],
    actions [B, K] long); continuous: MSE (predictions and actions [B, K, A])."""
    if actions.dtype.is_floating_point:
        per_step = F.mse_loss(logits, actions, reduction="none").mean(-1)
    else:
        per_step = F.cross_entropy(logits.flatten(0, 1), actions.flatten().clamp(min=0), reduction="none")
        per_step = per_step.view(actions.shape)
    w = valid.to(per_step.dtype)
    return (per_step * w).sum(), w.sum()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on Linear/Conv weights only (not on biases, norms, embeddings, memory)."""
    decay = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to lr, then linear or cosine decay to lr * lr_end_factor at ``total_steps``."""
    warm, end = max(cfg.warmup_steps, 0), cfg.lr_end_factor

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = min(1.0, (step - warm) / max(1, total_steps - warm))
        if cfg.lr_schedule == "cosine":
            return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * frac))
        return 1.0 - (1.0 - end) * frac

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class Trainer:
    """Trains a RATE model on one or more stages (curriculum) of trajectory windows."""

    def __init__(self, model: RATE, cfg: TrainConfig, run_dir: Path, logger: RunLogger | None,
                 run_config: dict[str, Any], stages: list[Trajectories]):
        self.model, self.cfg, self.run_dir, self.logger = model, cfg, Path(run_dir), logger
        self.run_config, self.stages = run_config, stages
        self.device = next(model.parameters()).device
        self.detach = model.cfg.memory_grad == "detach"
        self.opt = build_optimizer(model, cfg)
        per_batch = model.cfg.sections if self.detach else 1
        total = sum(cfg.epochs * math.ceil(len(s) / cfg.batch_size) * per_batch for s in stages)
        self.sched = build_scheduler(self.opt, cfg, total)
        self.step = 0  # optimizer steps taken
        self.pos = {"stage": 0, "epoch": 0, "batch": 0}  # next batch to train on
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------------------- one batch
    def train_batch(self, batch: dict[str, Tensor]) -> float:
        """All segments of one batch; returns the mean segment loss."""
        model, K = self.model, self.model.cfg.context_length
        state: State | None = None
        total, n_seg = torch.zeros((), device=self.device), 0
        for seg in segments(batch, K):
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.amp_bf16):
                logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state)
            loss_sum, count = action_loss(logits.float(), seg["action"], seg["valid"])
            if count == 0:
                continue
            seg_loss = loss_sum / count
            n_seg += 1
            if self.detach:
                self._optimize(seg_loss)
                state = State(state.memory.detach() if state.memory is not None else None, state.cache, state.cache_valid)
            total = total + (seg_loss.detach() if self.detach else seg_loss)
        loss = total / max(n_seg, 1)
        if not self.detach and n_seg:
            self._optimize(loss)
        return float(loss.detach())

    def _optimize(self, loss: Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at optimizer step {self.step}; "
                                     f"the last good checkpoint is kept in {self.run_dir / 'checkpoints'}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": ckpt_io.rng_state(),
            "step": self.step,
            "pos": dict(self.pos),
            "config": self.run_config,
            "model_config": asdict(self.model.config),
        }

    def save(self, name: str = "last.pt") -> Path:
        path = self.run_dir / "checkpoints" / name
        ckpt_io.save(path, self.state_dict())
        return path

    def load(self, path: Path) -> None:
        ckpt = ckpt_io.load(path)
        ckpt_io.check_compatible(ckpt["model_config"], asdict(self.model.config), path)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        ckpt_io.set_rng_state(ckpt["rng"])
        self.step, self.pos = ckpt["step"], dict(ckpt["pos"])

    # ------------------------------------------------------------------------------- the loop
    def fit(self, resume: Path | None = None, progress: bool = True) -> None:
        """Train every stage for ``epochs`` epochs, checkpointing as configured; resumable exactly."""
        if resume is not None:
            self.load(resume)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(progress)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        self.save()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _loop(self, progress: bool) -> None:
        cfg, model = self.cfg, self.model
        model.train()
        while self.pos["stage"] < len(self.stages):
            data = self.stages[self.pos["stage"]]
            while self.pos["epoch"] < cfg.epochs:
                batches = epoch_batches(len(data), cfg.batch_size, cfg.seed,
                                        self.pos["stage"] * 10_000 + self.pos["epoch"])
                bar = tqdm(total=len(batches), initial=self.pos["batch"], disable=not progress, leave=False,
                           desc=f"stage {self.pos['stage'] + 1}/{len(self.stages)} epoch {self.pos['epoch'] + 1}/{cfg.epochs}")
                for idx in batches[self.pos["batch"]:]:
                    loss = self.train_batch(data.batch(idx, self.device))
                    self.pos["batch"] += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
                    epoch_end = self.pos["batch"] == len(batches)
                    if self.logger is not None and (self.step % cfg.log_every == 0 or epoch_end):
                        self.logger.log({"losses/train_loss": loss, "charts/lr": self.sched.get_last_lr()[0],
                                         "charts/stage": self.pos["stage"], "charts/epoch": self.pos["epoch"]},
                                        self.step)
                    if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                        self.save()
                    if self._stop_signal is not None:
                        self.save()
                        bar.close()
                        raise KeyboardInterrupt(f"stopped by signal {self._stop_signal}; resume with --resume latest")
                bar.close()
                self.pos["epoch"] += 1
                self.pos["batch"] = 0
                if not cfg.ckpt_every:
                    self.save()
            self.pos["stage"] += 1
            self.pos["epoch"] = 0
