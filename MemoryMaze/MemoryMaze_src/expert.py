"""Oracles for Memory Maze (no learning, no download): one that reads the maze and the target's position
(``privileged``) and one that acts only on what its camera has shown it (``visible``).

Both steer the same way: aim at the centre of the next cell of a shortest grid path (at the goal itself
once in its cell), turn on the spot when far off, steer while moving forward when a little off, go
straight otherwise; with probability ``epsilon`` a uniformly random action instead (diversity, and
recoveries in the data).

* ``privileged`` (:func:`oracle_action`): breadth-first search on the true layout to the current target,
  from the first step, also to targets it has never seen: from pixels its first trip to each target
  cannot be predicted.
* ``visible`` (:class:`VisibleOracle`): keeps a map of the cells it has seen (field of view 80°, walls
  block the view, :func:`visible_cells`) and the targets whose colour and position it has seen. The
  current target's colour is the frame's border, so when that target has been seen it plans a shortest
  path over its map (unseen cells count as open) and goes there; otherwise it explores towards the
  nearest unseen cell (frontier exploration), keeping that goal until the cell has been seen. Its
  actions are a function of its pose and of what its camera showed, which a model with memory can
  learn from the frames; a remembered layout and remembered targets shorten every later trip.

Cells are (x, y) with ``layout[y, x] == 1`` for open floor (the package's convention, outer walls
removed); positions are in cell units, the centre of cell (x, y) at (x + 0.5, y + 0.5).
"""

from __future__ import annotations

from collections import deque
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
ORACLES = ("visible", "privileged")

# What the camera shows (the walker's camera: fovy 80° on a square image, so 80° across). A point counts
# as seen within HALF_FOV of the heading (a margin inside the 40° edge: a target there is not cut off)
# and within VIEW_CELLS cells (at 5 cells = 10 m a target sphere still spans ~5 pixels of the 64).
HALF_FOV = 35.0
VIEW_CELLS = 5.0
RAY_STEP = 0.05  # cells between the samples of a line of sight


def heading_error(to: np.ndarray, heading: np.ndarray) -> float:
    """Degrees from ``heading`` to the direction ``to``, in (-180, 180]; > 0: to the left (counter-clockwise)."""
    off = np.degrees(np.arctan2(to[1], to[0]) - np.arctan2(heading[1], heading[0]))
    return float((off + 180.0) % 360.0 - 180.0)


def steer(pos: np.ndarray, heading: np.ndarray, point: np.ndarray) -> int:
    """The action that drives from ``pos`` (facing ``heading``) towards ``point``."""
    off = heading_error(np.asarray(point, float) - pos, heading)
    if abs(off) > TURN_ONLY:
        return LEFT if off > 0 else RIGHT
    if abs(off) > STEER:
        return FORWARD_LEFT if off > 0 else FORWARD_RIGHT
    return FORWARD


