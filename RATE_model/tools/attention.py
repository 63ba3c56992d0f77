"""Attention maps of a trained model on one evaluation episode.

    python -m RATE_model.tools.attention CKPT --env ENV --seed S -o DIR [--length T] [--segments 0,1,-1]

plays one episode of the env's protocol with the checkpoint's model (incremental decoding, as in
evaluation), then runs each segment again as a whole with the attention probabilities recorded, and
writes into DIR:

* ``segment_<i>.png`` — per layer, the attention (mean over heads) of the segment's tokens (rows: read
  memory slots, then R, o, a of every step, then write slots) over its keys (columns: hidden-state
  cache, read memory, the segment's tokens, write slots), for the chosen segments;
* ``attention_share.csv`` — per step and layer, the share of the attention of the token that predicts
  the action (o_t) on the memory tokens, on the cache, on the segment, and on the episode's cue
  observations (``cue_steps`` of the env, e.g. T-Maze's o_0) where they are in view;
* ``summary.json`` — those shares at the cue and decision (last) steps, averaged over layers.

DT (no memory tokens, no cache) reads its context only, so its memory share is 0 by construction; its
share on the cue tells whether the cue is still in its context.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from RATE_model import checkpoint as ckpt_io
from RATE_model import envs
from RATE_model.checkpoint import load_model
from RATE_model.config import OneLineErrorParser, int_list
from RATE_model.files import WriteError, save_figure, write_text
from RATE_model.model import RATE, State
from RATE_model.rollout import Episode, rollout

GROUPS = ("memory", "cache", "segment", "cue")


class AttentionError(ValueError):
    """Bad input to the attention tool (one line)."""


@dataclass
class SegmentAttention:
    """The recorded attention of one segment: per layer [H, q, k] probabilities and the key layout."""

    index: int  # segment number
    start: int  # its first env step
    steps: int  # env steps in it
    probs: list[Tensor]  # per layer [H, q, k]
    n_cache: int  # keys: [cache (n_cache) | read (m) | 3·steps segment tokens | write (m)]
    m: int
    cue_keys: list[int]  # key columns of cue observations in view (segment or cache)


def play(model: RATE, episode: Episode, sample_seed: int = 0) -> dict[str, np.ndarray]:
    """One episode with the model as policy; its return-to-go, observations and actions [T, ...]."""
    gen = torch.Generator().manual_seed(sample_seed)
    try:
        res = rollout(model, episode.env, episode.target_return, episode.max_steps, sample=episode.sample,
                      reward_scale=episode.reward_scale, reset_rtg_each_segment=episode.reset_rtg_each_segment,
                      generator=gen, keep_trajectory=True)
    finally:
        if episode.close is not None:
            episode.close()
    n = int(res.lengths[0])
    out = {k: v[:n, 0] for k, v in res.trajectory.items()}
    out["return"] = np.float64(res.returns[0])
    return out


@torch.no_grad()
def record(model: RATE, traj: dict[str, np.ndarray], cue_steps: tuple[int, ...] = ()) -> list[SegmentAttention]:
    """Run the episode segment by segment as in training (memory and cache flowing forward) with every
    layer's attention probabilities recorded."""
    K, m = model.cfg.context_length, model.m
    T = len(traj["action"])
    rtg = torch.as_tensor(traj["rtg"], dtype=torch.float32).view(1, T, 1)
    obs = torch.as_tensor(traj["obs"]).unsqueeze(0)
    act = torch.as_tensor(traj["action"]).unsqueeze(0)
    recorded: list[list[Tensor]] = [[] for _ in model.layers]  # per layer, the probabilities of each forward

    def hook(i: int):  # asks the layer for the probabilities of the inputs it was just called with
        return lambda attn, inputs, _out: recorded[i].append(attn.probabilities(*inputs)[0].cpu())

    hooks = [layer.attn.register_forward_hook(hook(i)) for i, layer in enumerate(model.layers)]
    state: State | None = None
    cache_steps = np.zeros(0, np.int64)  # env step of each cached token's step (-1: not an observation)
    segments = []
    try:
        for i, s in enumerate(range(0, T, K)):
            e = min(s + K, T)
            valid = torch.ones(1, e - s, dtype=torch.bool)
            n_cache = 0 if state is None or state.cache is None else state.cache[0].shape[1]
            _, state = model(rtg[:, s:e], obs[:, s:e], act[:, s:e], valid, state)
            seg_obs = np.full(3 * (e - s), -1)
            seg_obs[1::3] = np.arange(s, e)  # the o_t tokens
            cue = [int(j) for j, t in enumerate(cache_steps[-n_cache:] if n_cache else []) if t in cue_steps]
            cue += [n_cache + m + j for j, t in enumerate(seg_obs) if t in cue_steps]
            segments.append(SegmentAttention(i, s, e - s, [r.pop() for r in recorded], n_cache, m, cue))
            tokens = np.concatenate([np.full(m, -1), seg_obs, np.full(m, -1)])
            if model.cfg.mem_len:
                cache_steps = np.concatenate([cache_steps, tokens])[-model.cfg.mem_len:]
    finally:
        for h in hooks:
            h.remove()
    return segments


