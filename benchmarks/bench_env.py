"""Env speed: one env in one process, N episodes in worker processes, an untrained model's evaluation.

Steps per second of one env (random actions, one process) and of N episodes stepped together in the worker
processes of ``GymVectorEnv``, and the wall time of an evaluation of an untrained preset model through the
env's own evaluate (the rollout engine); for MuJoCo also sampling batches from an episode store.

    python -m benchmarks.bench_env --env vizdoom env --steps 5000              # one process, random actions
    python -m benchmarks.bench_env --env atari vector --game Pong --workers 10   # 10 workers stepped together
    python -m benchmarks.bench_env --env memory_maze eval --episodes 10 --T 1000 --preset memmaze-cpu
    python -m benchmarks.bench_env --env mujoco sample --store MuJoCo/MuJoCo_data/stores/hopper-medium

Envs (``ENVS``): atari (``--game``; the DQN-preprocessed evaluation env), memory_maze (9×9), vizdoom
(Two-Colors), mujoco (HalfCheetah); ``--env NAME --help``: its flags and defaults. ``eval`` counts the env
steps it ran (sampled actions: an episode may end before T), and ms per batched step where batches run in step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from benchmarks.machine import describe
from benchmarks.presets import PRESETS
from RATE_model.model import RATE
from RATE_model.vector import GymVectorEnv


@dataclass
class Sim:
    """One env's pieces for the parsed flags (built by its loader, which imports its simulator)."""
    make: Callable[[], gym.Env]  # env: the env stepped in this process
    evaluate: Callable[[RATE], tuple[dict, float, int | None]]  # eval: (its keys, env steps, batched steps)
    vector: Callable[[], gym.Env] | None = None  # vector: each worker's env (default: make)
    context: str = "fork"  # how the worker processes start
    env_kwargs: dict | None = None  # the preset model's env_kwargs (default: the preset's own)
    tags: dict = field(default_factory=dict)  # keys added to the env, vector and eval results


def atari(a: argparse.Namespace) -> Sim:
    from Atari.Atari_src.atari_env import N_ACTIONS, make_env
    from Atari.Atari_src.atari_eval import evaluate

    def run(model):  # sampled actions: episodes end when the game does, so steps are counted
        m = evaluate(model, a.game, a.episodes, a.T, progress=False)
        steps = [e["steps"] for e in m["episodes"]]
        return {"return": m["return"]}, sum(steps), max(steps)

    return Sim(partial(make_env, a.game), run, env_kwargs={"n_actions": N_ACTIONS[a.game]}, tags={"game": a.game})


def memory_maze(a: argparse.Namespace) -> Sim:
    from MemoryMaze.MemoryMaze_src.mem_maze_eval import evaluate
    from MemoryMaze.MemoryMaze_src.memory_maze_env import START_METHOD, MemoryMazeEnv

    def run(model):  # Memory Maze episodes never end early: E x T steps
        m = evaluate(model, a.episodes, a.T, a.batch_size, progress=False)
        return {"batch_size": a.batch_size, "return": m["return"]}, a.episodes * a.T, None

    return Sim(MemoryMazeEnv, run, partial(MemoryMazeEnv, max_steps=1000), context=START_METHOD)


def vizdoom(a: argparse.Namespace) -> Sim:
    from VizDoom.VizDoom_src.scenario import ScenarioConfig
    from VizDoom.VizDoom_src.vizdoom_env import TwoColorsEnv
    from VizDoom.VizDoom_src.vizdoom_eval import evaluate

    # vector and eval: a floor that does not hurt, so no episode dies early and every step is simulated,
    # rendered and decoded (the worst case: a real evaluation stops stepping an episode once the player is dead)
    no_damage = ScenarioConfig(floor_special=0)

    def run(model):
        m = evaluate(model, a.episodes, a.T, a.batch_size, progress=False, scenario=no_damage)
        return {"batch_size": a.batch_size, "mean_length": m["length"]}, round(m["length"] * m["episodes_n"]), None

    return Sim(partial(TwoColorsEnv, timeout=2100), run, partial(TwoColorsEnv, timeout=10_000, scenario=no_damage))


