"""Time a T-Maze evaluation of E episodes of T steps with the real rollout engine (untrained weights).

    python -m benchmarks.bench_eval --preset tmaze-paper --T 900 --episodes 100 [--json]
    python -m benchmarks.bench_eval --preset tmaze-paper --protocol   # all 11 lengths x 100 seeds

Reports total seconds, milliseconds per batched environment step, and milliseconds per environment
step per episode (total / (steps x episodes)), the figure the paper's code needs ~12 ms for.
An untrained policy rarely reaches the junction, so episodes run to the timeout; the script reports the
steps actually run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.machine import describe, sync
from benchmarks.presets import PRESETS
from RATE_model.config import PRECISIONS
from RATE_model.model import RATE
from RATE_model.precision import autocast, resolve_precision
from RATE_model.rollout import rollout
from RATE_model.trainer import resolve_device
from TMaze_new.TMaze_new_src.tmaze_env import TMazeVecEnv
from TMaze_new.TMaze_new_src.tmaze_eval import PROTOCOL_LENGTHS, eval_seeds


def time_rollout(model: RATE, T: int, episodes: int, device: torch.device, precision: str) -> dict:
    goals, seeds = eval_seeds(episodes)
    env = TMazeVecEnv(T, goals, seeds)
    sync(device)
    t = time.perf_counter()
    with autocast(device, precision):
        res = rollout(model, env, 1.0, max_steps=T)
    sync(device)
    sec = time.perf_counter() - t
    steps = int(res.lengths.max())
    return {"T": T, "episodes": episodes, "steps": steps, "seconds": round(sec, 3),
            "ms_per_batched_step": round(1000 * sec / steps, 3),
            "ms_per_step_per_episode": round(1000 * sec / (steps * episodes), 4),
            "success": float(np.mean(res.infos["success"]))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("tmaze")), required=True)
    p.add_argument("--T", type=int, default=900)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--protocol", action="store_true", help="every protocol length (9 ... 9600) x --episodes")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: as the train scripts")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="alias of --precision bf16")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = RATE(PRESETS[args.preset].model).to(device).eval()
    time_rollout(model, 30, args.episodes, device, precision)  # warm-up
    lengths = PROTOCOL_LENGTHS if args.protocol else (args.T,)
    runs = [time_rollout(model, T, args.episodes, device, precision) for T in lengths]
    res = {"preset": args.preset, "device": describe(device), "precision": precision,
           "precision_requested": args.precision, "bf16": precision == "bf16", "date": time.strftime("%Y-%m-%d"),
           "total_seconds": round(sum(r["seconds"] for r in runs), 2), "runs": runs}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.preset} on {res['device']}, {precision}")
        for r in runs:
            print(f"T={r['T']:5} episodes={r['episodes']} steps={r['steps']:5}  {r['seconds']:8.2f} s  "
                  f"{r['ms_per_batched_step']:7.2f} ms/step  {r['ms_per_step_per_episode']:.4f} ms/step/episode")
        print(f"total {res['total_seconds']} s")
    return res


if __name__ == "__main__":
    main()
