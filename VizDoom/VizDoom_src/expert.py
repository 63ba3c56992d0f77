"""Scripted Two-Colors experts (no learning, no download).

Both steer the same way: each step they pick the item of the pillar's colour that is cheapest to reach
(distance, plus the turn needed, plus a penalty for every wrong-colour item close to the straight path),
head for it, and veer away from wrong-colour items just ahead. They differ in what they know:

- ``visible`` (the default for data): acts only on what the agent sees and has seen. It remembers the
  pillar's colour from the frames where the pillar was drawn and chooses among the items drawn in the
  current frame (the engine's labels buffer, ``TwoColorsEnv(visible=True)``); with no item of the
  pillar's colour in view it turns to search. No action noise: the diversity comes from the item layouts,
  and every action is a function of the frames so far, so a pixel model can imitate it. With
  ``target_noise`` J > 0 it adds to each drawn item's cost a value drawn uniformly from [0, J], drawn anew
  every ``target_hold`` steps: noise in *which* item of the right colour it heads for, never in whether
  the item has the right colour, so the choice of the next item is not given away by the steps before it.
- ``privileged``: reads every item's position from the engine, including items behind the player, and
  with probability ``epsilon`` takes a uniformly random action (the data of the first ViZDoom results).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from VizDoom.VizDoom_src.vizdoom_env import FORWARD, LEFT, LEFT_FORWARD, N_ACTIONS, RIGHT, RIGHT_FORWARD, TwoColorsEnv

EXPERTS = ("visible", "privileged")
TURN_COST = 2.0  # map units per degree of turning (the player turns ~7°/step and runs ~15 units/step)
BLOCK_RADIUS = 44.0  # a wrong item this close to the path would be picked up on the way
BLOCK_PENALTY = 300.0
AVOID_AHEAD = 160.0  # look-ahead distance for veering around wrong items
VEER = 40.0  # degrees
SEARCH = LEFT_FORWARD  # the visible expert's action when no item of the pillar's colour is in view
DEFAULT_TARGET_HOLD = 10  # steps between two draws of the visible expert's target noise


def _wrap(deg: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def _lateral(p: np.ndarray, heading: float, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance ahead along ``heading`` and signed distance to the left of it, for each point."""
    d = pts - p
    c, s = np.cos(np.radians(heading)), np.sin(np.radians(heading))
    return d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c


def _blocked_ahead(p: np.ndarray, heading: float, bads: np.ndarray, reach: float) -> np.ndarray:
    """Which wrong items lie on the path ``reach`` units ahead along ``heading``."""
    ahead, left = _lateral(p, heading, bads)
    return (ahead > 0) & (ahead < reach) & (np.abs(left) < BLOCK_RADIUS)


def steer(player: tuple[float, float, float], goods: np.ndarray, bads: np.ndarray,
          extra_cost: np.ndarray | None = None) -> int | None:
    """The action towards the cheapest of ``goods`` ([n, 2] positions) around ``bads``, each good's cost raised
    by ``extra_cost`` [n] if given; None when ``goods`` is empty."""
    x, y, angle = player
    p = np.array([x, y])
    if len(goods) == 0:
        return None
    to_goods = goods - p
    dist = np.hypot(to_goods[:, 0], to_goods[:, 1])
    bearing = np.degrees(np.arctan2(to_goods[:, 1], to_goods[:, 0]))
    cost = dist + TURN_COST * np.abs(_wrap(bearing - angle))
    if extra_cost is not None:
        cost = cost + extra_cost
    for b in bads:  # wrong items near each straight path (projection onto the segment)
        t = np.clip(((b - p) @ to_goods.T) / np.maximum(dist**2, 1e-6), 0.0, 1.0)
        closest = p + t[:, None] * to_goods
        cost += BLOCK_PENALTY * (np.hypot(*(closest - b).T) < BLOCK_RADIUS)
    i = int(np.argmin(cost))
    desired = float(bearing[i])
    if len(bads):
        near = _blocked_ahead(p, desired, bads, min(AVOID_AHEAD, dist[i]))
        if near.any():
            ahead, left = _lateral(p, desired, bads)
            j = np.flatnonzero(near)[np.argmin(ahead[near])]
            desired += -VEER if left[j] > 0 else VEER  # turn away from the side the item is on
    diff = float(_wrap(desired - angle))
    if abs(diff) < 8.0:
        return FORWARD
    if abs(diff) < 50.0:
        return LEFT_FORWARD if diff > 0 else RIGHT_FORWARD
    return LEFT if diff > 0 else RIGHT


