"""Memory Maze 9×9 speed: env steps per second (one process, and all workers of an AsyncVectorEnv), and the
wall time of an evaluation of E mazes x T steps through the rollout engine.

    python -m benchmarks.bench_memory_maze env --steps 1000         # one process, random actions
    python -m benchmarks.bench_memory_maze vector --workers 2       # 2 worker processes stepped together
    python -m benchmarks.bench_memory_maze eval --episodes 10 --T 1000 --preset memmaze-cpu

Every episode runs to T (Memory Maze episodes never end early), so ``eval`` times E x T simulated,
rendered and decoded steps; the worker processes start from a fork server (see ``START_METHOD``).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch

from benchmarks.envbench import bench_env, bench_vector
from benchmarks.machine import describe
from benchmarks.presets import PRESETS
from MemoryMaze.MemoryMaze_src.mem_maze_eval import evaluate
from MemoryMaze.MemoryMaze_src.memory_maze_env import N_ACTIONS, START_METHOD, MemoryMazeEnv
from RATE_model.model import RATE


def bench_eval(preset: str, episodes: int, T: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = RATE(PRESETS[preset].model)
    t = time.perf_counter()
    m = evaluate(model, episodes, T, batch_size, progress=False)
    sec = time.perf_counter() - t
    return {"bench": "eval", "preset": preset, "episodes": episodes, "T": T, "batch_size": batch_size,
            "return": m["return"], "seconds": round(sec, 1), "ms_per_env_step": round(1000 * sec / (episodes * T), 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["env", "vector", "eval"])
    p.add_argument("--steps", type=int, help="env: steps (default 1000); vector: batched steps (default 100)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--batch_size", type=int, help="eval: episodes (worker processes) stepped together")
    p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("memmaze")), default="memmaze-cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.what == "env":
        out = bench_env(MemoryMazeEnv, N_ACTIONS, args.steps or 1000)
    elif args.what == "vector":
        out = bench_vector(partial(MemoryMazeEnv, max_steps=1000), N_ACTIONS, args.workers, args.steps or 100,
                           context=START_METHOD)
    else:
        out = bench_eval(args.preset, args.episodes, args.T, args.batch_size)
    out.update(device=describe(torch.device("cpu")), date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out) if args.json else "\n".join(f"{k:<28} {v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
