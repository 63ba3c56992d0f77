"""Oracle path-planner for Memory Maze that reads the simulator state (no learning, no download).

Each step it finds the shortest grid path from the agent's cell to the current target's cell
(breadth-first search, the ``memory-maze`` package's own helper), aims at the centre of the next cell on
the path (at the target itself once in its cell) and turns or moves towards it: a pure turn when the
heading is far off, forward with a turn when it is a little off, forward otherwise. With probability
``epsilon`` it takes a uniformly random action instead, for diversity (and recoveries in the data).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from MemoryMaze.MemoryMaze_src.memory_maze_env import (
    FORWARD,
    FORWARD_LEFT,
    FORWARD_RIGHT,
    LEFT,
    N_ACTIONS,
    RIGHT,
    MemoryMazeEnv,
    breadth_first_search,
)

TURN_ONLY = 45.0  # degrees off: turn on the spot (the ball turns ~18° per step)
STEER = 12.0  # degrees off: forward while turning
ONE_HOT = np.eye(N_ACTIONS, dtype=np.float32)


def waypoint(state: dict[str, np.ndarray]) -> np.ndarray:
    """The point the oracle heads for: the centre of the next cell on the shortest path to the target."""
    pos, target = state["agent_pos"], state["target_pos"]
    cell, goal = tuple(int(v) for v in pos), tuple(int(v) for v in target)
    path = breadth_first_search(state["maze_layout"], cell, goal)
    if not path or len(path) < 2:
        return np.asarray(target, float)
    return np.asarray(path[1], float) + 0.5


def oracle_action(state: dict[str, np.ndarray], rng: np.random.Generator, epsilon: float = 0.0) -> int:
    """The oracle's action for one privileged state (``MemoryMazeEnv(privileged=True)``'s ``info["state"]``)."""
    if rng.random() < epsilon:
        return int(rng.integers(N_ACTIONS))
    to = waypoint(state) - state["agent_pos"]
    heading = state["agent_dir"]
    off = np.degrees(np.arctan2(to[1], to[0]) - np.arctan2(heading[1], heading[0]))
    off = (off + 180.0) % 360.0 - 180.0  # > 0: the waypoint is to the left (counter-clockwise)
    if abs(off) > TURN_ONLY:
        return LEFT if off > 0 else RIGHT
    if abs(off) > STEER:
        return FORWARD_LEFT if off > 0 else FORWARD_RIGHT
    return FORWARD


def oracle_episode(env: MemoryMazeEnv, seed: int, n_steps: int, epsilon: float,
                   noise_seed: int) -> dict[str, np.ndarray]:
    """One episode of the oracle in the reference's file layout: obs uint8 [T, 64, 64, 3] (the frame seen
    before acting), action one-hot float32 [T, 6], reward float32 [T]."""
    rng = np.random.default_rng(noise_seed)
    obs, info = env.reset(seed=seed)
    frames, actions, rewards = [], [], []
    for _ in range(n_steps):
        a = oracle_action(info["state"], rng, epsilon)
        frames.append(obs.transpose(1, 2, 0))
        actions.append(a)
        obs, reward, terminated, truncated, info = env.step(a)
        rewards.append(reward)
        if terminated or truncated:
            break
    return {"obs": np.stack(frames), "action": ONE_HOT[actions],
            "reward": np.asarray(rewards, np.float32)}


def episode_stats(episode: dict[str, Any]) -> dict[str, float]:
    """Targets reached and steps of an ``oracle_episode``."""
    return {"return": float(episode["reward"].sum()), "steps": len(episode["reward"])}