def _points(pts: Any) -> np.ndarray:
    return np.asarray(pts, float).reshape(-1, 2)


def expert_action(state: dict[str, Any], is_red: bool, rng: np.random.Generator, epsilon: float = 0.0) -> int:
    """The privileged expert's action for one state (``TwoColorsEnv.privileged_state()``)."""
    if rng.random() < epsilon or state["player"] is None:
        return int(rng.integers(N_ACTIONS))
    colour, other = ("Red", "Green") if is_red else ("Green", "Red")
    a = steer(state["player"], _points(state["items"].get(f"{colour}Heal", [])),
              _points(state["items"].get(f"{other}Hurt", [])))
    return LEFT_FORWARD if a is None else a


def seen_colour(view: dict[str, Any], remembered: bool | None) -> bool | None:
    """The pillar colour known after this frame (True: red): the pillar's if it is drawn, else ``remembered``."""
    for name, _, _ in view["objects"]:
        if name.endswith("Pillar"):
            return name.startswith("Red")
    return remembered


def visible_action(view: dict[str, Any], red: bool | None,
                   item_cost: Callable[[float, float], float] | None = None) -> int:
    """The visible expert's action for one frame's ``view`` (``TwoColorsEnv.visible_state()``) when it
    believes the pillar is red (``red``; None: not seen yet). Items are told apart by colour only;
    ``item_cost(x, y)``, if given, is added to the cost of heading for the item at (x, y)."""
    if view["player"] is None:
        return SEARCH
    by_colour: dict[str, list] = {"Red": [], "Green": []}
    for name, x, y in view["objects"]:
        if name.endswith(("Heal", "Hurt")):
            by_colour["Red" if name.startswith("Red") else "Green"].append((x, y))
    if red is None:  # no colour known: avoid everything, look around
        goods, bads = _points([]), _points(by_colour["Red"] + by_colour["Green"])
    else:
        goods, bads = (_points(by_colour[c]) for c in (("Red", "Green") if red else ("Green", "Red")))
    extra = None if item_cost is None else np.array([item_cost(x, y) for x, y in goods])
    a = steer(view["player"], goods, bads, extra)
    if a is not None:
        return a
    x, y, angle = view["player"]  # search: turn while walking, in place if a wrong item is just ahead
    if len(bads) and _blocked_ahead(np.array([x, y]), angle, bads, AVOID_AHEAD).any():
        return LEFT
    return SEARCH


