"""T-Maze evaluation protocol (SPEC §3): success rate over fixed seeds at each corridor length.

Under torchrun each rank plays a contiguous slice of the seeds and the successes are summed."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.model import RATE
from RATE_model.rollout import rollout
from TMaze_new.TMaze_new_src.tmaze_env import TMazeVecEnv

PROTOCOL_LENGTHS = (9, 30, 90, 150, 300, 600, 900, 1200, 2400, 4800, 9600)
TARGET_RETURN = 1.0


def eval_seeds(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeds 0..n-1; the first half goes up, the second half down."""
    seeds = np.arange(n)
    goals = np.where(seeds < (n + 1) // 2, 1, -1)
    return goals, seeds


def success_rate(model: RATE, T: int, n_seeds: int = 100, batch_size: int = 100) -> float:
    """Fraction of the ``n_seeds`` fixed episodes of length T that reach the correct goal (argmax policy)."""
    goals, seeds = eval_seeds(n_seeds)
    goals, seeds = distributed.shard(goals), distributed.shard(seeds)
    wins = 0.0
    for i in range(0, len(seeds), batch_size):
        env = TMazeVecEnv(T, goals[i:i + batch_size], seeds[i:i + batch_size])
        res = rollout(model, env, TARGET_RETURN, max_steps=T, sample=False)
        wins += float(res.infos["success"].sum())
    return float(distributed.all_sum(torch.tensor(wins, dtype=torch.float64))) / n_seeds


def evaluate(model: RATE, lengths: list[int], n_seeds: int = 100, progress: bool = True) -> dict[str, float]:
    """{str(T): success rate} over the given corridor lengths."""
    out = {}
    show = None if progress and distributed.is_main() else True  # None: only on a terminal
    for T in tqdm(lengths, desc="T-Maze eval", disable=show, leave=False):
        out[str(T)] = success_rate(model, T, n_seeds)
    return out
