"""Time a T-Maze evaluation of E episodes of T steps with the real rollout engine (untrained weights).

    python -m benchmarks.bench_eval --preset tmaze-paper --T 900 --episodes 100 [--json]
    python -m benchmarks.bench_eval --preset tmaze-paper --protocol   # all 11 lengths x 100 seeds
    python -m benchmarks.bench_eval --checkpoint runs/demo/tmaze/RATE/seed_1/checkpoints/last.pt \
        --T 100000 --episodes 10

Reports total seconds, milliseconds per batched environment step, and milliseconds per environment
step per episode (total / (steps x episodes)), the figure the paper's code needs ~12 ms for.
An untrained policy rarely reaches the junction, so episodes run to the timeout; the script reports the
steps actually run. ``--checkpoint``: a trained T-Maze model instead of a preset's untrained one (its success
is reported too). Peak resident memory before and after the timed rollouts shows whether decoding memory
grows with the episode length.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe, peak_rss_gb, sync
from benchmarks.presets import PRESETS
from RATE_model.checkpoint import load_model
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
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("tmaze")))
    which.add_argument("--checkpoint", type=Path, help="a trained T-Maze checkpoint (e.g. make demo's last.pt)")
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
    if args.checkpoint is not None:
        model = load_model(args.checkpoint)[0].to(device).eval()
        if model.cfg.env != "tmaze":
            raise SystemExit(f"error: {args.checkpoint} is a {model.cfg.env} model; bench_eval plays T-Maze")
    else:
        model = RATE(PRESETS[args.preset].model).to(device).eval()
    time_rollout(model, 30, args.episodes, device, precision)  # warm-up
    rss_before = peak_rss_gb()
    lengths = PROTOCOL_LENGTHS if args.protocol else (args.T,)
    runs = [time_rollout(model, T, args.episodes, device, precision) for T in lengths]
    res = {"preset": args.preset or str(args.checkpoint), "device": describe(device), "precision": precision,
           "precision_requested": args.precision, "bf16": precision == "bf16", "date": time.strftime("%Y-%m-%d"),
           "total_seconds": round(sum(r["seconds"] for r in runs), 2), "runs": runs,
           "peak_rss_gb_before": round(rss_before, 3), "peak_rss_gb": round(peak_rss_gb(), 3)}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['preset']} on {res['device']}, {precision}")
        for r in runs:
            print(f"T={r['T']:5} episodes={r['episodes']} steps={r['steps']:5}  {r['seconds']:8.2f} s  "
                  f"{r['ms_per_batched_step']:7.2f} ms/step  {r['ms_per_step_per_episode']:.4f} ms/step/episode  "
                  f"success {r['success']:.2f}")
        print(f"total {res['total_seconds']} s; peak RSS {res['peak_rss_gb']} GB ({res['peak_rss_gb_before']} GB "
              "after the warm-up)")
    return res


if __name__ == "__main__":
    main()
