"""Measure the chain: per-step action losses of a trained model, split by what each step depends on.

``head_outputs`` runs a model over whole training windows exactly as the trainer does (segment by
segment, memory and cache carried, teacher-forced actions, eval mode), ``action_log_probs`` turns a
discrete head's outputs into log-probabilities; ``step_losses`` gives each step's
cross-entropy and whether the most likely action is the data's. ``split_means`` averages them over named
groups of steps (e.g. the steps whose expert action depends on a cue seen long before against the
others): a gap near ln 2 between such groups, when the cue decides between two actions, means the model
does not use the cue. ``preference`` is the sharper test where the counterfactual action is known (what
the expert would have done with the other cue): a model that uses the cue prefers the data's action.
``dataset_losses`` runs ``step_losses`` over a table of a dataset's windows in batches, and ``window_fields``
cuts a per-step field of the episode files (e.g. what the expert was doing) into the same windows
(``store_windows``: a field of the dataset's episode store).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from RATE_model.data import WindowDataset, Windows
from RATE_model.model import RATE


@torch.no_grad()
def head_outputs(model: RATE, batch: Mapping[str, Tensor]) -> Tensor:
    """The action head's output [B, T, A] (logits, or continuous actions) at every step of ``batch`` (obs,
    rtg, action, valid over T steps, any multiple of K; observations already transformed), computed as in
    training: segment by segment, memory and cache carried, the batch's actions teacher-forced, eval mode.
    NaN at padded steps."""
    was_training = model.training
    model.eval()
    K, T = model.cfg.context_length, batch["action"].shape[1]
    out, state = [], None
    for s in range(0, T, K):
        seg = slice(s, s + K)
        logits, state = model(batch["rtg"][:, seg], batch["obs"][:, seg], batch["action"][:, seg],
                              batch["valid"][:, seg], state)
        out.append(logits.float())
    model.train(was_training)
    return torch.cat(out, 1).masked_fill(~batch["valid"].bool()[..., None], math.nan)


def action_log_probs(model: RATE, batch: Mapping[str, Tensor]) -> Tensor:
    """Log-probabilities [B, T, A] of every action at every step of ``batch`` (:func:`head_outputs` of a
    discrete-action model); NaN at padded steps."""
    return F.log_softmax(head_outputs(model, batch), -1)


def step_losses(model: RATE, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Cross-entropy [B, T] of the data's action at every step of ``batch`` and whether the argmax action
    is the data's [B, T]. Padded steps (``valid`` False) hold NaN and False."""
    return losses_of(action_log_probs(model, batch), batch["action"], batch["valid"])


def losses_of(logp: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy and argmax hit [B, T] of ``actions`` under ``logp`` [B, T, A] (NaN / False where not
    ``valid``)."""
    target = actions.clamp(min=0)
    ce = -logp.gather(-1, target[..., None])[..., 0]
    return ce, (logp.argmax(-1) == target) & valid.bool()


def preference(logp: np.ndarray, chosen: np.ndarray, other: np.ndarray,
               mask: np.ndarray) -> dict[str, float | int | None]:
    """Does the model prefer the data's action to a counterfactual one (e.g. the expert's action had the cue
    been the other value) at the steps of ``mask`` where they differ? Mean log-probability margin
    log p(chosen) − log p(other) and the share of steps with a positive margin: 0 and 0.5 when the model
    does not use what tells them apart."""
    m = np.asarray(mask, bool) & (chosen != other) & ~np.isnan(logp[..., 0])
    n = int(m.sum())
    if not n:
        return {"margin": None, "prefers_chosen": None, "steps": 0}
    lp_c = np.take_along_axis(logp, chosen[..., None], -1)[..., 0][m]
    lp_o = np.take_along_axis(logp, other[..., None], -1)[..., 0][m]
    return {"margin": float((lp_c - lp_o).mean()), "prefers_chosen": float((lp_c > lp_o).mean()), "steps": n}


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


def dataset_losses(model: RATE, data: Windows, table: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """:func:`action_log_probs` over the windows ``table`` of ``data`` in batches of ``batch_size``: NumPy
    ``logp`` [n, T, A], the data's ``action`` [n, T] (0 at padding), cross-entropy ``ce`` and argmax ``hit``
    [n, T] (NaN / False at padding)."""
    parts: dict[str, list[np.ndarray]] = {"logp": [], "action": [], "ce": [], "hit": []}
    for i in range(0, len(table), batch_size):
        batch = data.to_device(data[table[i:i + batch_size]])
        logp = action_log_probs(model, batch)
        ce, hit = losses_of(logp, batch["action"], batch["valid"])
        for k, v in zip(parts, (logp, batch["action"].clamp(min=0), ce, hit), strict=True):
            parts[k].append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def window_fields(per_episode: Sequence[np.ndarray], table: np.ndarray, window: int) -> np.ndarray:
    """A per-step field of each episode cut into the windows ``table`` [n, 2] of (episode, start): [n, window],
    zero past an episode's end (padded steps, which the losses mark NaN)."""
    def cut(x: np.ndarray, start: int) -> np.ndarray:
        seg = x[start:start + window]
        return np.pad(seg, (0, window - len(seg)))
    return np.stack([cut(per_episode[e], s) for e, s in table])


def store_windows(data: WindowDataset, table: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of the episode store behind ``data`` (e.g. ``reward``) cut into its windows ``table``
    [n, 2] as :func:`window_fields` does: [n, data.window], zero past an episode's end."""
    store = data.store
    whole = store.take(name, np.arange(store.n_steps)[None])[0]
    return window_fields(np.split(whole, store.offsets[1:-1]), table, data.window)
