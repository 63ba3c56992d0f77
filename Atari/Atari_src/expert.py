"""Scripted Atari policies that read the console RAM: cheap, better-than-random behaviour for offline data.

A policy maps the 128 RAM bytes (``atari_env.ram``) to an action index of the game's minimal action set in
``make_env(game, data=True)`` (frame-skip 4, sticky actions 0.25). It is deterministic given the RAM
sequence (it may remember earlier steps, e.g. for velocities); the data generator adds epsilon-random
actions itself. No emulator-state cloning or lookahead: one decision costs microseconds.

How the bytes were found: by stepping the env with chosen actions (sticky actions off) and printing the
bytes that change, next to the rendered screen; walls and paddle lines from where the ball's velocity
flips. Coordinates are the game's own (not the 84×84 frame's).

* Pong (``PaddlePolicy``): ball x/y = ram[49]/ram[54] (y = 0 while no ball is served), own (right) paddle
  y = ram[51] (RIGHT moves it up, i.e. decreases it; LEFT down). The ball meets the paddle's line at
  x ≈ 188 and bounces off the walls at y ≈ 46 / 205; a paddle at ball y − 6 returns it.
* Breakout (``PaddlePolicy``): ball x/y = ram[99]/ram[101] (y = 0 while the ball is not in play: press
  FIRE, at the start and after every lost life), paddle x = ram[72], side walls at ball x ≈ 56 / 200,
  paddle line at ball y ≈ 182; a paddle at ball x − 10 returns it (screen: ball left pixel = ram[99] − 49,
  paddle left pixel = ram[72] − 47, 16 pixels wide). ram[70] is the paddle controller's set point: the
  paddle comes to rest at x = 234 − ram[70] (clipped to 55..191), one to two steps after a key press.
* Qbert (``Qbert``): Qbert x/y = ram[43]/ram[67]; standing on a cube, y = 25 + 28·row (rows 0..5) and
  x ≈ 77 + 14·(down-right − down-left jumps from the top). The colours of the 21 cubes: ram[21] (top);
  row 1: 52, 54; row 2: 83, 85, 87; row 3: 98..104; row 4: 1..9; row 5: 32..42 (every second byte, left
  to right). Actions: UP = up-right, RIGHT = down-right, LEFT = up-left, DOWN = down-left.
* Seaquest (``Seaquest``): player x/y = ram[70]/ram[97] (x 21..134, y 13 at the surface .. 108 at the
  bottom), oxygen = ram[102] (64 full), divers aboard = ram[62].

Rules: Pong and Breakout predict where the ball crosses the paddle's line (straight flight with mirror
bounces off the side walls, velocity from the previous step) and steer the paddle's *resting* position
there with a dead zone: ALE's emulated paddles lag and coast for several frames, and one step's key press
moves them ≈ 22 units, so chasing the current position overshoots and oscillates. Qbert jumps, whenever it
stands on a cube, towards the nearest cube without the target colour (never off the pyramid; enemies are
ignored). Seaquest patrols near the bottom, sweeping left and right while firing, and surfaces when oxygen
runs low if a diver is aboard (surfacing with none costs a life, as running out of oxygen does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from Atari.Atari_src.atari_env import ram

NOOP, FIRE = 0, 1


class Policy:
    """A scripted policy: ``reset()`` at an episode's start, then ``policy(ram) -> action`` every step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget what was remembered from the previous episode."""

    def __call__(self, ram: np.ndarray) -> int:
        raise NotImplementedError


