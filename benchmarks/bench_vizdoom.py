"""ViZDoom-Two-Colors speed: env steps per second (one process, and all workers of an AsyncVectorEnv), and
the wall time of an evaluation of E episodes x T steps through the rollout engine.

    python -m benchmarks.bench_vizdoom env                       # one process, random actions
    python -m benchmarks.bench_vizdoom vector --workers 50       # 50 worker processes stepped together
    python -m benchmarks.bench_vizdoom eval --episodes 100 --T 2100 --preset vizdoom-cpu

The vector and eval runs use a floor that does not hurt (``ScenarioConfig(floor_special=0)``) so that
no episode dies early: every one of the E x T steps is simulated, rendered and decoded (the worst case;
a real evaluation stops stepping an episode once the player is dead).
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
from RATE_model.model import RATE
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_env import N_ACTIONS, TwoColorsEnv
from VizDoom.VizDoom_src.vizdoom_eval import evaluate

NO_DAMAGE = ScenarioConfig(floor_special=0)


def bench_eval(preset: str, episodes: int, T: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = RATE(PRESETS[preset].model)
    t = time.perf_counter()
    m = evaluate(model, episodes, T, batch_size, progress=False, scenario=NO_DAMAGE)
    sec = time.perf_counter() - t
    steps = m["length"] * m["episodes_n"]
    return {"bench": "eval", "preset": preset, "episodes": episodes, "T": T, "batch_size": batch_size,
            "mean_length": m["length"], "seconds": round(sec, 1),
            "ms_per_env_step": round(1000 * sec / steps, 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["env", "vector", "eval"])
    p.add_argument("--steps", type=int, help="env: steps (default 5000); vector: batched steps (default 200)")
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--T", type=int, default=2100)
    p.add_argument("--batch_size", type=int, default=50, help="eval: episodes (worker processes) stepped together")
    p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("vizdoom")), default="vizdoom-cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.what == "env":
        out = bench_env(partial(TwoColorsEnv, timeout=2100), N_ACTIONS, args.steps or 5000)
    elif args.what == "vector":
        out = bench_vector(partial(TwoColorsEnv, timeout=10_000, scenario=NO_DAMAGE), N_ACTIONS, args.workers,
                           args.steps or 200)
    else:
        out = bench_eval(args.preset, args.episodes, args.T, args.batch_size)
    out.update(device=describe(torch.device("cpu")), date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out) if args.json else "\n".join(f"{k:<28} {v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
