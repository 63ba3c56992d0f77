"""Segment-wise training (SPEC §2): one trainer for every model mode and environment.

``memory_grad='bptt'``: a trajectory batch runs through its N segments with memory flowing forward
*with* gradients; loss = mean over segments of the valid-step loss; one optimizer step per batch.
``memory_grad='detach'``: the paper code's procedure — memory detached between segments and one
optimizer step per segment (no gradient ever reaches the Memory Retention Valve).

With ``eval_every`` N, every N optimizer steps (and after the last) a validation callback scores the
model; the best-scoring checkpoint is kept as ``best.pt`` beside ``last.pt``. The RNG state is restored
after each validation, so training computes exactly what it would without it.

Under torchrun each rank trains on its shard of every global batch through DistributedDataParallel.
Each rank's segment loss is its summed valid-step loss divided by the *global* valid-step count of
that segment, times the world size, so DDP's gradient average equals the gradient of the loss of
the combined batch exactly, whatever the ranks' valid counts (tested against one process).
"""

from __future__ import annotations

import math
import os
import platform
import signal
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from RATE_model import checkpoint as ckpt_io
from RATE_model import distributed
from RATE_model.config import ConfigError, TrainConfig
from RATE_model.data import Windows, batch_loader, default_workers, epoch_batches
from RATE_model.logger import RunLogger
from RATE_model.model import RATE, State
from RATE_model.precision import autocast, resolve_precision


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str | None) -> torch.device:
    """``None``/'auto' -> cuda when available, else cpu; otherwise the named device (checked)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda devices are supported")
    return dev


def describe_device(device: torch.device) -> str:
    """The accelerator, or the CPU model with its cores and threads, and the torch version, in words."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


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
    """Fused AdamW with weight decay on Linear/Conv weights only (not on biases, norms, embeddings, memory)."""
    decay = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]
    # fused: one kernel over all parameters instead of ~10 small ops per tensor (CPU and CUDA)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
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


class SegmentLoss(nn.Module):
    """The scaled action loss of consecutive segments, memory and cache flowing forward.

    This is the module DDP wraps, so every backward follows exactly one DDP forward even though the
    network runs once per segment. ``scales[i]`` divides segment i's summed valid-step loss.
    """

    def __init__(self, model: RATE, precision: str = "fp32", grad_checkpoint: bool = False):
        super().__init__()
        self.model, self.precision, self.grad_checkpoint = model, precision, grad_checkpoint

    def forward(self, segs: list[dict[str, Tensor]], state: State | None, scales: list[float],
                detached_state: bool = False) -> tuple[Tensor, State | None]:
        """Mean over ``segs`` of (summed loss / scale), and with ``detached_state`` the state after the
        last segment with its memory detached (else None).

        Only the loss may carry a graph out of here: DDP (find_unused_parameters) marks as used every
        parameter reachable from the outputs, and the memory's MRV gets no gradient from this loss."""
        total = torch.zeros((), device=segs[0]["obs"].device)
        for seg, scale in zip(segs, scales, strict=True):
            with autocast(seg["obs"].device, self.precision):
                logits, state = self.model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state,
                                           grad_checkpoint=self.grad_checkpoint)
            loss_sum, _ = action_loss(logits.float(), seg["action"], seg["valid"])
            total = total + loss_sum / scale
        if not detached_state:
            return total / len(segs), None
        memory = state.memory.detach() if state.memory is not None else None
        return total / len(segs), State(memory, state.cache, state.cache_valid)