def reflect(c: float, lo: float, hi: float) -> float:
    """``c`` folded into [lo, hi] by mirror bounces off both ends (a ball's straight flight between walls)."""
    span = hi - lo
    u = (c - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


class PaddlePolicy(Policy):
    """Move a paddle along one axis to where the ball will cross the paddle's line.

    The ball flies along ``ball_axis`` towards the paddle's line ``hit`` (increasing coordinate) and across
    it between ``walls``; a paddle at ball_cross + ``offset`` returns it. Steering compares that goal with
    where the paddle would come to rest (``settle``) and presses nothing within ``dead_zone``."""

    ball_axis: int  # RAM index of the ball coordinate along which it flies to the paddle
    ball_cross: int  # RAM index of the ball coordinate across that
    ball_y: int  # RAM index of the ball's y (0 while no ball is in play)
    paddle: int  # RAM index of the paddle coordinate
    hit: float  # ball_axis at the paddle's line
    walls: tuple[float, float]  # ball_cross of the side walls
    offset: float  # paddle coordinate minus ball_cross that returns the ball
    centre: float  # paddle coordinate to wait at while no ball is in play
    dead_zone: float  # about half of one key press's travel: a smaller one makes the paddle hunt
    minus: int  # action that decreases the paddle coordinate
    plus: int  # action that increases it

    def reset(self) -> None:
        self.ball: tuple[int, int] | None = None  # previous step's (ball_axis, ball_cross); None: no ball
        self.pad: int | None = None  # previous step's paddle coordinate
        self.last_goal: float | None = None  # the goal of the last step with a ball in play
        self.last_rest: float | None = None  # where the last step expected the paddle to rest

    def goal(self, a: int, c: int, va: int, vc: int) -> float:
        """Paddle coordinate to head for with the ball at (a, c) moving by (va, vc) per step."""
        if va > 0:  # coming: where it will cross the paddle's line; going away: follow it
            c = reflect(c + vc * (self.hit - a) / va, *self.walls)
        return c + self.offset

    def settle(self, ram: np.ndarray, p: int, vp: int) -> float:
        """Where the paddle comes to rest if no key is pressed from now on (it coasts about one step)."""
        return p + vp

    def idle(self) -> int | None:
        """Action while no ball is in play (None: move to ``centre``)."""
        return None

    def __call__(self, ram: np.ndarray) -> int:
        a, c, p = int(ram[self.ball_axis]), int(ram[self.ball_cross]), int(ram[self.paddle])
        live = ram[self.ball_y] > 0
        ball, self.ball = self.ball, ((a, c) if live else None)
        vp, self.pad = (0 if self.pad is None else p - self.pad), p
        self.last_rest = self.settle(ram, p, vp)  # diagnose_expert.py records it
        if not live:
            if self.idle() is not None:
                return self.idle()
            goal = self.centre
        elif ball is None:  # first step of a ball: no velocity yet
            goal = c + self.offset
        else:
            goal = self.goal(a, c, a - ball[0], c - ball[1])
        self.last_goal = goal  # what this step steered for (diagnose_expert.py records it)
        err = goal - self.last_rest
        return self.plus if err > self.dead_zone else self.minus if err < -self.dead_zone else NOOP


class Pong(PaddlePolicy):
    ball_axis, ball_cross, ball_y, paddle = 49, 54, 54, 51
    hit, walls, offset, centre, dead_zone = 188.0, (46.0, 205.0), -6.0, 120.0, 13.0
    minus, plus = 2, 3  # RIGHT moves the paddle up (y decreases), LEFT down


class Breakout(PaddlePolicy):
    ball_axis, ball_cross, ball_y, paddle = 101, 99, 101, 72
    hit, walls, offset, centre, dead_zone = 182.0, (56.0, 200.0), -10.0, 123.0, 8.0
    minus, plus = 3, 2  # LEFT, RIGHT

    def idle(self) -> int:
        return FIRE  # launch the ball (at the start and after every lost life)

    def settle(self, ram: np.ndarray, p: int, vp: int) -> float:
        # the controller's set point is exact, where the velocity extrapolation is a guess
        return min(max(234 - int(ram[70]), 55), 191)


ROWS = 6
# Qbert's cubes as (a, b) = (down-right, down-left) jumps from the top, row by row left to right, and the
# RAM byte holding each one's colour; a jump changes a or b by one, so the distance is |Δa| + |Δb|.
CUBES = [(k, r - k) for r in range(ROWS) for k in range(r + 1)]
CUBE_BYTES = [21, 52, 54, 83, 85, 87, 98, 100, 102, 104, 1, 3, 5, 7, 9, 32, 34, 36, 38, 40, 42]
JUMPS = {2: (0, -1), 3: (1, 0), 4: (-1, 0), 5: (0, 1)}  # UP = up-right, RIGHT = down-right, LEFT, DOWN


class Qbert(Policy):
    """Jump towards the nearest cube that does not have the target colour yet.

    The target colour is learnt from play: it is what a cube turned into the last time exactly one cube
    changed (Qbert landing on it; a new round recolours all at once). In rounds that need several hops per
    cube this first targets the intermediate colour, then the final one."""

    def reset(self) -> None:
        self.target: int | None = None
        self.colours: np.ndarray | None = None  # the cubes' colours at the previous step

    def __call__(self, ram: np.ndarray) -> int:
        colours = ram[CUBE_BYTES]
        if self.colours is not None:
            changed = np.flatnonzero(colours != self.colours)
            if len(changed) == 1:
                self.target = int(colours[changed[0]])
        self.colours = colours
        row, rem = divmod(int(ram[67]) - 25, 28)
        if rem or not 0 <= row < ROWS:
            return NOOP  # in the air or falling: jump inputs are ignored
        a = min(max(round(((int(ram[43]) - 77) / 14 + row) / 2), 0), row)
        todo = [cube for cube, colour in zip(CUBES, colours, strict=True) if colour != self.target]
        best, best_d = NOOP, ROWS * 2
        for action, (da, db) in JUMPS.items():
            na, nb = a + da, row - a + db
            if na < 0 or nb < 0 or na + nb >= ROWS:
                continue  # off the pyramid: a lost life
            d = min((abs(na - ta) + abs(nb - tb) for ta, tb in todo), default=0)
            if d < best_d:
                best, best_d = action, d
        return best


class Seaquest(Policy):
    """Patrol at ``depth`` sweeping between ``edges`` while firing; surface when oxygen runs low and a diver
    is aboard. Near the bottom fewer enemies reach the submarine than at mid depth (measured)."""

    depth, low_oxygen, edges = 100, 16, (30, 125)
    # (vertical, horizontal) -> the action that moves so and fires; -1 = up / left
    FIRING = {(0, 1): 11, (0, -1): 12, (-1, 1): 14, (-1, -1): 15, (1, 1): 16, (1, -1): 17}

    def reset(self) -> None:
        self.heading = 1  # horizontal direction of the sweep

    def __call__(self, ram: np.ndarray) -> int:
        x, y, oxygen, divers = int(ram[70]), int(ram[97]), int(ram[102]), int(ram[62])
        if x <= self.edges[0]:
            self.heading = 1
        elif x >= self.edges[1]:
            self.heading = -1
        if oxygen < self.low_oxygen and divers:
            v = -1  # up until surfaced (the oxygen refills only at the very top)
        else:
            v = 0 if abs(self.depth - y) < 4 else (1 if self.depth > y else -1)
        return self.FIRING[v, self.heading]


POLICIES: dict[str, type[Policy]] = {"Pong": Pong, "Breakout": Breakout, "Qbert": Qbert, "Seaquest": Seaquest}


def make_policy(game: str) -> Policy:
    """The scripted policy of ``game`` (ValueError for a game without one)."""
    if game not in POLICIES:
        raise ValueError(f"no scripted policy for {game!r}; expected one of {', '.join(POLICIES)}")
    return POLICIES[game]()


def play_episode(env: Any, policy: Policy | None, epsilon: float, env_seed: int, rng: np.random.Generator,
                 max_steps: int, keep: bool = True) -> dict[str, np.ndarray]:
    """One episode in ``env`` (``atari_env.make_env(game, data=True)``) of ``policy`` with probability
    ``epsilon`` of a uniform random action (``policy`` None: always random). The policy sees every step,
    also when its action is replaced, so its memory of previous positions stays right. Returns obs
    [T, 84, 84] uint8 (the frame seen before acting; only with ``keep``), action [T] int32, reward [T]
    float32 (not clipped)."""
    obs, _ = env.reset(seed=env_seed)
    if policy is not None:
        policy.reset()
    n_actions = env.action_space.n
    frames, actions, rewards = [], [], []
    for _ in range(max_steps):
        action = policy(ram(env)) if policy is not None else 0
        if policy is None or rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        if keep:
            frames.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    out = {"action": np.asarray(actions, np.int32), "reward": np.asarray(rewards, np.float32)}
    return {"obs": np.stack(frames), **out} if keep else out
