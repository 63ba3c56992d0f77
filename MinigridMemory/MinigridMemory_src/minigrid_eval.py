"""Minigrid-Memory evaluation protocol (SPEC §3): fixed seeds per grid size, sampled actions from a
seeded generator, target return 0.96; metrics are mean return and success rate per grid size.

Under torchrun each rank plays a contiguous slice of the seeds and the per-episode results are
gathered; the sampled actions then come from per-rank generators, so the numbers are not identical
to a one-process evaluation (the seeds and the protocol are)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from MinigridMemory.MinigridMemory_src.minigrid_env import MinigridMemoryVecEnv, default_timeout
from RATE_model import distributed
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, split_seeds

PROTOCOL_SIZES = (11, 21, 31, 41, 51, 61, 71, 81, 91)
TARGET_RETURN = 0.96
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never share a seed index with small training runs
VALIDATION_SEED_OFFSET = 2_000_000  # validation episodes (evaluation during training); never test ones
VALIDATION_EPISODES = 20  # per grid size


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The fixed environment seeds of the split (``test`` or ``validation``), the same for every grid size."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def evaluate_size(model: RATE, size: int, n_seeds: int = 100, timeout: int | None = None,
                  max_steps: int | None = None, batch_size: int = 100, sample_seed: int = 0,
                  split: str = "test") -> dict[str, float]:
    """Mean return, success rate and the fraction of unfinished episodes (no object touched before the
    timeout or ``max_steps``) over ``n_seeds`` fixed episodes of the ``split`` on a size×size grid; the other failures
    touched the wrong object.

    ``timeout`` is the env's T (default 5·size²); ``max_steps`` optionally stops the rollout earlier
    (unfinished episodes count as failures with return 0), which bounds evaluation cost on CPU.
    """
    T = default_timeout(size) if timeout is None else timeout
    steps = T if max_steps is None else min(T, max_steps)
    seeds = distributed.shard(eval_seeds(n_seeds, split))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed * 1000 + size + 7919 * distributed.rank())
    returns, successes, unfinished = [np.zeros(0)], [np.zeros(0)], [np.zeros(0)]
    for i in range(0, len(seeds), batch_size):
        env = MinigridMemoryVecEnv(size, seeds[i:i + batch_size], timeout=T)
        res = rollout(model, env, TARGET_RETURN, max_steps=steps, sample=True, generator=gen)
        returns.append(res.returns)
        successes.append(res.infos["success"])
        unfinished.append(1.0 - res.infos["touched"])
    parts = distributed.gather(tuple(np.concatenate(x) for x in (returns, successes, unfinished)))
    return {k: float(np.concatenate([p[i] for p in parts]).mean())
            for i, k in enumerate(("return", "success", "unfinished"))}


def attention_episode(seed: int, length: int | None, args: dict) -> Episode:
    """One episode for the attention tool: grid size ``length`` (default: the run's first evaluation
    size), its timeout, sampled actions; the cue object is in view from the first step."""
    size = length or int((args.get("eval_sizes") or [11])[0])
    T = args.get("eval_timeout") or default_timeout(size)
    steps = min(T, args.get("eval_max_steps") or T)
    return Episode(MinigridMemoryVecEnv(size, [seed], timeout=T), TARGET_RETURN, steps, sample=True, cue_steps=(0,))


def evaluate(model: RATE, sizes: list[int], n_seeds: int = 100, timeout: int | None = None,
             max_steps: int | None = None, batch_size: int = 100, progress: bool = True,
             split: str = "test") -> dict[str, float]:
    """{"return_<size>": mean return, "success_<size>": success rate, "unfinished_<size>": fraction that
    touched no object in time} for every grid size."""
    out: dict[str, float] = {}
    show = None if progress and distributed.is_main() else True  # None: only on a terminal
    for size in tqdm(sizes, desc="Minigrid-Memory eval", disable=show, leave=False):
        m = evaluate_size(model, size, n_seeds, timeout, max_steps, batch_size, split=split)
        out.update({f"{k}_{size}": v for k, v in m.items()})
    return out


def selection_score(metrics: dict[str, float]) -> float:
    """What best-on-validation maximises: the mean success rate over the evaluated grid sizes."""
    return float(np.mean([v for k, v in metrics.items() if k.startswith("success_")]))
