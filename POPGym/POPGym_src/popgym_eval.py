"""POPGym evaluation protocol (SPEC §3, §4): 100 fixed env seeds per task, target return 1.0, sampled
actions (argmax for Battleship and MineSweeper, the head's output for the Pendulum tasks), every episode
to its natural end. The metric is the mean return (each task's already lies in about [−1, 1]).

Test seeds are 1 000 000 + i and validation seeds 2 000 000 + i; training episodes use seeds below
1 000 000 (``get_data/gen_popgym_data.py``), so the three never meet."""

from __future__ import annotations

import numpy as np
import torch

from POPGym.POPGym_src.popgym_env import ARGMAX_FAMILIES, PopgymVecEnv, family_of
from RATE_model import distributed
from RATE_model.model import RATE
from RATE_model.rollout import rollout, sem, split_seeds

TARGET_RETURN = 1.0
EVAL_EPISODES = 100
VALIDATION_EPISODES = 50
EVAL_SEED_OFFSET = 1_000_000
VALIDATION_SEED_OFFSET = 2_000_000
MAX_STEPS = 2048  # above every task's own episode limit (LabyrinthEscape/Explore: 1 024): episodes end naturally


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The fixed env seeds of the split (``test`` or ``validation``)."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def evaluate(model: RATE, task: str, n_episodes: int = EVAL_EPISODES, batch_size: int = 100,
             split: str = "test", sample_seed: int = 0) -> dict[str, object]:
    """{"return", "return_sem", "length", "episodes": per-episode returns} over ``n_episodes`` seeds of ``split``."""
    seeds = distributed.shard(eval_seeds(n_episodes, split))
    sample = family_of(task) not in ARGMAX_FAMILIES
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, lengths = [np.zeros(0)], [np.zeros(0)]
    for i in range(0, len(seeds), batch_size):
        env = PopgymVecEnv(task, seeds[i:i + batch_size])
        res = rollout(model, env, TARGET_RETURN, MAX_STEPS, sample=sample, generator=gen)
        env.close()
        returns.append(res.returns)
        lengths.append(res.lengths.astype(float))
    parts = distributed.gather((np.concatenate(returns), np.concatenate(lengths)))
    r = np.concatenate([p[0] for p in parts])
    n = np.concatenate([p[1] for p in parts])
    return {"return": float(r.mean()), "return_sem": sem(r), "length": float(n.mean()), "episodes": r.tolist()}


def selection_score(metrics: dict[str, object]) -> float:
    """What best-on-validation maximises: the mean return."""
    return float(metrics["return"])
