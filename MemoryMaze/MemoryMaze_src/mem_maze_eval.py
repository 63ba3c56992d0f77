"""Memory Maze 9×9 evaluation protocol (SPEC §3): fixed seeds (one maze each), target return 18.1, sampled
actions from a seeded generator, 1 000-step episodes; mean return (targets reached) ± standard error and
every episode's seed and return.

    python3 MemoryMaze/MemoryMaze_src/mem_maze_eval.py runs/memory_maze/RATE/seed_1/checkpoints/last.pt \
        --episodes 30 --target_return 18.1,12

Episodes run in worker processes (``gymnasium.vector.AsyncVectorEnv``, one per episode of a batch) and
step together through the shared rollout engine, which encodes every frame once. Under torchrun each
rank plays a contiguous slice of the seeds and the results are gathered.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, START_METHOD, MemoryMazeEnv
from RATE_model import distributed
from RATE_model.attention import load_model
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, float_list
from RATE_model.experiment import evaluate_targets, run_main
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem, split_seeds
from RATE_model.vector import GymVectorEnv

TARGET_RETURN = 18.1
EVAL_SEED_OFFSET = 1_000_000  # below the training data's maze seeds (>= 2**30)
VALIDATION_SEED_OFFSET = 2_000_000  # validation episodes (evaluation during training); never test ones
VALIDATION_EPISODES = 10
ENV_BYTES = 1.5 * 2**30  # one simulator process: the package's 88 wall/floor textures (266 MB) compiled and
                         # uploaded to the renderer come to ~1.4 GB (measured), so memory caps the workers


def default_batch_size() -> int:
    """Episodes stepped together when not given: 2 per CPU core (the simulator is CPU-bound, so more
    processes than that only wait), fewer where the available memory would not hold them."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(2 * (os.cpu_count() or 1), int(free // ENV_BYTES)))


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The protocol's fixed maze seeds of the split (``test`` or ``validation``)."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def attention_episode(seed: int, length: int | None, args: dict[str, Any]) -> Episode:
    """One episode for the attention tool: maze ``seed``, ``length`` steps (default: the run's evaluation
    length), sampled actions; the first target's colour is on the frame's border from the first step."""
    steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
    env = GymVectorEnv(partial(MemoryMazeEnv, max_steps=steps), [seed], context=START_METHOD)
    return Episode(env, float(args.get("target_return") or TARGET_RETURN), steps, sample=True, cue_steps=(0,),
                   close=env.close)


def evaluate(model: RATE, n_episodes: int = 100, max_steps: int = MAX_STEPS, batch_size: int | None = None,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             split: str = "test") -> dict[str, Any]:
    """{"return", "return_sem", "return_first_half", "return_second_half", "episodes_n", "episodes":
    [{"seed", "return", "return_first_half", "return_second_half"}, ...]} over ``n_episodes`` fixed mazes of
    the ``split`` (halves of ``max_steps``), at most ``batch_size`` worker processes at a time (default:
    :func:`default_batch_size`)."""
    batch_size = batch_size or default_batch_size()
    seeds = distributed.shard(eval_seeds(n_episodes, split))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, first = [np.zeros(0)], [np.zeros(0)]
    show = progress and distributed.is_main()
    for i in tqdm(range(0, len(seeds), batch_size), desc="Memory Maze eval batches", disable=not show, leave=False):
        with GymVectorEnv(partial(MemoryMazeEnv, max_steps=max_steps), seeds[i:i + batch_size],
                          info_keys=("targets_first_half",), context=START_METHOD) as env:
            res = rollout(model, env, target_return, max_steps=max_steps, sample=True, generator=gen,
                          progress="Memory Maze eval steps" if show else False)
        returns.append(res.returns)
        first.append(res.infos["targets_first_half"].astype(float))
    parts = distributed.gather((np.asarray(seeds), np.concatenate(returns), np.concatenate(first)))
    seed_all, ret, half = (np.concatenate([p[j] for p in parts]) for j in range(3))
    return {"return": float(ret.mean()), "return_sem": sem(ret), "return_first_half": float(half.mean()),
            "return_second_half": float((ret - half).mean()), "episodes_n": len(ret),
            "episodes": [{"seed": int(s), "return": float(r), "return_first_half": float(h),
                          "return_second_half": float(r - h)} for s, r, h in zip(seed_all, ret, half, strict=True)]}


def selection_score(metrics: dict[str, Any]) -> float:
    """What best-on-validation maximises: the mean return."""
    return float(metrics["return"])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """One JSON line per target return: the metrics of ``evaluate`` without the episode list (``--out``: with
    it, one JSON line each)."""
    p = OneLineErrorParser(description="Evaluate a Memory Maze checkpoint on the protocol mazes", allow_abbrev=False)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--episodes", type=int, default=100, help="protocol mazes (the first N test seeds)")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="steps per episode")
    p.add_argument("--target_return", type=float_list, default=(TARGET_RETURN,), help="e.g. 18.1,12")
    p.add_argument("--batch_size", type=int, help="episodes stepped together (default: 2 per core)")
    p.add_argument("--out", type=Path, help="also write every result with its episodes here, one JSON line each")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps", "batch_size"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS} (the task's episode length), got {args.max_steps}")
    model, _ = load_model(args.checkpoint)
    return evaluate_targets(args.target_return, lambda target: {  # progress bars on stderr
        "checkpoint": str(args.checkpoint), "max_steps": args.max_steps, "target_return": target,
        **evaluate(model, args.episodes, args.max_steps, args.batch_size, target)}, args.out)


if __name__ == "__main__":
    run_main(main)
