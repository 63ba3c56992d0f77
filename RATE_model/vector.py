"""The rollout engine's ``VectorEnv`` over a maintained vector env: ``gymnasium.vector.AsyncVectorEnv``.

Each episode of a batch runs in its own worker process, seeded with its own seed; episodes are not
reset when they end (the rollout engine ignores a finished episode's later steps). Use it as a
context manager, or call ``close()``, so the workers exit; :func:`RATE_model.rollout.play_runs` plays an
evaluation protocol's seeds in batches of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode


class GymVectorEnv:
    """``num_envs = len(seeds)`` episodes of ``env_fn()`` stepped together in worker processes.

    Observations come back as float32 times ``obs_scale`` (1/255: pixels in [0, 1]); the step's info is
    reduced to ``info_keys``, one float array each.
    """

    def __init__(self, env_fn: Callable[[], gym.Env], seeds: Sequence[int], info_keys: Sequence[str] = (),
                 obs_scale: float = 1 / 255, context: str = "fork"):
        self.seeds = [int(s) for s in seeds]
        self.num_envs = len(self.seeds)
        self.info_keys, self.obs_scale = tuple(info_keys), obs_scale
        # fork: the workers only run the simulator (never torch), and start in milliseconds
        self.env = AsyncVectorEnv([env_fn] * self.num_envs, context=context, autoreset_mode=AutoresetMode.DISABLED)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return obs.astype(np.float32) * np.float32(self.obs_scale)

    def _info(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(info[k], np.float32) for k in self.info_keys}

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seeds)
        return self._obs(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
        return self._obs(obs), reward.astype(np.float64), terminated | truncated, self._info(info)

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> GymVectorEnv:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

