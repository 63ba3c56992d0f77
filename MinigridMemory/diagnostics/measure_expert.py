"""Measure the scripted expert: success rate, episode length and return per grid size and noise level,
and the collection speed of collect_traj.py (episodes/s with all CPU cores).

    python3 MinigridMemory/diagnostics/measure_expert.py --sizes 31,91 --episodes 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from MinigridMemory.get_data.collect_traj import collect
from MinigridMemory.MinigridMemory_src.expert import expert_episode
from MinigridMemory.MinigridMemory_src.minigrid_env import check_size
from RATE_model.cli import run_main
from RATE_model.config import OneLineErrorParser, check_positive, unit_floats


def expert_stats(size: int, episodes: int, epsilon: float, seed_offset: int = 0) -> dict[str, float]:
    """Success rate (and how often the cue was seen), mean/max length and mean return over fixed seeds."""
    succ, seen, lengths, returns = [], [], [], []
    t0 = time.time()
    for s in range(seed_offset, seed_offset + episodes):
        ep = expert_episode(size, s, epsilon, noise_seed=s)
        succ.append(ep["success"])
        seen.append(ep["cue_seen"])
        lengths.append(len(ep["action"]))
        returns.append(float(ep["reward"].sum()))
    return {"size": size, "epsilon": epsilon, "episodes": episodes, "success": float(np.mean(succ)),
            "cue_seen": float(np.mean(seen)), "mean_len": float(np.mean(lengths)), "max_len": int(max(lengths)),
            "mean_return": float(np.mean(returns)), "episodes_per_s_1core": round(episodes / (time.time() - t0), 1)}


def grid_size(text: str) -> int:
    """argparse type: a grid size MemoryEnv can build (odd, >= 7)."""
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return check_size(size)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def grid_sizes(text: str) -> list[int]:
    """argparse type: grid sizes separated by commas (e.g. ``31,91``)."""
    return [grid_size(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--sizes", type=grid_sizes, default=[31, 91], help="grid sizes, e.g. 31,91")
    p.add_argument("--epsilons", type=unit_floats, default=[0.0, 0.1], help="expert noise levels, e.g. 0,0.1")
    p.add_argument("--episodes", type=int, default=500, help="episodes per grid size and noise level")
    p.add_argument("--collect_episodes", type=int, default=1000, help="episodes for the collection-speed run")
    p.add_argument("--collect_size", type=grid_size, default=31, help="grid size of the collection-speed run")
    p.add_argument("--workers", type=int, default=None, help="processes of the collection-speed run (default: all)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "collect_episodes", "workers"))
    for size in args.sizes:
        for eps in args.epsilons:
            print(json.dumps(expert_stats(size, args.episodes, eps)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stats = collect(Path(tmp), args.collect_episodes, args.collect_size, epsilon=0.1, workers=args.workers,
                        progress=False)
        size_mb = sum(f.stat().st_size for f in Path(tmp).glob("*.npz")) / 2**20
    stats["mb_per_1000_episodes"] = round(size_mb * 1000 / args.collect_episodes, 1)
    print(json.dumps({"collection": stats}), flush=True)


if __name__ == "__main__":
    run_main(main)