def next_point(layout: np.ndarray, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The centre of the next cell on a shortest path over ``layout`` from ``pos`` to ``goal`` (the goal itself
    once in its cell, or when no path is known)."""
    cell, goal_cell = tuple(int(v) for v in pos), tuple(int(v) for v in goal)
    path = breadth_first_search(layout, cell, goal_cell)
    if not path or len(path) < 2:
        return np.asarray(goal, float)
    return np.asarray(path[1], float) + 0.5


def waypoint(state: dict[str, np.ndarray]) -> np.ndarray:
    """The point the privileged oracle heads for: the next cell on the true shortest path to the target."""
    return next_point(state["maze_layout"], state["agent_pos"], state["target_pos"])


def oracle_action(state: dict[str, np.ndarray], rng: np.random.Generator, epsilon: float = 0.0) -> int:
    """The privileged oracle's action for one state (``MemoryMazeEnv(privileged=True)``'s ``info["state"]``)."""
    if rng.random() < epsilon:
        return int(rng.integers(N_ACTIONS))
    return steer(state["agent_pos"], state["agent_dir"], waypoint(state))


# ---------------------------------------------------------------- what the camera shows


def line_of_sight(layout: np.ndarray, pos: np.ndarray, points: np.ndarray) -> np.ndarray:
    """bool [P]: whether the straight line from ``pos`` to each of ``points`` [P, 2] stays on open floor
    until it enters the point's own cell (so a wall cell is seen when its face is)."""
    points = np.asarray(points, float).reshape(-1, 2)
    h, w = layout.shape
    length = np.linalg.norm(points - pos, axis=1)
    n = max(2, int(np.ceil(length.max(initial=0.0) / RAY_STEP)) + 1)
    frac = np.linspace(0.0, 1.0, n)[None, :, None]
    samples = pos + frac * (points - pos)[:, None, :]  # [P, n, 2]
    cx, cy = np.floor(samples[..., 0]).astype(int), np.floor(samples[..., 1]).astype(int)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    open_ = np.zeros(cx.shape, bool)
    open_[inside] = layout[cy[inside], cx[inside]] > 0
    own = (cx == np.floor(points[:, 0]).astype(int)[:, None]) & (cy == np.floor(points[:, 1]).astype(int)[:, None])
    return (open_ | own).all(axis=1)


def in_view(pos: np.ndarray, heading: np.ndarray, points: np.ndarray) -> np.ndarray:
    """bool [P]: each point within the field of view and the view distance (walls not considered)."""
    to = np.asarray(points, float).reshape(-1, 2) - pos
    dist = np.linalg.norm(to, axis=1)
    cos = (to @ heading) / np.maximum(dist * np.linalg.norm(heading), 1e-9)
    return (dist <= VIEW_CELLS) & (cos >= np.cos(np.radians(HALF_FOV)))


def visible(layout: np.ndarray, pos: np.ndarray, heading: np.ndarray, points: np.ndarray) -> np.ndarray:
    """bool [P]: the camera at ``pos`` facing ``heading`` shows each point (in view, no wall in between)."""
    points = np.asarray(points, float).reshape(-1, 2)
    seen = in_view(pos, heading, points)
    if seen.any():
        seen[seen] = line_of_sight(layout, pos, points[seen])
    return seen


