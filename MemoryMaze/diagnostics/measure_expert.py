"""Measure an oracle or a uniformly random policy on the evaluation protocol's mazes: mean return (targets
reached) ± standard error, over the whole episode and its two halves, how often the current target had
been seen when it was assigned (visible oracle), and env steps per second per process.

    python3 MemoryMaze/diagnostics/measure_expert.py --oracle visible --episodes 20 --json
    python3 MemoryMaze/diagnostics/measure_expert.py --oracle privileged --epsilon 0.1 --episodes 20

A remembered layout and remembered targets pay in the second half of an episode: there the visible oracle
knows where the targets are, while in the first half it still has to find them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from functools import partial
from typing import Any

import numpy as np

from MemoryMaze.MemoryMaze_src.expert import ORACLES, VisibleOracle, oracle_action
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV
from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, N_ACTIONS, START_METHOD, MemoryMazeEnv
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.rollout import sem

POLICIES = (*ORACLES, "random")


def play(seed: int, policy: str, epsilon: float, max_steps: int) -> dict[str, float]:
    """One episode on maze ``seed``: return, return in each half, steps, seconds spent stepping and (visible
    oracle) targets assigned and how many of them it had seen by then."""
    env = MemoryMazeEnv(max_steps=max_steps, privileged=policy != "random")
    rng = np.random.default_rng(seed)
    agent = VisibleOracle(epsilon) if policy == "visible" else None
    _, info = env.reset(seed=seed)
    t0, rewards, done = time.time(), [], False
    while not done:
        if agent is not None:
            a = agent.act(info["state"], rng)
        elif policy == "privileged":
            a = oracle_action(info["state"], rng, epsilon)
        else:
            a = int(rng.integers(N_ACTIONS))
        _, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        done = terminated or truncated
    secs = time.time() - t0
    env.close()
    seen = agent.seen_at_assignment if agent is not None else []
    half = max_steps // 2
    return {"return": sum(rewards), "first": sum(rewards[:half]), "second": sum(rewards[half:]),
            "steps": len(rewards), "secs": secs, "assigned": len(seen), "assigned_seen": sum(seen)}


def measure(policy: str, episodes: int, max_steps: int, epsilon: float = 0.0, workers: int = 2) -> dict[str, Any]:
    """Return statistics of ``policy`` (``visible``, ``privileged`` or ``random``) over the first ``episodes``
    protocol mazes."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    with mp.get_context(START_METHOD).Pool(min(workers, episodes)) as pool:
        out = pool.map(partial(play, policy=policy, epsilon=epsilon, max_steps=max_steps), ENV.seeds(episodes))
    col = {k: np.array([o[k] for o in out], float) for k in out[0]}
    ret = col["return"]
    stats = {"policy": policy, "epsilon": epsilon if policy != "random" else None, "episodes": episodes,
             "max_steps": max_steps, "return": round(ret.mean(), 2), "return_sem": round(sem(ret), 2),
             "return_min": ret.min(), "return_first_half": round(col["first"].mean(), 2),
             "return_second_half": round(col["second"].mean(), 2),
             "second_minus_first_sem": round(sem(col["second"] - col["first"]), 2),
             "steps_per_s_per_process": round(col["steps"].sum() / col["secs"].sum(), 1)}
    if policy == "visible":
        stats["seen_at_assignment"] = round(col["assigned_seen"].sum() / max(col["assigned"].sum(), 1), 3)
    return stats


def describe(s: dict[str, Any]) -> str:
    """One readable line of :func:`measure`'s statistics."""
    name = s["policy"] if s["policy"] == "random" else f"{s['policy']} oracle, epsilon {s['epsilon']:g}"
    seen = f", target seen when assigned {s['seen_at_assignment']:.2f}" if "seen_at_assignment" in s else ""
    return (f"{name}: return {s['return']:.2f} ± {s['return_sem']:.2f} over {s['episodes']} mazes × "
            f"{s['max_steps']} steps (first half {s['return_first_half']:.2f}, second half "
            f"{s['return_second_half']:.2f}){seen}; {s['steps_per_s_per_process']:.0f} steps/s per process")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--oracle", choices=POLICIES, default="visible",
                   help="visible: acts on what it has seen; privileged: reads the maze; random: uniform actions")
    p.add_argument("--epsilon", type=float, default=0.0, help="probability of a random action per step")
    p.add_argument("--episodes", type=int, default=100, help="protocol mazes")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="steps per episode")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON line")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps", "workers"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS}, got {args.max_steps}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    stats = measure(args.oracle, args.episodes, args.max_steps, args.epsilon, args.workers)
    print(json.dumps(stats) if args.json else describe(stats), flush=True)
    return stats


if __name__ == "__main__":
    run_main(main)
