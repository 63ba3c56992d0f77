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

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from RATE_model.data import frames_at
from RATE_model.precision import autocast
from RATE_model.store import EpisodeStore

CPU = torch.device("cpu")


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


def frame_bc(store: EpisodeStore, encoder: nn.Module, d: int, n_actions: int, steps: int, batch_size: int = 256,
             lr: float = 3e-4, heldout_episodes: int = 0, eval_every: int = 250, seed: int = 0,
             precision: str = "fp32", device: torch.device = CPU, frame_stack: int = 1,
             log: Callable[[str], Any] = print) -> tuple[FramePolicy, list[dict[str, Any]]]:
    """Train ``encoder`` (in place) with a :class:`FramePolicy` head for ``steps`` AdamW steps on random
    minibatches of the store's frames and actions (fields ``obs`` uint8 and ``action`` index), all but the
    last ``heldout_episodes`` episodes (``frame_stack`` S > 1: each step's last S frames, as Atari's
    observations), on ``device`` with the forward pass in ``precision`` (fp32 or bf16,
    resolved); every ``eval_every`` steps (and at the end) one row of training loss and held-out metrics
    (:func:`evaluate`) goes to ``log`` as a JSON line. Returns the policy and the rows."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_rows, heldout_rows = split_rows(store, heldout_episodes)
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
