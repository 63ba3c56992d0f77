"""Atari speed: env steps per second (one process, and 10 episodes in the worker processes of an
AsyncVectorEnv), and evaluation through the rollout engine (10 episodes stepped together).

    python -m benchmarks.bench_atari env --game Pong --steps 5000          # DQN-preprocessed eval env
    python -m benchmarks.bench_atari vector --game Pong --workers 10
    python -m benchmarks.bench_atari eval --game Pong --episodes 10 --T 2000 --preset atari-cpu

``eval`` times E episodes of at most T agent steps with an untrained model of the preset (sampled actions:
episodes end when the game does, so steps are counted, not assumed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from functools import partial

import torch

from Atari.Atari_src.atari_env import GAMES, N_ACTIONS, make_env
from Atari.Atari_src.atari_eval import evaluate
from benchmarks.envbench import bench_env, bench_vector
from benchmarks.machine import describe
from benchmarks.presets import PRESETS
from RATE_model.model import RATE


def bench_eval(game: str, preset: str, episodes: int, T: int) -> dict:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS[preset].model, env_kwargs={"n_actions": N_ACTIONS[game]})
    model = RATE(cfg)
    t = time.perf_counter()
    m = evaluate(model, game, episodes, T, progress=False)
    sec = time.perf_counter() - t
    steps = sum(e["steps"] for e in m["episodes"])
    batched = max(e["steps"] for e in m["episodes"])
    return {"bench": "eval", "game": game, "preset": preset, "episodes": episodes, "T": T, "env_steps": steps,
            "return": m["return"], "seconds": round(sec, 1), "env_steps_per_s": round(steps / sec, 1),
            "ms_per_batched_step": round(1000 * sec / batched, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["env", "vector", "eval"])
    p.add_argument("--game", choices=GAMES, default="Pong")
    p.add_argument("--steps", type=int, help="env: steps (default 5000); vector: batched steps (default 500)")
    p.add_argument("--workers", type=int, default=10)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--T", type=int, default=2000)
    p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith("atari")), default="atari-cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.what == "env":
        out = bench_env(partial(make_env, args.game), N_ACTIONS[args.game], args.steps or 5000)
    elif args.what == "vector":
        out = bench_vector(partial(make_env, args.game), N_ACTIONS[args.game], args.workers, args.steps or 500)
    else:
        out = bench_eval(args.game, args.preset, args.episodes, args.T)
    out.update(game=args.game, device=describe(torch.device("cpu")), date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out) if args.json else "\n".join(f"{k:<28} {v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