class Trainer:
    """Trains a RATE model on one or more stages (curriculum) of trajectory windows.

    ``self.model`` is always the plain network; ``self.net`` is what runs the loss (DDP-wrapped under
    torchrun).
    """

    def __init__(self, model: RATE, cfg: TrainConfig, run_dir: Path, run_config: dict[str, Any],
                 stages: list[Windows], validate: Callable[[RATE], tuple[dict[str, float], float]] | None = None):
        """``validate(model) -> (scalar metrics, score)`` scores the model on validation episodes (every
        ``cfg.eval_every`` steps; best.pt keeps the best score); None: no validation."""
        self.model, self.cfg, self.run_dir, self.validate = model, cfg, Path(run_dir), validate
        self.run_config, self.stages = run_config, stages
        self.logger: RunLogger | None = None  # the logger of the fit() in progress
        self.device = next(model.parameters()).device
        self.detach = model.cfg.memory_grad == "detach"
        self.world = distributed.world_size()
        if self.world > cfg.batch_size:
            raise ConfigError(f"--batch_size {cfg.batch_size} is smaller than the {self.world} processes; "
                              "the global batch is split across processes")
        self.precision = resolve_precision(cfg.precision, self.device)  # fp32 | bf16
        self.net: nn.Module = SegmentLoss(model, self.precision, cfg.grad_checkpoint)
        if distributed.active():
            from torch.nn.parallel import DistributedDataParallel as DDP

            # Parameters can be unused in a forward (the MRV in detach mode, the initial memory after
            # segment 1), hence find_unused_parameters; DDP leaves globally unused grads at None.
            self.net = DDP(self.net, find_unused_parameters=True)
        self.opt = build_optimizer(model, cfg)
        per_batch = model.cfg.sections if self.detach else 1
        total = sum(cfg.epochs * self._batches_per_epoch(len(s)) * per_batch for s in stages)
        self.sched = build_scheduler(self.opt, cfg, total)
        self.step = 0  # optimizer steps taken
        self.pos = {"stage": 0, "epoch": 0, "batch": 0}  # next batch to train on
        self._saved_step = 0  # step of the last checkpoint (the --ckpt_every trigger)
        self._last_on_disk: int | None = None  # step of checkpoints/last.pt as this run wrote or resumed it
        self.best: dict[str, float] | None = None  # {"step", "score"} of best.pt
        self._val_step = 0  # step of the last validation
        self._stop_signal: int | None = None

    def _batches_per_epoch(self, n: int) -> int:
        return len(self._epoch_batches(n, 0, 0))

    def _epoch_batches(self, n: int, stage: int, epoch: int) -> list[Tensor]:
        """The global batches of one epoch; under torchrun a last batch smaller than the number of
        processes is dropped (some rank would have no sample)."""
        batches = epoch_batches(n, self.cfg.batch_size, self.cfg.seed, stage * 10_000 + epoch)
        if self.world > 1 and batches and len(batches[-1]) < self.world:
            batches.pop()
        return batches

    @property
    def complete(self) -> bool:
        """Every stage and epoch has been trained."""
        return self.pos["stage"] >= len(self.stages)

    # ------------------------------------------------------------------------------- one batch
    def train_batch(self, batch: dict[str, Tensor]) -> float:
        """All segments of one batch (this rank's shard under torchrun); returns the mean segment loss
        of the whole global batch."""
        K = self.model.cfg.context_length
        T = batch["valid"].shape[1]
        segs = [{k: v[:, s:s + K] for k, v in batch.items()} for s in range(0, T, K)]
        # each segment's loss is its mean over its valid steps (of the global batch)
        counts = distributed.all_sum(torch.stack([seg["valid"].float().sum() for seg in segs]))
        n_seg = int((counts > 0).nonzero().max()) + 1 if bool((counts > 0).any()) else 0
        # segments after the last one holding a valid step contribute nothing and are skipped
        scales = [max(float(c), 1e-6) / self.world for c in counts[:n_seg]]
        if n_seg == 0:
            return 0.0
        if not self.detach:
            loss, _ = self.net(segs[:n_seg], None, scales)
            return self._optimize(loss)
        state, total = None, 0.0
        for seg, scale in zip(segs[:n_seg], scales, strict=True):
            loss, state = self.net([seg], state, [scale], detached_state=True)
            total += self._optimize(loss)
        return total / n_seg

    def _optimize(self, loss: Tensor) -> float:
        """Backward and optimizer step; returns the loss of the global batch (averaged over ranks)."""
        value = distributed.all_sum(loss.detach()) / self.world if self.world > 1 else loss.detach()
        if not torch.isfinite(value):
            raise NonFiniteLossError(f"loss is {value.item()} at optimizer step {self.step + 1}; stopped, "
                                     f"the last good checkpoint is kept in {self.run_dir / 'checkpoints'}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return float(value)

    # ----------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs. Under torchrun every rank's RNG state is gathered
        (a collective call: every rank must call it)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": ckpt_io.rng_state(),
            "rng_per_rank": distributed.gather(ckpt_io.rng_state()) if self.world > 1 else None,
            "step": self.step,
            "pos": dict(self.pos),
            "complete": self.complete,
            "data_sizes": [len(s) for s in self.stages],
            "validation": {"best": self.best, "last_step": self._val_step},
            "config": self.run_config,
            "model_config": asdict(self.model.config),
        }

    def save(self, name: str = "last.pt") -> Path:
        """Write the checkpoint atomically (rank 0 only; every rank must call it)."""
        path = self.run_dir / "checkpoints" / name
        payload = self.state_dict()
        if distributed.is_main():
            intact = ("no checkpoint of this run was written yet" if self._last_on_disk is None else
                      f"checkpoints/last.pt of optimizer step {self._last_on_disk} is intact: free space, then "
                      "--resume latest continues from it")
            ckpt_io.save(path, payload, intact)
        if name == "last.pt":
            self._saved_step = self._last_on_disk = self.step
        return path

    def run_validation(self) -> None:
        """Score the model on the validation episodes, log ``val/*`` rows, keep ``best.pt`` when it is the
        best so far (ties keep the earlier). Training's RNG streams are left exactly as they were."""
        rng = ckpt_io.rng_state()
        metrics, score = self.validate(self.model)
        ckpt_io.set_rng_state(rng)
        self._val_step = self.step
        if self.logger is not None:
            self.logger.log({"val/score": score, **{f"val/{k}": v for k, v in metrics.items()}}, self.step)
        if self.best is None or score > self.best["score"]:
            self.best = {"step": self.step, "score": score}
            self.save("best.pt")

    def load(self, path: Path) -> None:
        """Restore a checkpoint after checking it was made by the same network, data and settings."""
        ckpt = ckpt_io.load(path)
        ckpt_io.check_compatible(ckpt["model_config"], asdict(self.model.config), path)
        ckpt_io.check_resumable(ckpt.get("config") or {}, self.run_config, path)
        sizes = [len(s) for s in self.stages]
        if "data_sizes" in ckpt and ckpt["data_sizes"] != sizes:
            raise ckpt_io.CheckpointError(f"checkpoint {path} was trained on stages of {ckpt['data_sizes']} "
                                          f"windows, this run has {sizes}")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        per_rank = ckpt.get("rng_per_rank")
        own = per_rank[distributed.rank()] if per_rank and len(per_rank) == self.world else ckpt["rng"]
        ckpt_io.set_rng_state(own)
        self.step, self.pos = ckpt["step"], dict(ckpt["pos"])
        self._saved_step = self.step
        if Path(path).resolve() == (self.run_dir / "checkpoints" / "last.pt").resolve():
            self._last_on_disk = self.step
        validation = ckpt.get("validation") or {}
        self.best, self._val_step = validation.get("best"), validation.get("last_step", 0)

    # ------------------------------------------------------------------------------- the loop
    def fit(self, resume: Path | None = None, progress: bool = True, logger: RunLogger | None = None) -> None:
        """Train every stage for ``epochs`` epochs, checkpointing as configured, logging training and
        validation rows to ``logger``; resumable exactly. A run whose checkpoint marks it complete trains
        nothing and writes nothing."""
        if resume is not None:
            self.load(resume)
        if self.complete:
            return
        self.logger = logger
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(progress)
            if self._validating and self._val_step != self.step:  # the final model is a candidate too
                self.run_validation()
            self.save()
        finally:
            self.logger = None
            for s, h in old.items():
                signal.signal(s, h)

    @property
    def _validating(self) -> bool:
        return self.validate is not None and self.cfg.eval_every > 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _loop(self, progress: bool) -> None:
        cfg, model = self.cfg, self.model
        model.train()
        while self.pos["stage"] < len(self.stages):
            data = self.stages[self.pos["stage"]]
            workers = default_workers(data) if cfg.num_workers < 0 else cfg.num_workers
            while self.pos["epoch"] < cfg.epochs:
                epoch_id = self.pos["stage"] * 10_000 + self.pos["epoch"]
                keys = data.epoch_windows(cfg.seed, epoch_id)
                batches = self._epoch_batches(len(keys), self.pos["stage"], self.pos["epoch"])
                # this rank's windows of every remaining batch, read ahead by the loader's workers
                todo = [keys[distributed.shard(idx).numpy()] for idx in batches[self.pos["batch"]:]]
                loader = batch_loader(data, todo, workers, pin_memory=self.device.type == "cuda")
                where = f"stage {self.pos['stage'] + 1}/{len(self.stages)} epoch {self.pos['epoch'] + 1}/{cfg.epochs}"
                bar = tqdm(total=len(batches), initial=self.pos["batch"], disable=None if progress else True,
                           leave=False, desc=where)
                for raw in loader:
                    loss = self.train_batch(data.to_device(raw, self.device))
                    self.pos["batch"] += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
                    epoch_end = self.pos["batch"] == len(batches)
                    if self.logger is not None and (self.step % cfg.log_every == 0 or epoch_end):
                        self.logger.log({"losses/train_loss": loss, "charts/lr": self.sched.get_last_lr()[0],
                                         "charts/stage": self.pos["stage"], "charts/epoch": self.pos["epoch"]},
                                        self.step)
                    # in detach mode several steps happen per batch: act when a multiple was crossed
                    if self._validating and self.step // cfg.eval_every > self._val_step // cfg.eval_every:
                        self.run_validation()  # before any checkpoint of this step, which then records it
                    if cfg.ckpt_every and self.step // cfg.ckpt_every > self._saved_step // cfg.ckpt_every:
                        self.save()
                    if distributed.any_rank(self._stop_signal is not None):
                        self.save()
                        bar.close()
                        raise KeyboardInterrupt(f"stopped by signal {self._stop_signal} at optimizer step "
                                                f"{self.step}; resume with --resume latest")
                bar.close()
                self.pos["epoch"] += 1
                self.pos["batch"] = 0
                if not cfg.ckpt_every:
                    self.save()
            self.pos["stage"] += 1
            self.pos["epoch"] = 0
