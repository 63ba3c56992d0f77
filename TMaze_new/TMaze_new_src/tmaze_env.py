"""Passive T-Maze with a flag (SPEC §4), vectorised over episodes in NumPy.

Cells (x, 0) for x = 0..L form the corridor, (L, +1) and (L, -1) are the goals, L = T - 2.
Actions: 0 right, 1 up, 2 left, 3 down; a move into a wall is a no-op, up/down only work on the
junction (L, 0). Observation [y, hint, flag, noise]: hint = goal side g at t = 0 only, flag = 1 while
standing on the junction, noise uniform in {-1, 0, 1}. Reward 1 on entering the goal g, 0 otherwise;
entering either goal ends the episode, as does the timeout T.
"""

from __future__ import annotations

import numpy as np

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3


class TMazeVecEnv:
    """E T-Maze episodes of timeout T stepped together; goal side and noise fixed per episode seed."""

    def __init__(self, T: int, goals: np.ndarray, seeds: np.ndarray):
        if T < 3:
            raise ValueError(f"T-Maze needs a timeout T >= 3 (corridor L = T - 2), got {T}")
        goals = np.asarray(goals)
        if not np.isin(goals, (-1, 1)).all():
            raise ValueError("goal sides must be +1 (up) or -1 (down)")
        self.T, self.L, self.num_envs = T, T - 2, len(goals)
        self.goals = goals.astype(np.int64)
        # One noise stream per episode seed, so an episode's observations do not depend on the batch.
        self.noise = np.stack([np.random.default_rng(int(s)).integers(-1, 2, T + 1) for s in seeds])

    def reset(self) -> np.ndarray:
        E = self.num_envs
        self.x = np.zeros(E, np.int64)
        self.y = np.zeros(E, np.int64)
        self.t = 0
        self.done = np.zeros(E, bool)
        return self._obs()

    def _obs(self) -> np.ndarray:
        hint = self.goals if self.t == 0 else np.zeros_like(self.goals)
        flag = (self.x == self.L) & (self.y == 0)
        noise = self.noise[:, min(self.t, self.T)]
        return np.stack([self.y, hint, flag, noise], axis=1).astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        a = np.asarray(actions)
        live = ~self.done
        corridor = self.y == 0
        junction = corridor & (self.x == self.L)
        self.x = np.where(live & corridor & (a == RIGHT), np.minimum(self.x + 1, self.L), self.x)
        self.x = np.where(live & corridor & (a == LEFT), np.maximum(self.x - 1, 0), self.x)
        self.y = np.where(live & junction & (a == UP), 1, self.y)
        self.y = np.where(live & junction & (a == DOWN), -1, self.y)
        entered = live & (self.y != 0)
        success = entered & (self.y == self.goals)
        reward = success.astype(np.float32)
        self.t += 1
        self.done = self.done | entered | (self.t >= self.T)
        return self._obs(), reward, self.done.copy(), {"success": success.astype(np.float32)}

    def oracle_actions(self) -> np.ndarray:
        """The privileged expert: right to the junction, then towards the goal."""
        turn = np.where(self.goals > 0, UP, DOWN)
        return np.where(self.x < self.L, RIGHT, turn)
