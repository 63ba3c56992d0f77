"""Pretrain an image encoder by behaviour cloning from single frames: the sequence models' own observation
encoder and a small head predict the data's action at each step from that step's frame alone (no memory, no
context, no earlier actions to copy).

It is a cheap first stage (a conv net on random frames of the episode store, a few minutes on 2 CPU cores)
for training with ``--init_encoder FILE --freeze_encoder``: a step then costs the transformer alone (3–4×
cheaper on our CPU, benchmarks/RESULTS.md), so a CPU budget buys several times more optimizer steps. The
labels make the encoder keep what the policy reads from a frame (where a visible goal is, where the walls
are); what needs memory stays for the sequence model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from RATE_model.config import PRECISIONS, ConfigError, check_positive
from RATE_model.data import frames_at
from RATE_model.encoders import ImageEncoder, build_encoders, save_encoder
from RATE_model.precision import autocast, describe_precision, resolve_precision
from RATE_model.store import EpisodeStore

CPU = torch.device("cpu")
PIXEL_STATS_FRAMES = 4096  # observations the per-pixel standardisation is fitted to (--pixel_norm)


class FramePolicy(nn.Module):
    """Action logits from one frame: ``encoder`` (uint8 frames [N, C, H, W] / 255 -> [N, d]) and an MLP head."""

    def __init__(self, encoder: nn.Module, d: int, n_actions: int, hidden: int = 128):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, frames: Tensor) -> Tensor:
        return self.head(self.encoder(frames.float() / 255.0))


def split_rows(store: EpisodeStore, heldout_episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Step rows of the store's episodes for training and of its last ``heldout_episodes`` episodes."""
    if not 0 <= heldout_episodes < store.n_episodes:
        raise ValueError(f"{heldout_episodes} held-out episodes leave none of the store's {store.n_episodes} "
                         "to train on")
    cut = int(store.offsets[store.n_episodes - heldout_episodes])
    return np.arange(cut), np.arange(cut, store.n_steps)


@torch.no_grad()
def evaluate(policy: FramePolicy, store: EpisodeStore, rows: np.ndarray, batch_size: int = 1024,
             precision: str = "fp32", device: torch.device = CPU, frame_stack: int = 1) -> dict[str, float]:
    """Cross-entropy and argmax accuracy of ``policy`` on the store's consecutive steps ``rows`` (each step's
    last ``frame_stack`` frames), beside the accuracy of always taking the most frequent action there (what a
    frame-blind policy gets)."""
    was_training = policy.training
    policy.eval()
    ce, hit = 0.0, 0
    actions = store.take("action", rows[None])[0].astype(np.int64)  # one contiguous read
    for i in range(0, len(rows), batch_size):
        frames = torch.from_numpy(frames_at(store, rows[i:i + batch_size], frame_stack))  # one contiguous read
        with autocast(device, precision):
            logits = policy(frames.to(device)).float()
        target = torch.from_numpy(actions[i:i + batch_size]).to(device)
        ce += float(F.cross_entropy(logits, target, reduction="sum"))
        hit += int((logits.argmax(1) == target).sum())
    policy.train(was_training)
    n = max(len(rows), 1)
    return {"heldout_loss": ce / n, "heldout_accuracy": hit / n,
            "majority_accuracy": float(np.bincount(actions).max() / n) if len(rows) else 0.0}


def fit_pixel_norm(encoder: nn.Module, store: EpisodeStore, rows: np.ndarray, frame_stack: int,
                   rng: np.random.Generator) -> None:
    """Fit ``encoder``'s (an :class:`~RATE_model.encoders.ImageEncoder`) per-pixel standardisation to
    ``PIXEL_STATS_FRAMES`` observations drawn by ``rng`` from the store's global step ``rows`` (uint8 pixels
    scaled to [0, 1], each step's last ``frame_stack`` frames)."""
    if not isinstance(encoder, ImageEncoder):
        raise ValueError("pixel_norm needs an ImageEncoder (RATE_model.encoders.image_encoder)")
    sample = np.sort(rng.choice(rows, min(PIXEL_STATS_FRAMES, len(rows)), replace=False))
    encoder.set_pixel_stats(torch.from_numpy(frames_at(store, sample, frame_stack)).float() / 255.0)


