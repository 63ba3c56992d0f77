"""Env speed measurements shared by the per-environment benchmark scripts: steps per second of one env in
this process, and of N episodes stepped together in the worker processes of ``GymVectorEnv``."""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from RATE_model.vector import GymVectorEnv


def bench_env(make_env: Callable[[], gym.Env], n_actions: int, steps: int) -> dict:
    """Random actions in one env for ``steps`` steps (episodes reset with consecutive seeds)."""
    env, rng = make_env(), np.random.default_rng(0)
    env.reset(seed=0)
    t, n, episodes = time.perf_counter(), 0, 1
    while n < steps:
        _, _, term, trunc, _ = env.step(int(rng.integers(n_actions)))
        n += 1
        if term or trunc:
            env.reset(seed=episodes)
            episodes += 1
    sec = time.perf_counter() - t
    env.close()
    return {"bench": "env", "steps": n, "episodes": episodes, "seconds": round(sec, 2),
            "steps_per_s_per_process": round(n / sec, 1)}


def bench_vector(env_fn: Callable[[], gym.Env], n_actions: int, workers: int, steps: int,
                 context: str = "fork") -> dict:
    """``workers`` episodes stepped together for ``steps`` batched steps (none may end before)."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with GymVectorEnv(env_fn, range(workers), context=context) as env:
        env.reset()
        start_s = time.perf_counter() - t0
        t = time.perf_counter()
        for _ in range(steps):
            env.step(rng.integers(n_actions, size=workers))
        sec = time.perf_counter() - t
    return {"bench": "vector", "workers": workers, "batched_steps": steps, "start_seconds": round(start_s, 2),
            "seconds": round(sec, 2), "env_steps_per_s": round(workers * steps / sec, 1),
            "ms_per_batched_step": round(1000 * sec / steps, 2)}
