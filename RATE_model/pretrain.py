"""Pretrain an image encoder by behaviour cloning from single frames: the sequence models' own observation
encoder and a small head predict the data's action at each step from that step's frame alone (no memory, no
context, no earlier actions to copy).

It is a cheap first stage (a conv net on random frames of the episode store, a few minutes on 2 CPU cores)
for training with ``--init_encoder FILE --freeze_encoder``: a step then costs the transformer alone (3–4×
cheaper on our CPU, benchmarks/RESULTS.md), so a CPU budget buys several times more optimizer steps. The
labels make the encoder keep what the policy reads from a frame (where a visible goal is, where the walls
are); what needs memory stays for the sequence model.

An env hands its frames over as :class:`Frames` (:meth:`RATE_model.envs.Environment.frames`): the episode
store and, where the env has them, what a frame cannot show but a sequence model knows (a ``condition`` per
step, e.g. ViZDoom's pillar colour, given to the head beside the frame), the expert's counterfactual actions
(held-out ``preference`` for the data's action over them) and named groups of steps (train on some, evaluate
on others, each reported). The command is ``python -m RATE_model.tools.pretrain_encoder``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from RATE_model.config import ConfigError
from RATE_model.data import frames_at
from RATE_model.diagnose import preference
from RATE_model.encoders import ImageEncoder
from RATE_model.precision import autocast
from RATE_model.store import EpisodeStore

CPU = torch.device("cpu")
PIXEL_STATS_FRAMES = 4096  # observations the per-pixel standardisation is fitted to (--pixel_norm)


@dataclass
class Frames:
    """An env's episodes as single-frame behaviour cloning reads them. ``store``: fields ``obs`` (uint8 frames)
    and ``action`` (an index below ``n_actions``); ``frame_stack`` S > 1: a step's input is its last S frames
    (Atari's observations). ``encoder`` and ``encoder_kwargs``: the :func:`RATE_model.encoders.build_encoders`
    builder whose observation encoder is trained (None: the env's name) and its sizes. Per step [n_steps]:
    ``condition``, integers below ``n_conditions`` that the head reads beside the frame (what a sequence model
    knows from memory and a frame cannot show); ``other_action``, the expert's action had the cue been the other
    value (held-out ``preference``); ``groups``, named boolean masks (what ``--frames`` and ``--eval_frames``
    select, each reported held out)."""

    store: EpisodeStore
    n_actions: int
    frame_stack: int = 1
    encoder: str | None = None
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    condition: np.ndarray | None = None
    n_conditions: int = 0
    other_action: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def select(self, names: Sequence[str]) -> np.ndarray:
        """The steps in every group of ``names`` (bool [n_steps]; every step for none). ConfigError for a name
        that is not a group of these frames."""
        mask = np.ones(self.store.n_steps, bool)
        for name in names:
            if name not in self.groups:
                raise ConfigError(f"no frame group {name!r} in these episodes; groups: "
                                  f"{', '.join(self.groups) or 'none'}")
            mask &= np.asarray(self.groups[name], bool)
        return mask


class FramePolicy(nn.Module):
    """Action logits from one frame: ``encoder`` (uint8 frames [N, C, H, W] / 255 -> [N, d]) and an MLP head;
    with ``n_conditions`` > 0 the head also reads an embedding of each frame's condition (:class:`Frames`)."""

    def __init__(self, encoder: nn.Module, d: int, n_actions: int, hidden: int = 128, n_conditions: int = 0):
        super().__init__()
        self.encoder = encoder
        self.condition = nn.Embedding(n_conditions, d) if n_conditions else None
        self.head = nn.Sequential(nn.Linear(2 * d if n_conditions else d, hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_actions))

    def forward(self, frames: Tensor, condition: Tensor | None = None) -> Tensor:
        x = self.encoder(frames.float() / 255.0)
        if self.condition is not None:
            if condition is None:
                raise ValueError("this policy reads a condition beside each frame")
            x = torch.cat([x, self.condition(condition.long()).to(x.dtype)], -1)
        return self.head(x)


def split_rows(store: EpisodeStore, heldout_episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Step rows of the store's episodes for training and of its last ``heldout_episodes`` episodes."""
    if not 0 <= heldout_episodes < store.n_episodes:
        raise ValueError(f"{heldout_episodes} held-out episodes leave none of the store's {store.n_episodes} "
                         "to train on")
    cut = int(store.offsets[store.n_episodes - heldout_episodes])
    return np.arange(cut), np.arange(cut, store.n_steps)


def _inputs(frames: Frames, rows: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The policy's inputs at the store's steps ``rows``: frames (each step's last ``frame_stack``) and conditions."""
    x = torch.from_numpy(frames_at(frames.store, rows, frames.frame_stack)).to(device)
    c = None if frames.condition is None else torch.from_numpy(np.asarray(frames.condition)[rows]).to(device)
    return x, c


@torch.no_grad()
def evaluate(policy: FramePolicy, frames: Frames, rows: np.ndarray, batch_size: int = 1024,
             precision: str = "fp32", device: torch.device = CPU) -> dict[str, Any]:
    """Cross-entropy and argmax accuracy of ``policy`` on the steps ``rows`` of ``frames``, beside the accuracy
    of always taking their most frequent action (what a frame-blind policy gets). Where the frames have
    counterfactual actions, ``preference`` for the data's action over them
    (:func:`RATE_model.diagnose.preference`: 0.5 = the cue not used); where they have groups, ``groups``: the
    same per group on its steps among ``rows``."""
    was_training = policy.training
    policy.eval()
    actions = frames.store.take("action", rows[None])[0].astype(np.int64)  # one contiguous read
    logp = np.zeros((len(rows), frames.n_actions), np.float32)
    for i in range(0, len(rows), batch_size):
        x, c = _inputs(frames, rows[i:i + batch_size], device)
        with autocast(device, precision):
            logits = policy(x, c).float()
        logp[i:i + batch_size] = F.log_softmax(logits, -1).cpu().numpy()
    policy.train(was_training)
    ce = -np.take_along_axis(logp, actions[:, None], 1)[:, 0].astype(np.float64)
    hit = logp.argmax(1) == actions
    n = max(len(rows), 1)
    out: dict[str, Any] = {"heldout_loss": float(ce.sum() / n), "heldout_accuracy": float(hit.sum() / n),
                           "majority_accuracy": float(np.bincount(actions).max() / n) if len(rows) else 0.0}
    other = None if frames.other_action is None else np.asarray(frames.other_action)[rows].astype(np.int64)
    if other is not None:
        out["preference"] = preference(logp, actions, other, np.ones(len(rows), bool))
    if frames.groups:
        out["groups"] = {}
        for name, mask in frames.groups.items():
            m = np.asarray(mask, bool)[rows]
            k = int(m.sum())
            group: dict[str, Any] = {"loss": float(ce[m].mean()) if k else None,
                                     "accuracy": float(hit[m].mean()) if k else None, "steps": k}
            if other is not None:
                group["preference"] = preference(logp, actions, other, m)
            out["groups"][name] = group
    return out


def fit_pixel_norm(encoder: nn.Module, store: EpisodeStore, rows: np.ndarray, frame_stack: int,
                   rng: np.random.Generator) -> None:
    """Fit ``encoder``'s (an :class:`~RATE_model.encoders.ImageEncoder`) per-pixel standardisation to
    ``PIXEL_STATS_FRAMES`` observations drawn by ``rng`` from the store's global step ``rows`` (uint8 pixels
    scaled to [0, 1], each step's last ``frame_stack`` frames)."""
    if not isinstance(encoder, ImageEncoder):
        raise ValueError("pixel_norm needs an ImageEncoder (RATE_model.encoders.image_encoder)")
    sample = np.sort(rng.choice(rows, min(PIXEL_STATS_FRAMES, len(rows)), replace=False))
    encoder.set_pixel_stats(torch.from_numpy(frames_at(store, sample, frame_stack)).float() / 255.0)


def frame_bc(frames: Frames, encoder: nn.Module, d: int, steps: int, batch_size: int = 256, lr: float = 3e-4,
             heldout_episodes: int = 0, eval_every: int = 250, seed: int = 0, precision: str = "fp32",
             device: torch.device = CPU, log: Callable[[str], Any] = print, pixel_norm: bool = False,
             heldout: Frames | None = None, train_frames: Sequence[str] = (),
             eval_frames: Sequence[str] | None = None,
             curriculum: tuple[Sequence[str], int] | None = None) -> tuple[FramePolicy, list[dict[str, Any]]]:
    """Train ``encoder`` (in place) with a :class:`FramePolicy` head for ``steps`` AdamW steps on random
    minibatches of ``frames``' steps in every group of ``train_frames``, all but the last ``heldout_episodes``
    episodes, or all of them where ``heldout`` holds episodes of its own; on ``device`` with the forward pass in
    ``precision`` (fp32 or bf16, resolved). ``curriculum`` (names, S): the first S steps draw only from the
    training steps in those groups too. Every ``eval_every`` steps (and at the end) one row of training loss
    (and ``stage``: the curriculum's groups, then ``all``) and :func:`evaluate` on the held-out steps in every
    group of ``eval_frames`` (default: ``train_frames``) goes to ``log`` as a JSON line. ``pixel_norm``: first
    fit the encoder's (an :class:`~RATE_model.encoders.ImageEncoder`) per-pixel standardisation to
    ``PIXEL_STATS_FRAMES`` training observations. Returns the policy and the rows."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if heldout is None:
        train_rows, heldout_rows = split_rows(frames.store, heldout_episodes)
        heldout = frames
    else:
        train_rows, heldout_rows = np.arange(frames.store.n_steps), np.arange(heldout.store.n_steps)
    train_rows = train_rows[frames.select(train_frames)[train_rows]]
    heldout_rows = heldout_rows[heldout.select(train_frames if eval_frames is None else eval_frames)[heldout_rows]]
    if not len(train_rows):
        raise ConfigError(f"no training frames in {','.join(train_frames) or 'the episodes'}")
    first, first_steps = train_rows, 0
    if curriculum is not None:
        names, first_steps = curriculum
        first = train_rows[frames.select(names)[train_rows]]
        if not len(first):
            raise ConfigError(f"the curriculum's group {','.join(names)} has no training frames")
    if pixel_norm:
        fit_pixel_norm(encoder, frames.store, train_rows, frames.frame_stack, rng)
    policy = FramePolicy(encoder, d, frames.n_actions, n_conditions=frames.n_conditions).to(device)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.1)
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for step in range(1, steps + 1):
        pool = first if step <= first_steps else train_rows
        idx = np.sort(pool[rng.integers(len(pool), size=batch_size)])  # sorted: sequential reads
        x, c = _inputs(frames, idx, device)
        with autocast(device, precision):
            logits = policy(x, c)
        actions = torch.from_numpy(frames.store.take("action", idx).astype(np.int64)).to(device)
        loss = F.cross_entropy(logits.float(), actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            row: dict[str, Any] = {"step": step, "seconds": round(time.time() - t0, 1),
                                   "train_loss": float(loss.detach())}
            if curriculum is not None:
                row["stage"] = ",".join(curriculum[0]) if step <= first_steps else "all"
            if len(heldout_rows):
                row.update(evaluate(policy, heldout, heldout_rows, precision=precision, device=device))
            rows.append(row)
            log(json.dumps(rows[-1]))
    return policy, rows
