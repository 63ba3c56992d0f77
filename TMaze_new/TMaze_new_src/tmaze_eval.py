"""T-Maze evaluation protocol (SPEC §3): success rate over fixed seeds at each corridor length.

Test seeds are 0..n-1 (the reported numbers); validation seeds (evaluation during training, best-checkpoint
selection) start at ``VALIDATION_SEED_OFFSET``, far above the test seeds and the training data's noise seeds.

Under torchrun each rank plays a contiguous slice of the seeds and the successes are summed."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, split_seeds
from TMaze_new.TMaze_new_src.tmaze_env import TMazeVecEnv

PROTOCOL_LENGTHS = (9, 30, 90, 150, 300, 600, 900, 1200, 2400, 4800, 9600)
TARGET_RETURN = 1.0
TEST_SEED_OFFSET, VALIDATION_SEED_OFFSET = 0, 1_000_000_000
VALIDATION_EPISODES = 20  # per length


def eval_seeds(n: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Goal sides and seeds of the split's n episodes; the first half goes up, the second half down."""
    seeds = np.array(split_seeds(n, split, TEST_SEED_OFFSET, VALIDATION_SEED_OFFSET))
    goals = np.where(np.arange(n) < (n + 1) // 2, 1, -1)
    return goals, seeds


def selection_score(metrics: dict[str, float]) -> float:
    """What best-on-validation maximises: the mean success rate over the evaluated lengths."""
    return float(np.mean([v for k, v in metrics.items() if k.isdigit()]))


def success_rate(model: RATE, T: int, n_seeds: int = 100, batch_size: int = 100, split: str = "test") -> float:
    """Fraction of the ``n_seeds`` fixed episodes of length T that reach the correct goal (argmax policy)."""
    goals, seeds = eval_seeds(n_seeds, split)
    goals, seeds = distributed.shard(goals), distributed.shard(seeds)
    wins = 0.0
    for i in range(0, len(seeds), batch_size):
        env = TMazeVecEnv(T, goals[i:i + batch_size], seeds[i:i + batch_size])
        res = rollout(model, env, TARGET_RETURN, max_steps=T, sample=False)
        wins += float(res.infos["success"].sum())
    return float(distributed.all_sum(torch.tensor(wins, dtype=torch.float64))) / n_seeds


def attention_episode(seed: int, length: int | None, args: dict) -> Episode:
    """One episode for the attention tool: corridor T = ``length`` (default: the training length
    N·K), goal up for an even seed, down for an odd one; the cue is o_0."""
    T = length or int(args.get("max_n_final", 3)) * int(args.get("context_length", 30))
    env = TMazeVecEnv(T, np.array([1 if seed % 2 == 0 else -1]), np.array([seed]))
    return Episode(env, TARGET_RETURN, T, cue_steps=(0,))


def evaluate(model: RATE, lengths: list[int], n_seeds: int = 100, progress: bool = True,
             split: str = "test") -> dict[str, float]:
    """{str(T): success rate} over the given corridor lengths, on the ``split``'s seeds."""
    out = {}
    show = None if progress and distributed.is_main() else True  # None: only on a terminal
    for T in tqdm(lengths, desc="T-Maze eval", disable=show, leave=False):
        out[str(T)] = success_rate(model, T, n_seeds, split=split)
    return out