class Expert:
    """One episode of the ``visible`` or the ``privileged`` expert (``epsilon``: the privileged one's share of
    uniformly random actions, drawn from ``rng``). The visible expert's state is the pillar colour it has
    seen (``red``; None before the pillar was drawn) and, with ``target_noise`` J > 0, the extra cost of each
    item it has drawn in the current period of ``target_hold`` steps (uniform in [0, J], from ``rng``; items
    are told apart by position, since they never move)."""

    def __init__(self, kind: str, epsilon: float = 0.0, rng: np.random.Generator | None = None,
                 target_noise: float = 0.0, target_hold: int = DEFAULT_TARGET_HOLD):
        if kind not in EXPERTS:
            raise ValueError(f"expert must be one of {', '.join(EXPERTS)}, got {kind!r}")
        if target_noise < 0 or target_hold < 1:
            raise ValueError(f"target_noise must be >= 0 and target_hold >= 1, got {target_noise}, {target_hold}")
        if target_noise and kind != "visible":
            raise ValueError("target_noise is a setting of the visible expert")
        self.kind, self.epsilon = kind, epsilon
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.red: bool | None = None
        self.target_noise, self.target_hold = target_noise, target_hold
        self._steps, self._costs = 0, {}

    def _item_cost(self, x: float, y: float) -> float:
        """This period's extra cost of the item at (x, y), drawn the first time the item is asked for."""
        key = (round(x, 1), round(y, 1))
        if key not in self._costs:
            self._costs[key] = float(self.rng.uniform(0.0, self.target_noise))
        return self._costs[key]

    def act(self, info: dict[str, Any]) -> tuple[int, int, bool]:
        """(action, the noise-free action had the pillar been the other colour, whether the noise-free action
        differs from that one) for the env's ``info`` (``view`` for the visible expert, ``state`` and ``is_red``
        for the privileged one)."""
        if self.kind == "visible":
            view = info["view"]
            self.red = seen_colour(view, self.red)
            cost = None
            if self.target_noise:
                if self._steps % self.target_hold == 0:
                    self._costs = {}
                self._steps += 1
                cost = self._item_cost
            a = visible_action(view, self.red, cost)
            other = visible_action(view, None if self.red is None else not self.red, cost)
            return a, other, a != other
        state, red, plain = info["state"], bool(info["is_red"]), np.random.default_rng(0)
        noise_free, other = expert_action(state, red, plain), expert_action(swap_colours(state), not red, plain)
        return expert_action(state, red, self.rng, self.epsilon), other, noise_free != other


def expert_episode(env: TwoColorsEnv, seed: int, n_steps: int, epsilon: float = 0.0,
                   noise_seed: int = 0, target_noise: float = 0.0,
                   target_hold: int = DEFAULT_TARGET_HOLD) -> dict[str, np.ndarray]:
    """One episode of at most ``n_steps`` steps of the ``visible`` expert (``env`` made with ``visible=True``) or
    the ``privileged`` one (``privileged=True``; ``epsilon``: its share of uniformly random actions, drawn from
    ``noise_seed``): obs uint8 [T, 3, 64, 112], action int64 [T], reward float32 [T], done bool [T] (True on
    the last step), is_red bool [T] (constant), action_other_colour int64 [T] (the expert's noise-free
    action had the pillar been the other colour) and colour_dependent bool [T] (it differs from the
    noise-free action taken). The visible expert's ``target_noise`` (drawn from ``noise_seed`` too) is not
    action noise: the other-colour action is computed with the same item costs."""
    assert env.visible or env.privileged, "the expert needs TwoColorsEnv(visible=True) or (privileged=True)"
    expert = Expert("privileged" if env.privileged else "visible", epsilon, np.random.default_rng(noise_seed),
                    target_noise, target_hold)
    obs, info = env.reset(seed=seed)
    red = bool(info["is_red"])
    frames, rewards, steps = [], [], []
    for _ in range(n_steps):
        steps.append(expert.act(info))
        frames.append(obs)
        obs, r, terminated, truncated, info = env.step(steps[-1][0])
        rewards.append(r)
        if terminated or truncated:
            break
    T = len(steps)
    done = np.zeros(T, bool)
    done[-1] = True
    actions, other, dependent = zip(*steps, strict=True)
    return {"obs": np.stack(frames), "action": np.asarray(actions, np.int64),
            "reward": np.asarray(rewards, np.float32), "done": done, "is_red": np.full(T, red),
            "action_other_colour": np.asarray(other, np.int64), "colour_dependent": np.asarray(dependent, bool)}


def swap_colours(state: dict[str, Any]) -> dict[str, Any]:
    """The privileged state as it would read with the other pillar colour (every item's role swapped)."""
    role = {"Heal": "Hurt", "Hurt": "Heal"}
    return {**state, "items": {k[:-4] + role[k[-4:]]: v for k, v in state["items"].items()}}

