"""Memory Maze 9×9 (SPEC §4): a gymnasium env over the ``memory-maze`` package's dm_control task,
batched through ``RATE_model.vector.GymVectorEnv`` (one worker process per episode).

Observation: the agent's 64×64 RGB camera (the current target's colour drawn as a border, as in
``MemoryMaze-9x9-v0``) as uint8 [3, 64, 64]. Actions: 0 noop, 1 forward, 2 left, 3 right,
4 forward+left, 5 forward+right (the package's discrete set, 4 per second). Reward +1 per reached
target; the episode ends after ``max_steps`` steps (the task's own limit: 1 000).

``reset(seed=s)`` builds the maze of seed ``s`` (layout, targets and start follow the seed), so an
evaluation seed list fixes the episodes. With ``privileged=True`` (the ``ExtraObs`` variant, for the
oracle only) ``info["state"]`` carries the agent's grid position and heading, the current target's
position and the maze layout; the camera image is the same as without it.

The agent's env (``privileged=False``) is registered for gymnasium as ``GYM_ID``: Minari datasets record it, so
it can be recovered from them.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; MUJOCO_GL=osmesa needs the OSMesa library

import contextlib  # noqa: E402
import io  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

with contextlib.redirect_stderr(io.StringIO()):  # memory-maze imports gym 0.26 (only to register ids we do
    from memory_maze import tasks  # noqa: E402    # not use), which prints a deprecation notice on import
    from memory_maze.oracle import breadth_first_search  # noqa: E402, F401  (for the oracle)

absl_logging.set_verbosity(absl_logging.ERROR)  # dm_control warns on every reset ("no free joint")

OBS_SHAPE = (3, 64, 64)
N_ACTIONS = 6
NOOP, FORWARD, LEFT, RIGHT, FORWARD_LEFT, FORWARD_RIGHT = range(N_ACTIONS)
BORDER = 2  # pixels of the target-colour border drawn around the 64×64 image
MAX_STEPS = 1000  # the 9×9 task's limit: 250 s at 4 steps per second
STATE_KEYS = ("agent_pos", "agent_dir", "target_pos", "targets_pos", "maze_layout")
# Worker processes start from a fork server, not by forking the caller: a process that has rendered holds
# an EGL context, and a child forked from it deadlocks in its first render (measured: 100 % of tries).
START_METHOD = "forkserver"


class MemoryMazeEnv(gym.Env):
    """One Memory Maze 9×9 episode at a time; ``info["targets"]`` counts the targets reached so far and
    ``info["targets_first_half"]`` those reached in the first ``max_steps // 2`` steps (where a policy
    that remembers the maze has not yet seen all of it)."""

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = MAX_STEPS, privileged: bool = False):
        if not 1 <= max_steps <= MAX_STEPS:
            raise ValueError(f"max_steps must be in 1..{MAX_STEPS}, got {max_steps}")
        self.max_steps, self.privileged = max_steps, privileged
        self.observation_space = gym.spaces.Box(0, 255, OBS_SHAPE, np.uint8)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._env: Any = None
        self._ts: Any = None
        self.t, self.targets, self.first_half = 0, 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self._env is None:  # the maze is drawn when the task is built
            if self._env is not None:
                self._env.close()
            task_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
            self._env = tasks.memory_maze_9x9(seed=task_seed, global_observables=self.privileged)
        self._ts = self._env.reset()
        self.t, self.targets, self.first_half = 0, 0, 0
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not 0 <= int(action) < N_ACTIONS:
            raise ValueError(f"Memory Maze actions are 0..{N_ACTIONS - 1}, got {action}")
        if self._ts is None:
            raise RuntimeError("call reset() before step()")
        if self.t >= self.max_steps:  # stepped again after the end (vector envs without autoreset)
            return self._observe(), 0.0, False, True, self._info()
        self._ts = self._env.step(int(action))
        self.t += 1
        reward = float(self._ts.reward)
        self.targets += reward > 0
        if self.t <= self.max_steps // 2:
            self.first_half = self.targets
        truncated = self.t >= self.max_steps or self._ts.last()
        return self._observe(), reward, False, truncated, self._info()

    def _observe(self) -> np.ndarray:
        return np.ascontiguousarray(self._ts.observation["image"].transpose(2, 0, 1))

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"targets": float(self.targets), "targets_first_half": float(self.first_half)}
        if self.privileged:
            info["state"] = {k: np.array(self._ts.observation[k]) for k in STATE_KEYS}
        return info

    def target_pixels(self) -> np.ndarray:
        """int [n_targets]: pixels of each target sphere in the camera image inside the colour border, from
        the renderer's segmentation (ground truth for what the camera shows; for tests and diagnosis)."""
        if self._ts is None:
            raise RuntimeError("call reset() before target_pixels()")
        inner = self._env
        while hasattr(inner, "env"):  # the package's wrappers down to the composer environment
            inner = inner.env
        physics = inner.physics
        seg = physics.render(OBS_SHAPE[1], OBS_SHAPE[2], camera_id="walker/egocentric", segmentation=True)[..., 0]
        seg = seg[BORDER:-BORDER, BORDER:-BORDER]
        return np.array([(seg == physics.bind(t.geom).element_id).sum() for t in inner.task._targets])

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


GYM_ID = "rate/MemoryMaze9x9-v0"  # the agent's env (not privileged): Minari datasets record it


gym.register(GYM_ID, entry_point=f"{__name__}:MemoryMazeEnv")  # a string: the spec serialises to JSON
