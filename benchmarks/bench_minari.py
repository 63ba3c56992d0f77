"""Minari in and out at image scale: writing a pixel dataset with ``write_dataset`` and streaming it into an episode
store with ``minari_store``; time and peak resident memory of each, against the dataset's size.

    python -m benchmarks.bench_minari --episodes 200 --steps 100          # ViZDoom-sized frames, 430 MB of pixels

Each phase runs in its own process (``--phase write|read``), so its peak RSS is its own. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 64, 112)  # ViZDoom-Two-Colors frames
DATASET_ID = "bench/pixels-v0"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(episodes: int, steps: int) -> dict:
    import gymnasium as gym

    from RATE_model.minari_data import minari_episode, write_dataset

    def gen():
        for i in range(episodes):
            rng = np.random.default_rng(i)
            yield minari_episode(rng.integers(0, 256, (steps, *SHAPE), dtype=np.uint8), rng.integers(0, 5, steps),
                                 rng.random(steps), terminated=False, truncated=True)

    t0 = time.perf_counter()
    folder = write_dataset(DATASET_ID, gen(), gym.spaces.Box(0, 255, SHAPE, np.uint8), gym.spaces.Discrete(5))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "dataset_mb": size / 2**20}


def read(store_dir: str) -> dict:
    from RATE_model.minari_data import minari_store

    base = peak_rss_mb()
    t0 = time.perf_counter()
    store, _, _ = minari_store(DATASET_ID, Path(store_dir))
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": base,
            "steps": store.n_steps, "steps_per_s": store.n_steps / (time.perf_counter() - t0)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--phase", choices=("all", "write", "read"), default="all")
    p.add_argument("--store_dir")
    args = p.parse_args(argv)
    if args.phase == "write":
        print(json.dumps(write(args.episodes, args.steps)))
        return {}
    if args.phase == "read":
        print(json.dumps(read(args.store_dir)))
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MINARI_DATASETS_PATH": str(Path(tmp) / "minari")}
        out = {}
        for phase, extra in (("write", []), ("read", ["--store_dir", str(Path(tmp) / "store")])):
            res = subprocess.run([sys.executable, "-m", "benchmarks.bench_minari", "--phase", phase, "--episodes",
                                  str(args.episodes), "--steps", str(args.steps), *extra], cwd=ROOT, env=env,
                                 capture_output=True, text=True, check=True)
            out[phase] = json.loads(res.stdout.strip().splitlines()[-1])
    episode_mb = args.steps * int(np.prod(SHAPE)) / 2**20
    result = {"bench": "minari", "episodes": args.episodes, "steps": args.steps, "episode_pixels_mb": episode_mb,
              "pixels_mb": episode_mb * args.episodes, **{f"{k}_{m}": v for k, r in out.items() for m, v in r.items()}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
