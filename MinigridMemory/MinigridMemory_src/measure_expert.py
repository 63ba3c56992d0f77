"""Measure the scripted expert: success rate, episode length and return per grid size and noise level,
and the collection speed of collect_traj.py (episodes/s with all CPU cores).

    python3 MinigridMemory/MinigridMemory_src/measure_expert.py --sizes 31,91 --episodes 500
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="31,91")
    p.add_argument("--epsilons", default="0,0.1")
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--collect_episodes", type=int, default=1000, help="episodes for the collection-speed run")
    p.add_argument("--collect_size", type=int, default=31)
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    for size in [int(x) for x in args.sizes.split(",")]:
        for eps in [float(x) for x in args.epsilons.split(",")]:
            print(json.dumps(expert_stats(size, args.episodes, eps)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stats = collect(Path(tmp), args.collect_episodes, args.collect_size, epsilon=0.1, workers=args.workers,
                        progress=False)
        size_mb = sum(f.stat().st_size for f in Path(tmp).glob("*.npz")) / 2**20
    stats["mb_per_1000_episodes"] = round(size_mb * 1000 / args.collect_episodes, 1)
    print(json.dumps({"collection": stats}), flush=True)


if __name__ == "__main__":
    main()