def visible_cells(layout: np.ndarray, pos: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """bool [H, W]: the cells whose centre the camera shows, and the agent's own cell."""
    h, w = layout.shape
    ys, xs = np.mgrid[:h, :w]
    centres = np.stack([xs.ravel(), ys.ravel()], 1) + 0.5
    seen = visible(layout, np.asarray(pos, float), np.asarray(heading, float), centres).reshape(h, w)
    x, y = (int(v) for v in pos)
    if 0 <= y < h and 0 <= x < w:
        seen[y, x] = True
    return seen


def current_target(state: dict[str, np.ndarray]) -> int:
    """Index of the current target among ``targets_pos`` (its colour is the frame's border)."""
    return int(np.argmin(np.linalg.norm(state["targets_pos"] - state["target_pos"], axis=1)))


# ---------------------------------------------------------------- the oracle that remembers what it saw


def nearest_unknown(known: np.ndarray, start: tuple[int, int], heading: np.ndarray) -> tuple[int, int] | None:
    """The unseen cell nearest to ``start`` by grid path over cells not known to be walls (ties: the one
    closest to straight ahead), or None when every reachable cell has been seen."""
    h, w = known.shape
    dist = np.full(known.shape, -1)
    x0, y0 = start
    dist[y0, x0] = 0
    queue, found = deque([start]), []
    while queue:
        x, y = queue.popleft()
        if found and dist[y, x] > dist[found[0][1], found[0][0]]:
            break
        if known[y, x] < 0:
            found.append((x, y))
            continue  # an unseen cell is a goal, not a corridor to search beyond
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            x1, y1 = x + dx, y + dy
            if 0 <= x1 < w and 0 <= y1 < h and dist[y1, x1] < 0 and known[y1, x1] != 0:
                dist[y1, x1] = dist[y, x] + 1
                queue.append((x1, y1))
    if not found:
        return None
    centre = np.array([x0 + 0.5, y0 + 0.5])
    return min(found, key=lambda c: (abs(heading_error(np.add(c, 0.5) - centre, heading)), c))


class VisibleOracle:
    """The oracle that acts on what it has seen; one instance per episode (see the module docstring).

    ``known`` [H, W] holds -1 for unseen cells, else the layout's value (1 open, 0 wall); ``targets``
    maps each target seen so far to its cell. ``seen_at_assignment`` records, for every target assigned
    (the first and one after each reach), whether it had been seen by then."""

    def __init__(self, epsilon: float = 0.0):
        self.epsilon = epsilon
        self.known: np.ndarray | None = None
        self.targets: dict[int, np.ndarray] = {}
        self.goal: tuple[int, int] | None = None  # the unseen cell being explored towards
        self.assigned: int | None = None
        self.seen_at_assignment: list[bool] = []

    def observe(self, state: dict[str, np.ndarray]) -> None:
        """Add what the camera shows now to the map and the remembered targets."""
        layout, pos, heading = state["maze_layout"], state["agent_pos"], state["agent_dir"]
        if self.known is None:
            self.known = np.full(layout.shape, -1, np.int8)
        seen = visible_cells(layout, pos, heading)
        self.known[seen] = layout[seen]
        shown = visible(layout, pos, heading, state["targets_pos"])
        for i in np.flatnonzero(shown):
            self.targets.setdefault(int(i), np.asarray(state["targets_pos"][i], float))

    def act(self, state: dict[str, np.ndarray], rng: np.random.Generator) -> int:
        """Observe, then the action for this step."""
        current = current_target(state)
        if current != self.assigned:  # a new target (the episode's first, or one after a reach)
            self.seen_at_assignment.append(current in self.targets)
            self.assigned = current
        self.observe(state)
        if rng.random() < self.epsilon:
            return int(rng.integers(N_ACTIONS))
        return steer(state["agent_pos"], state["agent_dir"], self.target_point(state))

    def target_point(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """Where it heads now: towards the current target if seen, else towards the nearest unseen cell."""
        pos, heading = state["agent_pos"], state["agent_dir"]
        passable = (self.known != 0).astype(np.uint8)  # unseen cells count as open
        target = self.targets.get(self.assigned)
        if target is not None:
            self.goal = None
            return next_point(passable, pos, target)
        if self.goal is None or self.known[self.goal[1], self.goal[0]] >= 0:
            self.goal = nearest_unknown(self.known, tuple(int(v) for v in pos), heading)
        if self.goal is None:  # everything reachable seen and the target not among it: look around
            return pos + np.array([-heading[1], heading[0]])
        return next_point(passable, pos, np.add(self.goal, 0.5))


def oracle_episode(env: MemoryMazeEnv, seed: int, n_steps: int, epsilon: float, noise_seed: int,
                   oracle: str = "visible") -> dict[str, Any]:
    """One episode of an oracle (``visible`` or ``privileged``) in the reference's file layout: obs uint8
    [T, 64, 64, 3] (the frame seen before acting), action one-hot float32 [T, 6], reward float32 [T];
    and, not for the file, ``seen_at_assignment`` (visible oracle: one bool per assigned target)."""
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}")
    rng = np.random.default_rng(noise_seed)
    obs, info = env.reset(seed=seed)
    agent = VisibleOracle(epsilon) if oracle == "visible" else None
    frames, actions, rewards = [], [], []
    for _ in range(n_steps):
        a = agent.act(info["state"], rng) if agent else oracle_action(info["state"], rng, epsilon)
        frames.append(obs.transpose(1, 2, 0))
        actions.append(a)
        obs, reward, terminated, truncated, info = env.step(a)
        rewards.append(reward)
        if terminated or truncated:
            break
    return {"obs": np.stack(frames), "action": ONE_HOT[actions], "reward": np.asarray(rewards, np.float32),
            "seen_at_assignment": np.asarray(agent.seen_at_assignment if agent else [], bool)}
