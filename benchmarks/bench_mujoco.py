"""MuJoCo speed: evaluation through the rollout engine (10 episodes stepped together, one return-to-go
mode and target), and sampling training batches from a dataset's episode store.

    python -m benchmarks.bench_mujoco eval --episodes 10 --T 1000 --preset mujoco-cpu
    python -m benchmarks.bench_mujoco sample --store MuJoCo/MuJoCo_data/stores/hopper-medium --batch_size 128

``eval`` uses an untrained model of the preset on HalfCheetah, whose episodes never end early, so every
episode runs T steps (an untrained Hopper or Walker2d falls within a few steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from benchmarks.presets import PRESETS
from MuJoCo.MuJoCo_src.mujoco_data import mujoco_dataset
from MuJoCo.MuJoCo_src.mujoco_env import DIMS, TARGET_RETURNS
from MuJoCo.MuJoCo_src.mujoco_eval import evaluate
from RATE_model.model import RATE
from RATE_model.store import EpisodeStore


def bench_eval(preset: str, episodes: int, T: int, env: str = "halfcheetah") -> dict:
    torch.manual_seed(0)
    state_dim, act_dim = DIMS[env]
    model = RATE(dataclasses.replace(PRESETS[preset].model, env_kwargs={"state_dim": state_dim, "act_dim": act_dim}))
    t = time.perf_counter()
    m = evaluate(model, env, episodes, T, targets=TARGET_RETURNS[env][:1], modes=("decreasing",), progress=False)
    sec = time.perf_counter() - t
    return {"bench": "eval", "env": env, "preset": preset, "episodes": episodes, "T": T, "seconds": round(sec, 1),
            "ms_per_batched_step": round(1000 * sec / T, 2), "env_steps_per_s": round(episodes * T / sec, 1),
            "return": m[f"return_decreasing_t{TARGET_RETURNS[env][0]:g}"]}


def bench_sample(store_path: Path, batch_size: int, batches: int, window: int = 60) -> dict:
    data = mujoco_dataset(EpisodeStore.open(store_path), window, batch_size * batches)
    keys = data.epoch_windows(0, 0)
    t = time.perf_counter()
    for i in range(batches):
        data[keys[i * batch_size:(i + 1) * batch_size]]
    sec = time.perf_counter() - t
    return {"bench": "sample", "store": str(store_path), "steps": data.store.n_steps, "batch_size": batch_size,
            "window": window, "batches_per_s": round(batches / sec, 1),
            "windows_per_s": round(batches * batch_size / sec, 1), "padded_fraction": round(float(
                np.mean([(~data[keys[:batch_size]]["valid"]).float().mean().item()])), 4)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["eval", "sample"])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("mujoco")), default="mujoco-cpu")
    p.add_argument("--store", type=Path, help="sample: an episode store folder (built by a train run)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.what == "eval":
        out = bench_eval(args.preset, args.episodes, args.T)
    else:
        if args.store is None:
            p.error("sample needs --store")
        out = bench_sample(args.store, args.batch_size, args.batches)
    out.update(device=describe(torch.device("cpu")), threads=torch.get_num_threads(),
               date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out) if args.json else "\n".join(f"{k:<24} {v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