def mujoco(a: argparse.Namespace) -> Sim:
    from MuJoCo.MuJoCo_src.mujoco_env import DIMS, TARGET_RETURNS, make_env
    from MuJoCo.MuJoCo_src.mujoco_eval import evaluate

    # HalfCheetah's episodes never end early, so every one runs T steps (an untrained Hopper falls at once);
    # eval: one return-to-go mode and target, all episodes stepped together
    env, target = "halfcheetah", TARGET_RETURNS["halfcheetah"][0]

    def run(model):
        m = evaluate(model, env, a.episodes, a.T, targets=(target,), modes=("decreasing",), progress=False)
        return {"return": m[f"return_decreasing_t{target:g}"]}, a.episodes * a.T, a.T

    state_dim, act_dim = DIMS[env]
    return Sim(partial(make_env, env), run, env_kwargs={"state_dim": state_dim, "act_dim": act_dim},
               tags={"env": env})


def mujoco_sample(a: argparse.Namespace, window: int = 60) -> dict:
    """Decision Transformer's training batches (B x 60 steps) drawn from a MuJoCo dataset's episode store."""
    from MuJoCo.MuJoCo_src.mujoco_data import mujoco_dataset
    from RATE_model.store import EpisodeStore

    data = mujoco_dataset(EpisodeStore.open(a.store), window, a.batch_size * a.batches)
    keys = data.epoch_windows(0, 0)
    t = time.perf_counter()
    for i in range(a.batches):
        data[keys[i * a.batch_size:(i + 1) * a.batch_size]]
    sec = time.perf_counter() - t
    return {"bench": "sample", "store": str(a.store), "steps": data.store.n_steps, "batch_size": a.batch_size,
            "window": window, "batches_per_s": round(a.batches / sec, 1),
            "windows_per_s": round(a.batches * a.batch_size / sec, 1),
            "padded_fraction": round((~data[keys[:a.batch_size]]["valid"]).float().mean().item(), 4)}


def _game(p: argparse.ArgumentParser) -> None:
    from Atari.Atari_src.atari_env import GAMES

    p.add_argument("--game", choices=GAMES, default="Pong")


def _sample_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, help="sample: an episode store folder (built by a train run)")
    p.add_argument("--batch_size", type=int, default=128, help="sample: windows per batch (default 128)")
    p.add_argument("--batches", type=int, default=50, help="sample (default 50)")


@dataclass(frozen=True)
class Env:
    """An env's loader, its defaults of the common flags, its own flags and subcommands."""
    load: Callable[[argparse.Namespace], Sim]
    preset: str  # the --preset default; the choices are the presets of its prefix
    steps: tuple[int, int]  # --steps defaults: env (steps), vector (batched steps)
    workers: int
    episodes: int
    T: int
    flags: Callable[[argparse.ArgumentParser], object] = lambda p: None
    commands: dict[str, Callable[[argparse.Namespace], dict]] = field(default_factory=dict)


EVAL_BATCH = "eval: episodes (worker processes) stepped together (default %(default)s: the evaluation's)"
ENVS = {
    "atari": Env(atari, "atari-cpu", (5000, 500), workers=10, episodes=10, T=2000, flags=_game),
    "memory_maze": Env(memory_maze, "memmaze-cpu", (1000, 100), workers=2, episodes=10, T=1000,
                       flags=lambda p: p.add_argument("--batch_size", type=int, help=EVAL_BATCH)),
    "vizdoom": Env(vizdoom, "vizdoom-cpu", (5000, 200), workers=50, episodes=100, T=2100,
                   flags=lambda p: p.add_argument("--batch_size", type=int, default=50, help=EVAL_BATCH)),
    "mujoco": Env(mujoco, "mujoco-cpu", (5000, 500), workers=10, episodes=10, T=1000, flags=_sample_flags,
                  commands={"sample": mujoco_sample}),
}


