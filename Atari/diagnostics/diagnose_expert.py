"""How much of a scripted paddle expert's choice (Breakout, Pong) an observer can know: probes on the RAM
positions its decision reads.

    python3 Atari/diagnostics/diagnose_expert.py --episodes 24 --heldout 4 --out runs/atari/diagnose_expert.json
    python3 Atari/diagnostics/diagnose_expert.py --game Pong --episodes 12 --heldout 2

Plays the expert in the data env (sticky actions, ``--epsilon`` random actions, as ``collect_replay.py``)
and records, per step, the action it wrote into the data (random ones excluded from the scores) and the
RAM coordinates its rule reads: the ball (x, y), the paddle and where the rule expects the paddle to come
to rest (``set_point``). The positions are what the frames show (the 4-frame stack shows the last 4
steps'). Breakout's rule reads its paddle controller's set point (ram[70]), which is not on screen: it moves
at once with a key press (also with a sticky repeat, which the data does not record) and the paddle
follows it over the next steps; Pong's rule uses the paddle's position plus its last motion (on screen).
An MLP probe predicts the action, on held-out episodes, from

* ``positions``: ball and paddle positions of the last 4 steps, and the last 4 recorded actions — what a
  sequence model with a 4-frame stack and its past actions sees (the probe must learn the ball's flight);
* ``visible``: the same and the rule's goal (where the ball will cross the paddle's line, computed from the
  ball's last two positions: a function of what is on screen);
* ``visible_and_set_point``: the same and the set point;
* ``rule_with_paddle_velocity``: no learning, the expert's own rule with the set point replaced by the
  paddle's position plus its last step's motion (what the frames give).

A policy whose actions a model cannot clone from observations (the Minigrid lesson) shows as a gap
between the first two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from Atari.Atari_src.atari_env import N_ACTIONS, make_env, ram
from Atari.Atari_src.expert import Breakout, PaddlePolicy, Pong
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive

HISTORY = 4  # steps of positions and actions the probe sees (the frame stack's)
PADDLE_GAMES: dict[str, type[PaddlePolicy]] = {"Breakout": Breakout, "Pong": Pong}


def record(episodes: int, epsilon: float, max_steps: int, seed: int, game: str = "Breakout"
           ) -> list[dict[str, np.ndarray]]:
    """Per episode: ``pos`` [T, 3] (ball across, ball along its flight to the paddle, paddle), ``goal`` [T]
    (where the rule steers the paddle, from the ball's last two positions), ``set_point`` [T] (where the rule
    expects the paddle to rest), ``action`` [T] (written to the data), ``expert`` [T] bool (the expert's own
    action, not a random one), ``rule_visible`` [T] (the rule on the paddle's position and motion instead of
    the set point)."""
    env = make_env(game, data=True)
    rng = np.random.default_rng(seed)
    cls, n_actions = PADDLE_GAMES[game], N_ACTIONS[game]
    expert, visible = cls(), cls()
    visible.settle = lambda r, p, vp: p + vp  # the base rule: the paddle's position and its last motion
    out = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        expert.reset()
        visible.reset()
        rows: dict[str, list[Any]] = {"pos": [], "goal": [], "set_point": [], "action": [], "expert": [],
                                      "rule_visible": []}
        for _ in range(max_steps):
            r = ram(env)
            action, guess = expert(r), visible(r)
            rows["goal"].append(expert.last_goal if r[cls.ball_y] > 0 else cls.centre)
            own = rng.random() >= epsilon
            if not own:
                action = int(rng.integers(n_actions))
            rows["pos"].append((int(r[cls.ball_cross]), int(r[cls.ball_axis]), int(r[cls.paddle])))
            rows["set_point"].append(expert.last_rest)
            rows["action"].append(action)
            rows["expert"].append(own)
            rows["rule_visible"].append(guess)
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        out.append({k: np.asarray(v) for k, v in rows.items()})
    env.close()
    return out


def features(ep: dict[str, np.ndarray], set_point: bool, goal: bool = True, n_actions: int = 4) -> np.ndarray:
    """[T, F]: positions of steps t-3..t (the episode's first repeated before its start), the rule's goal at t
    (a function of the ball's positions; not without ``goal``), one-hot actions of steps t-4..t-1 (none before
    the start), and with ``set_point`` the set point at t; scaled to ~[0, 1]."""
    T = len(ep["action"])
    back = np.maximum(np.arange(T)[:, None] - np.arange(HISTORY - 1, -1, -1), 0)
    pos = ep["pos"][back].reshape(T, -1) / 255.0
    prev = np.arange(T)[:, None] - np.arange(HISTORY, 0, -1)
    onehot = np.zeros((T, HISTORY, n_actions + 1), np.float32)  # the last slot: before the episode
    onehot[np.arange(T)[:, None], np.arange(HISTORY), np.where(prev >= 0, ep["action"][np.maximum(prev, 0)],
                                                               n_actions)] = 1
    cols = [pos, *([ep["goal"][:, None] / 255.0] if goal else []), onehot.reshape(T, -1)]
    if set_point:
        cols.append(ep["set_point"][:, None] / 255.0)
    return np.concatenate(cols, 1).astype(np.float32)


def probe(train: list[dict[str, np.ndarray]], test: list[dict[str, np.ndarray]], set_point: bool, steps: int,
          seed: int, goal: bool = True, n_actions: int = 4) -> float:
    """Held-out accuracy on the expert's own steps of an MLP trained on the training episodes' own steps."""
    def data(eps: list[dict[str, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([features(e, set_point, goal, n_actions)[e["expert"]] for e in eps])
        y = np.concatenate([e["action"][e["expert"]] for e in eps])
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    (x, y), (xt, yt) = data(train), data(test)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, n_actions))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (512,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(xt).argmax(1) == yt).float().mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--game", choices=PADDLE_GAMES, default="Breakout")
    p.add_argument("--episodes", type=int, default=24, help="episodes played (the last --heldout are held out)")
    p.add_argument("--heldout", type=int, default=4)
    p.add_argument("--epsilon", type=float, default=0.05, help="random-action probability (the data's)")
    p.add_argument("--max_steps", type=int, default=27_000)
    p.add_argument("--steps", type=int, default=4000, help="probe training steps (batch 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "heldout", "max_steps", "steps"))
    if args.heldout >= args.episodes:
        raise ConfigError(f"--heldout {args.heldout} leaves none of the {args.episodes} episodes to train on")
    if not 0 <= args.epsilon < 1:
        raise ConfigError(f"--epsilon must be in [0, 1), got {args.epsilon}")
    eps = record(args.episodes, args.epsilon, args.max_steps, args.seed, args.game)
    k = N_ACTIONS[args.game]
    train, test = eps[:-args.heldout], eps[-args.heldout:]
    own = np.concatenate([e["expert"] for e in test])
    acts = np.concatenate([e["action"] for e in test])[own]
    result = {
        "game": args.game, "episodes": args.episodes, "heldout": args.heldout, "epsilon": args.epsilon,
        "steps_recorded": int(sum(len(e["action"]) for e in eps)),
        "heldout_expert_steps": int(own.sum()),
        "majority": float(np.bincount(acts, minlength=k).max() / len(acts)),
        "positions": probe(train, test, False, args.steps, args.seed, goal=False, n_actions=k),
        "visible": probe(train, test, False, args.steps, args.seed, n_actions=k),
        "visible_and_set_point": probe(train, test, True, args.steps, args.seed, n_actions=k),
        "rule_with_paddle_velocity": float((np.concatenate([e["rule_visible"] for e in test])[own] == acts).mean()),
        "action_share": (np.bincount(acts, minlength=k) / len(acts)).round(3).tolist(),
    }
    print(json.dumps(result), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run_main(main)
