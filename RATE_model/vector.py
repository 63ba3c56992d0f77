"""The rollout engine's ``VectorEnv`` over a maintained vector env: ``gymnasium.vector.AsyncVectorEnv``.

Each episode of a batch runs in its own worker process, seeded with its own seed; episodes are not
reset when they end (the rollout engine ignores a finished episode's later steps). Use it as a
context manager, or call ``close()``, so the workers exit. :func:`returns_in_envs` plays several
evaluation runs (return-to-go targets and modes) on one list of seeds, in batches, across torchrun ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.model import RATE
from RATE_model.rollout import rollout


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


def returns_in_envs(model: RATE, make_env: Callable[[], gym.Env], seeds: Sequence[int],
                    runs: Mapping[str, tuple[float, bool]], max_steps: int, reward_scale: float,
                    batch_size: int | None = None, obs_scale: float = 1.0, context: str = "fork", desc: str = "eval",
                    progress: bool = True, memory_noise: str = "none") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every run of ``runs`` (name -> (initial return-to-go, restored at every segment start)) on the same env
    seeds, ``batch_size`` (default: all) episodes stepped together in worker processes of ``make_env``. Under
    torchrun each rank plays its share of ``seeds``; returns every seed and each run's returns in that order.
    ``memory_noise``: the memory ablation of :func:`RATE_model.rollout.rollout`."""
    seeds = distributed.shard(list(seeds))
    batch_size = batch_size or max(1, len(seeds))
    show = progress and distributed.is_main()
    returns: dict[str, list[np.ndarray]] = {name: [] for name in runs}
    for i in tqdm(range(0, len(seeds), batch_size), desc=f"{desc} batches", disable=not show, leave=False):
        with GymVectorEnv(make_env, seeds[i:i + batch_size], obs_scale=obs_scale, context=context) as venv:
            for name, (rtg, reset) in runs.items():  # every run resets the envs with the same seeds
                res = rollout(model, venv, rtg, max_steps=max_steps, reward_scale=reward_scale,
                              reset_rtg_each_segment=reset, progress=f"{desc} {name}" if show else False,
                              memory_noise=memory_noise)
                returns[name].append(res.returns)
    all_seeds = np.concatenate([np.asarray(p) for p in distributed.gather(seeds)])
    return all_seeds, {name: np.concatenate([np.concatenate(p) for p in distributed.gather(r)])
                       for name, r in returns.items()}