def frame_bc(store: EpisodeStore, encoder: nn.Module, d: int, n_actions: int, steps: int, batch_size: int = 256,
             lr: float = 3e-4, heldout_episodes: int = 0, eval_every: int = 250, seed: int = 0,
             precision: str = "fp32", device: torch.device = CPU, frame_stack: int = 1,
             log: Callable[[str], Any] = print, pixel_norm: bool = False) -> tuple[FramePolicy, list[dict[str, Any]]]:
    """Train ``encoder`` (in place) with a :class:`FramePolicy` head for ``steps`` AdamW steps on random
    minibatches of the store's frames and actions (fields ``obs`` uint8 and ``action`` index), all but the
    last ``heldout_episodes`` episodes (``frame_stack`` S > 1: each step's last S frames, as Atari's
    observations), on ``device`` with the forward pass in ``precision`` (fp32 or bf16,
    resolved); every ``eval_every`` steps (and at the end) one row of training loss and held-out metrics
    (:func:`evaluate`) goes to ``log`` as a JSON line. ``pixel_norm``: first fit the encoder's (an
    :class:`~RATE_model.encoders.ImageEncoder`) per-pixel standardisation to ``PIXEL_STATS_FRAMES`` training
    observations. Returns the policy and the rows."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_rows, heldout_rows = split_rows(store, heldout_episodes)
    if pixel_norm:
        fit_pixel_norm(encoder, store, train_rows, frame_stack, rng)
    policy = FramePolicy(encoder, d, n_actions).to(device)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.1)
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = np.sort(train_rows[rng.integers(len(train_rows), size=batch_size)])  # sorted: sequential reads
        with autocast(device, precision):
            logits = policy(torch.from_numpy(frames_at(store, idx, frame_stack)).to(device))
        actions = torch.from_numpy(store.take("action", idx).astype(np.int64)).to(device)
        loss = F.cross_entropy(logits.float(), actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            held = evaluate(policy, store, heldout_rows, precision=precision, device=device,
                            frame_stack=frame_stack) if len(heldout_rows) else {}
            rows.append({"step": step, "seconds": round(time.time() - t0, 1), "train_loss": float(loss.detach()),
                         **held})
            log(json.dumps(rows[-1]))
    return policy, rows


# ---------------------------------------------------------------------------------------- command line
def add_pretrain_flags(p: argparse.ArgumentParser, heldout_episodes: int, d_model: int) -> None:
    """The flags every ``pretrain_encoder.py`` shares (its data flags are its own)."""
    p.add_argument("--heldout_episodes", type=int, default=heldout_episodes, help="the last N episodes are held out")
    p.add_argument("--d_model", type=int, default=d_model, help="encoder output width (the sequence model's d)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval_every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 autocast on a CPU with native bf16, else fp32")
    p.add_argument("--pixel_norm", action="store_true",
                   help="standardise each pixel by its mean and spread in the training frames (fitted once, saved "
                        "with the encoder): for screens whose moving objects are a few pixels of a constant "
                        "background, e.g. Pong")
    p.add_argument("--save_encoder", type=Path, required=True, help="write the trained encoder's weights here")
    p.add_argument("--out", type=Path, help="also write the evaluations here, one JSON line each")


def check_pretrain_flags(args: argparse.Namespace) -> None:
    """Values of :func:`add_pretrain_flags` that cannot work (before any data is read)."""
    from RATE_model.trainer import resolve_device

    check_positive(args, ("d_model", "steps", "batch_size", "eval_every"))
    resolve_device(args.device)
    if args.heldout_episodes < 0:
        raise ConfigError(f"--heldout_episodes must be >= 0, got {args.heldout_episodes}")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {args.lr}")


def pretrain(args: argparse.Namespace, store: EpisodeStore, env: str, n_actions: int, script: str,
             frame_stack: int = 1, env_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A ``pretrain_encoder.py`` run: :func:`frame_bc` of ``env``'s image encoder (``env_kwargs``: its sizes)
    on ``store`` with the flags of :func:`add_pretrain_flags`; the encoder saved to ``--save_encoder`` (with
    the flags and the last evaluation), the evaluations to ``--out``. Returns the evaluation rows."""
    from RATE_model.cli import write_json_lines  # experiment imports the trainer; keep this module light
    from RATE_model.trainer import resolve_device

    if args.heldout_episodes >= store.n_episodes:
        raise ConfigError(f"--heldout_episodes {args.heldout_episodes} leaves none of the {store.n_episodes} "
                          "episodes to train on")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    print(describe_precision(args.precision, device), flush=True)
    encoder = build_encoders(env, args.d_model, **(env_kwargs or {})).obs
    _, rows = frame_bc(store, encoder, args.d_model, n_actions, args.steps, args.batch_size, args.lr,
                       args.heldout_episodes, args.eval_every, args.seed, precision, device, frame_stack,
                       pixel_norm=args.pixel_norm)
    info = {"script": script, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "last_evaluation": rows[-1]}
    save_encoder(encoder.cpu(), args.save_encoder, info)
    if args.out:
        write_json_lines(args.out, rows)
    return rows
