"""Scripted Two-Colors expert that reads the simulator state (no learning, no download).

Each step it picks the item of the pillar's colour that is cheapest to reach (distance, plus the turn
needed, plus a penalty for every wrong-colour item close to the straight path), heads for it, and
veers away from wrong-colour items just ahead. With probability ``epsilon`` it takes a uniformly random
action instead, which gives the dataset some diversity (and recoveries from mistakes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from VizDoom.VizDoom_src.vizdoom_env import FORWARD, LEFT, LEFT_FORWARD, N_ACTIONS, RIGHT, RIGHT_FORWARD, TwoColorsEnv

TURN_COST = 2.0  # map units per degree of turning (the player turns ~7°/step and runs ~15 units/step)
BLOCK_RADIUS = 44.0  # a wrong item this close to the path would be picked up on the way
BLOCK_PENALTY = 300.0
AVOID_AHEAD = 160.0  # look-ahead distance for veering around wrong items
VEER = 40.0  # degrees


def _wrap(deg: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def _lateral(p: np.ndarray, heading: float, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance ahead along ``heading`` and signed distance to the left of it, for each point."""
    d = pts - p
    c, s = np.cos(np.radians(heading)), np.sin(np.radians(heading))
    return d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c


def expert_action(state: dict[str, Any], is_red: bool, rng: np.random.Generator, epsilon: float = 0.0) -> int:
    """The expert's action for one privileged state (``TwoColorsEnv.privileged_state()``)."""
    if rng.random() < epsilon or state["player"] is None:
        return int(rng.integers(N_ACTIONS))
    colour = "Red" if is_red else "Green"
    goods = np.asarray(state["items"].get(f"{colour}Heal", []), float).reshape(-1, 2)
    bads = np.asarray(state["items"].get(f"{'Green' if is_red else 'Red'}Hurt", []), float).reshape(-1, 2)
    x, y, angle = state["player"]
    p = np.array([x, y])
    if len(goods) == 0:
        return LEFT_FORWARD
    to_goods = goods - p
    dist = np.hypot(to_goods[:, 0], to_goods[:, 1])
    bearing = np.degrees(np.arctan2(to_goods[:, 1], to_goods[:, 0]))
    cost = dist + TURN_COST * np.abs(_wrap(bearing - angle))
    for b in bads:  # wrong items near each straight path (projection onto the segment)
        t = np.clip(((b - p) @ to_goods.T) / np.maximum(dist**2, 1e-6), 0.0, 1.0)
        closest = p + t[:, None] * to_goods
        cost += BLOCK_PENALTY * (np.hypot(*(closest - b).T) < BLOCK_RADIUS)
    i = int(np.argmin(cost))
    desired = float(bearing[i])
    if len(bads):
        ahead, left = _lateral(p, desired, bads)
        near = (ahead > 0) & (ahead < min(AVOID_AHEAD, dist[i])) & (np.abs(left) < BLOCK_RADIUS)
        if near.any():
            j = np.flatnonzero(near)[np.argmin(ahead[near])]
            desired += -VEER if left[j] > 0 else VEER  # turn away from the side the item is on
    diff = float(_wrap(desired - angle))
    if abs(diff) < 8.0:
        return FORWARD
    if abs(diff) < 50.0:
        return LEFT_FORWARD if diff > 0 else RIGHT_FORWARD
    return LEFT if diff > 0 else RIGHT


def expert_episode(env: TwoColorsEnv, seed: int, n_steps: int, epsilon: float = 0.0,
                   noise_seed: int = 0) -> dict[str, np.ndarray]:
    """One episode of at most ``n_steps`` steps: obs uint8 [T, 3, 64, 112], action int64 [T],
    reward float32 [T], done bool [T] (True on the last step), is_red bool [T] (constant)."""
    assert env.privileged, "the expert needs TwoColorsEnv(privileged=True)"
    rng = np.random.default_rng(noise_seed)
    obs, info = env.reset(seed=seed)
    red = bool(info["is_red"])
    frames, actions, rewards = [], [], []
    for _ in range(n_steps):
        a = expert_action(info["state"], red, rng, epsilon)
        frames.append(obs)
        actions.append(a)
        obs, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
        if terminated or truncated:
            break
    T = len(actions)
    done = np.zeros(T, bool)
    done[-1] = True
    return {"obs": np.stack(frames), "action": np.asarray(actions, np.int64),
            "reward": np.asarray(rewards, np.float32), "done": done, "is_red": np.full(T, red)}
