"""Measure the oracle path-planner and a uniformly random policy on the evaluation protocol's mazes: mean
return (targets reached) ± standard error, and env steps per second per process.

    python3 MemoryMaze/MemoryMaze_src/measure_expert.py --episodes 100 --max_steps 1000
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from functools import partial

import numpy as np

from MemoryMaze.MemoryMaze_src.expert import oracle_action
from MemoryMaze.MemoryMaze_src.mem_maze_eval import eval_seeds
from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, N_ACTIONS, START_METHOD, MemoryMazeEnv
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, unit_floats
from RATE_model.experiment import run_main
from RATE_model.rollout import sem


def play(seed: int, policy: str, epsilon: float, max_steps: int) -> tuple[float, int, float]:
    """One episode: (return, steps, seconds spent stepping)."""
    env = MemoryMazeEnv(max_steps=max_steps, privileged=policy == "oracle")
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    t0, total, steps, done = time.time(), 0.0, 0, False
    while not done:
        a = oracle_action(info["state"], rng, epsilon) if policy == "oracle" else int(rng.integers(N_ACTIONS))
        _, r, terminated, truncated, info = env.step(a)
        total, steps, done = total + r, steps + 1, terminated or truncated
    env.close()
    return total, steps, time.time() - t0


def measure(policy: str, episodes: int, max_steps: int, epsilon: float = 0.0, workers: int = 2) -> dict[str, float]:
    """Return statistics of ``policy`` ("oracle" or "random") over the first ``episodes`` protocol mazes."""
    with mp.get_context(START_METHOD).Pool(workers) as pool:
        out = pool.map(partial(play, policy=policy, epsilon=epsilon, max_steps=max_steps), eval_seeds(episodes))
    ret, steps, secs = (np.array([o[i] for o in out], float) for i in range(3))
    return {"policy": policy, "epsilon": epsilon, "episodes": episodes, "max_steps": max_steps,
            "return": round(ret.mean(), 2), "return_sem": round(sem(ret), 2), "return_min": ret.min(),
            "steps_per_s_per_process": round(steps.sum() / secs.sum(), 1)}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--episodes", type=int, default=100, help="protocol mazes")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="steps per episode")
    p.add_argument("--epsilons", type=unit_floats, default=[0.0, 0.1], help="oracle noise levels, e.g. 0,0.1")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps", "workers"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS}, got {args.max_steps}")
    out = []
    for policy, eps in [("oracle", eps) for eps in args.epsilons] + [("random", 0.0)]:
        out.append(measure(policy, args.episodes, args.max_steps, eps, args.workers))
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    run_main(main)