def random_actions(space: gym.Space, rng: np.random.Generator, n: int | None = None) -> np.ndarray | int:
    """Uniformly random actions of a ``Discrete`` or ``Box`` space: one, or ``n``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n)) if n is None else rng.integers(space.n, size=n)
    return rng.uniform(space.low, space.high, space.shape if n is None else (n, *space.shape)).astype(space.dtype)


def bench_env(make: Callable[[], gym.Env], steps: int) -> dict:
    """Random actions in one env for ``steps`` steps (episodes reset with consecutive seeds)."""
    env, rng = make(), np.random.default_rng(0)
    env.reset(seed=0)
    t, n, episodes = time.perf_counter(), 0, 1
    while n < steps:
        _, _, term, trunc, _ = env.step(random_actions(env.action_space, rng))
        n += 1
        if term or trunc:
            env.reset(seed=episodes)
            episodes += 1
    sec = time.perf_counter() - t
    env.close()
    return {"bench": "env", "steps": n, "episodes": episodes, "seconds": round(sec, 2),
            "steps_per_s_per_process": round(n / sec, 1)}


def bench_vector(env_fn: Callable[[], gym.Env], workers: int, steps: int, context: str = "fork") -> dict:
    """``workers`` episodes stepped together for ``steps`` batched steps (none may end before)."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with GymVectorEnv(env_fn, range(workers), context=context) as env:
        env.reset()
        start_s = time.perf_counter() - t0
        space = env.env.single_action_space
        t = time.perf_counter()
        for _ in range(steps):
            env.step(random_actions(space, rng, workers))
        sec = time.perf_counter() - t
    return {"bench": "vector", "workers": workers, "batched_steps": steps, "start_seconds": round(start_s, 2),
            "seconds": round(sec, 2), "env_steps_per_s": round(workers * steps / sec, 1),
            "ms_per_batched_step": round(1000 * sec / steps, 2)}


def bench_eval(sim: Sim, preset: str, episodes: int, T: int) -> dict:
    """E episodes of at most T steps of an untrained model of ``preset``, through the env's evaluate."""
    torch.manual_seed(0)
    cfg = PRESETS[preset].model
    model = RATE(cfg if sim.env_kwargs is None else dataclasses.replace(cfg, env_kwargs=sim.env_kwargs))
    t = time.perf_counter()
    keys, steps, batched = sim.evaluate(model)
    sec = time.perf_counter() - t
    out = {"bench": "eval", "preset": preset, "episodes": episodes, "T": T, **keys, "env_steps": steps,
           "seconds": round(sec, 1), "env_steps_per_s": round(steps / sec, 1),
           "ms_per_env_step": round(1000 * sec / steps, 3)}
    return out if batched is None else {**out, "ms_per_batched_step": round(1000 * sec / batched, 2)}


def main(argv: list[str] | None = None) -> dict:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env")
    spec = ENVS.get(pre.parse_known_args(argv)[0].env)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", choices=ENVS, required=True, help="with --help: that env's flags and defaults")
    p.add_argument("what", choices=["env", "vector", "eval", *(spec.commands if spec else ())])
    if spec:  # without a known --env, parse_args stops there (or prints the common --help)
        p.add_argument("--steps", type=int, help=f"env: steps (default {spec.steps[0]}); vector: batched steps "
                                                 f"(default {spec.steps[1]})")
        p.add_argument("--workers", type=int, default=spec.workers, help="vector: processes (default %(default)s)")
        p.add_argument("--episodes", type=int, default=spec.episodes, help="eval (default %(default)s)")
        p.add_argument("--T", type=int, default=spec.T, help="eval: steps per episode at most (default %(default)s)")
        prefix = spec.preset.split("-")[0] + "-"
        p.add_argument("--preset", choices=sorted(k for k in PRESETS if k.startswith(prefix)), default=spec.preset)
        p.add_argument("--json", action="store_true")
        spec.flags(p)
    a = p.parse_args(argv)
    spec = ENVS[a.env]
    if a.what in spec.commands:
        if a.what == "sample" and a.store is None:
            p.error("sample needs --store")
        out = spec.commands[a.what](a)
    else:
        sim = spec.load(a)
        if a.what == "env":
            out = bench_env(sim.make, a.steps or spec.steps[0])
        elif a.what == "vector":
            out = bench_vector(sim.vector or sim.make, a.workers, a.steps or spec.steps[1], sim.context)
        else:
            out = bench_eval(sim, a.preset, a.episodes, a.T)
        out.update(sim.tags)
    out.update(device=describe(torch.device("cpu")), threads=torch.get_num_threads(),
               date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out) if a.json else "\n".join(f"{k:<28} {v}" for k, v in out.items()))
    return out


if __name__ == "__main__":
    main()