def shares(seg: SegmentAttention) -> np.ndarray:
    """[layers, steps, 4]: attention of each o_t query on memory, cache, segment and cue keys (head mean)."""
    c, m, n = seg.n_cache, seg.m, 3 * seg.steps
    rows = m + 1 + 3 * np.arange(seg.steps)  # the o_t queries
    out = np.zeros((len(seg.probs), seg.steps, len(GROUPS)))
    for li, p in enumerate(seg.probs):
        a = p.mean(0).numpy()[rows]  # [steps, keys]
        out[li, :, 0] = a[:, c:c + m].sum(-1)
        out[li, :, 1] = a[:, :c].sum(-1)
        out[li, :, 2] = a[:, c + m:c + m + n].sum(-1)
        out[li, :, 3] = a[:, seg.cue_keys].sum(-1) if seg.cue_keys else 0.0
    return out


def plot_segment(seg: SegmentAttention, path: Path, title: str) -> None:
    """One PNG: a heat map per layer of the head-mean attention, key groups marked."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (a notebook's) alone

    L = len(seg.probs)
    fig = Figure(figsize=(4.2 * L, 4.2))
    axes = fig.subplots(1, L, squeeze=False)
    c, m, n = seg.n_cache, seg.m, 3 * seg.steps
    for li, (ax, p) in enumerate(zip(axes[0], seg.probs, strict=True)):
        ax.imshow(p.mean(0).numpy(), cmap="viridis", aspect="auto", interpolation="nearest", vmin=0)
        for x in (c, c + m, c + m + n):
            ax.axvline(x - 0.5, color="white", lw=0.8)
        for y in (m, m + n):
            ax.axhline(y - 0.5, color="white", lw=0.8)
        ax.set(title=f"layer {li}", xlabel="keys: cache | read | segment | write",
               ylabel="queries: read | segment | write")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def episode_for(env: str, seed: int, length: int | None, args: dict[str, Any]) -> Episode:
    """The env's protocol episode of ``seed`` (its :meth:`Environment.attention_episode`)."""
    return envs.get(env).attention_episode(seed, length, args)


def analyse(model: RATE, episode: Episode, out: Path, segments: list[int] | None = None,
            sample_seed: int = 0, label: str = "") -> dict[str, Any]:
    """Play, record, write the PNGs, CSV and summary into ``out``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    traj = play(model, episode, sample_seed)
    segs = record(model, traj, episode.cue_steps)
    chosen = sorted({i % len(segs) for i in (segments if segments is not None else [0, 1, -2, -1])})
    for i in chosen:
        plot_segment(segs[i], out / f"segment_{i:03d}.png",
                     f"{label} segment {i} (steps {segs[i].start}..{segs[i].start + segs[i].steps - 1})")
    per_step = np.concatenate([shares(s) for s in segs], axis=1)  # [layers, T, 4]
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["step", "segment", "layer", *GROUPS])
    for s in segs:
        for t in range(s.steps):
            for li in range(per_step.shape[0]):
                w.writerow([s.start + t, s.index, li, *(f"{x:.5f}" for x in per_step[li, s.start + t])])
    write_text(out / "attention_share.csv", rows.getvalue())
    T = per_step.shape[1]

    def at(t: int) -> dict[str, float]:
        return {g: round(float(per_step[:, t, j].mean()), 5) for j, g in enumerate(GROUPS)}

    summary = {"label": label, "steps": T, "return": float(traj["return"]), "segments": len(segs),
               "cue_steps": list(episode.cue_steps), "cue": {str(t): at(t) for t in episode.cue_steps if t < T},
               "decision": {"step": T - 1, **at(T - 1)},
               "mean_over_steps": {g: round(float(per_step[:, :, j].mean()), 5) for j, g in enumerate(GROUPS)},
               "pngs": [f"segment_{i:03d}.png" for i in chosen]}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = OneLineErrorParser(prog="python -m RATE_model.tools.attention", description=__doc__.splitlines()[0])
    p.add_argument("ckpt", type=Path, help="a checkpoint (last.pt, best.pt)")
    p.add_argument("--env", help="environment (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0, help="the episode's env seed")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--length", type=int, help="episode length or size (T-Maze corridor T, Minigrid grid size, "
                                              "else steps; default: the run's training/evaluation setting)")
    p.add_argument("--segments", type=int_list, help="segments to draw (negative from the end; default 0,1,-2,-1)")
    p.add_argument("--sample_seed", type=int, default=0, help="seed of sampled actions (envs that sample)")
    a = p.parse_args(argv)
    if a.length is not None and a.length < 1:
        p.error(f"--length must be >= 1, got {a.length}")
    try:
        model, config = load_model(a.ckpt)
        env = a.env or config.get("env")
        if config.get("env") and env != config["env"]:
            raise AttentionError(f"--env {env} but {a.ckpt} was trained on {config['env']}")
        episode = episode_for(env, a.seed, a.length, config.get("args") or {})
        label = f"{config.get('model', {}).get('model_mode', '')} {env} seed {a.seed}".strip()
        summary = analyse(model, episode, a.out, a.segments, a.sample_seed, label)
    except (AttentionError, ckpt_io.CheckpointError, ValueError, WriteError) as e:  # EnvError: a ValueError
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    print(f"{label}: {summary['steps']} steps, return {summary['return']:g}; attention share of o_t at the decision "
          f"step: {json.dumps({k: v for k, v in summary['decision'].items() if k != 'step'})}; wrote {a.out}")
    return summary


if __name__ == "__main__":
    main()
