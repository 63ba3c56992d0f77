"""Minigrid-Memory (SPEC §4) on ``minigrid.envs.MemoryEnv``: one wrapper and a batched env.

The agent starts somewhere in the hallway facing east, a cue object (key or ball) lies in the small
start room on the west, and the hallway ends in a T-junction with a key and a ball. Stepping next to
the object that matches the cue ends the episode with reward 1 − 0.9·t/T (t steps taken, T the
timeout); stepping next to the other one ends it with 0. Observation: the agent's 3×3 partial view
rendered as RGB and resized to 3×84×84, float in [0, 1] (uint8 for datasets). Actions: 0 left,
1 right, 2 forward (minigrid's own ids, so they pass straight through).

:class:`MinigridMemoryGym` is :class:`MinigridMemory` as a gymnasium env, registered as ``GYM_ID`` (Minari
datasets record it, so the env can be recovered from them).
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from minigrid.envs import MemoryEnv

N_ACTIONS = 3
LEFT, RIGHT, FORWARD = 0, 1, 2
OBS_SIZE = 84
VIEW = 3  # agent_view_size
RENDER_TILE = 28  # pixels per grid cell when rendering the view (3 · 28 = 84)


def check_size(size: int) -> int:
    """Grid sizes MemoryEnv can build: odd and >= 7."""
    if size < 7 or size % 2 == 0:
        raise ValueError(f"grid size must be an odd number >= 7, got {size}")
    return size


def default_timeout(size: int) -> int:
    """minigrid's own episode limit for MemoryEnv: 5·size²."""
    return 5 * size * size


class MinigridMemory:
    """One Memory episode: ``reset(seed) -> obs``, ``step(a) -> (obs, reward, done, success)``.

    ``obs`` is uint8 [3, 84, 84]; divide by 255 for the model. ``timeout`` is T in the reward rule
    and the step limit (default 5·size², minigrid's value).
    """

    def __init__(self, size: int = 31, timeout: int | None = None, render_tile: int = RENDER_TILE):
        self.size = check_size(size)
        self.timeout = default_timeout(size) if timeout is None else int(timeout)
        if self.timeout < 1:
            raise ValueError(f"timeout must be >= 1, got {timeout}")
        self.render_tile = render_tile
        self.env = MemoryEnv(size=size, agent_view_size=VIEW, max_steps=self.timeout)
        self.t = 0

    def reset(self, seed: int) -> np.ndarray:
        self.env.reset(seed=int(seed))
        self.t = 0
        return self.render()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        if action not in (LEFT, RIGHT, FORWARD):
            raise ValueError(f"Minigrid-Memory actions are 0 left, 1 right, 2 forward; got {action}")
        _, reward, terminated, truncated, _ = self.env.step(int(action))
        self.t += 1
        success = bool(terminated and tuple(self.env.agent_pos) == tuple(self.env.success_pos))
        return self.render(), float(reward), bool(terminated or truncated), success

    def render(self) -> np.ndarray:
        """The agent's partial view as uint8 [3, 84, 84] (agent at the bottom centre, facing up)."""
        img = self.env.get_pov_render(tile_size=self.render_tile)
        if img.shape[:2] != (OBS_SIZE, OBS_SIZE):
            img = cv2.resize(img, (OBS_SIZE, OBS_SIZE), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img.transpose(2, 0, 1))


class MinigridMemoryVecEnv:
    """E Memory episodes on one grid size stepped together (the rollout engine's ``VectorEnv``).

    Episode i is seeded with ``seeds[i]``; a finished episode is frozen (its last observation is
    repeated, reward 0) instead of auto-reset. Observations are float32 [E, 3, 84, 84] in [0, 1].
    """

    def __init__(self, size: int, seeds: list[int] | np.ndarray, timeout: int | None = None):
        self.seeds = [int(s) for s in seeds]
        self.num_envs = len(self.seeds)
        self.envs = [MinigridMemory(size, timeout) for _ in self.seeds]
        self.size, self.timeout = size, self.envs[0].timeout

    def reset(self) -> np.ndarray:
        self.done = np.zeros(self.num_envs, bool)
        self.obs = np.stack([e.reset(s) for e, s in zip(self.envs, self.seeds, strict=True)])
        return self.obs.astype(np.float32) / 255.0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """info: ``success`` (touched the matching object) and ``touched`` (touched either object; an
        episode that ends without touching one ran out of time)."""
        E = self.num_envs
        reward, success, touched = np.zeros(E, np.float32), np.zeros(E, np.float32), np.zeros(E, np.float32)
        for i in np.flatnonzero(~self.done):
            self.obs[i], reward[i], done, success[i] = self.envs[i].step(int(actions[i]))
            g = self.envs[i].env
            touched[i] = tuple(g.agent_pos) in (g.success_pos, g.failure_pos)
            self.done[i] = done
        return self.obs.astype(np.float32) / 255.0, reward, self.done.copy(), {"success": success, "touched": touched}


GYM_ID = "rate/MinigridMemory-v0"  # the env's gymnasium id: Minari datasets record it, so it can be recovered


class MinigridMemoryGym(gym.Env):
    """:class:`MinigridMemory` as a gymnasium env (what ``gym.make(GYM_ID, size=..., timeout=...)`` builds):
    observations uint8 [3, 84, 84], actions 0 left, 1 right, 2 forward. Touching either junction object
    terminates the episode; running out of time truncates it. ``info["success"]``: the matching one."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 31, timeout: int | None = None):
        self.game = MinigridMemory(size, timeout)
        self.observation_space = gym.spaces.Box(0, 255, (3, OBS_SIZE, OBS_SIZE), np.uint8)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.game.reset(int(self.np_random.integers(2**31)) if seed is None else seed), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, done, success = self.game.step(int(action))
        g = self.game.env
        terminated = tuple(g.agent_pos) in (tuple(g.success_pos), tuple(g.failure_pos))
        return obs, reward, terminated, done and not terminated, {"success": success}


gym.register(GYM_ID, entry_point=f"{__name__}:MinigridMemoryGym")  # a string: the spec serialises to JSON
