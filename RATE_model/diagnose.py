"""Measure the chain: per-step action losses of a trained model, split by what each step depends on.

``step_losses`` runs a model over whole training windows exactly as the trainer does (segment by segment,
memory and cache carried, teacher-forced actions, eval mode) and returns each step's cross-entropy and
whether the most likely action is the data's. ``split_means`` averages them over named groups of steps
(e.g. the steps whose expert action depends on a cue seen long before against the others): a gap near
ln 2 between such groups, when the cue decides between two actions, means the model does not use the cue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from RATE_model.model import RATE


@torch.no_grad()
def step_losses(model: RATE, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Cross-entropy [B, T] of the data's action at every step of ``batch`` (obs, rtg, action, valid over
    T = K·N steps, observations already transformed) and whether the argmax action is the data's [B, T].
    Padded steps (``valid`` False) hold NaN and False."""
    was_training = model.training
    model.eval()
    K, T = model.cfg.context_length, batch["action"].shape[1]
    ce, hit, state = [], [], None
    for s in range(0, T, K):
        seg = slice(s, s + K)
        logits, state = model(batch["rtg"][:, seg], batch["obs"][:, seg], batch["action"][:, seg],
                              batch["valid"][:, seg], state)
        target = batch["action"][:, seg].clamp(min=0)
        ce.append(F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none"))
        hit.append(logits.argmax(-1) == target)
    model.train(was_training)
    valid = batch["valid"].bool()
    return torch.cat(ce, 1).masked_fill(~valid, math.nan), torch.cat(hit, 1) & valid


def split_means(ce: np.ndarray, hit: np.ndarray,
                groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, float | int | None]]:
    """Mean loss (nats), argmax accuracy and step count of each named boolean mask over the steps
    (padded steps, NaN in ``ce``, are left out); loss and accuracy are None (JSON null) for an empty group."""
    ok = ~np.isnan(ce)
    out = {}
    for name, mask in groups.items():
        m = np.asarray(mask, bool) & ok
        n = int(m.sum())
        out[name] = {"loss": float(ce[m].mean()) if n else None,
                     "accuracy": float(hit[m].mean()) if n else None, "steps": n}
    return out
