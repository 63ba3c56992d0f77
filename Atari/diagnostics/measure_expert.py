"""Measure the scripted RAM policies (with epsilon-random actions) against a uniformly random policy in the
data env ``make_env(game, data=True)``: mean return ± standard error and agent steps per second, one JSON
line per game.

    python3 Atari/diagnostics/measure_expert.py --games Pong,Breakout --episodes 3 --epsilon 0,0.1 \
        --max_steps 27000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from Atari.Atari_src.atari_env import GAMES, MAX_STEPS, check_game, make_env
from Atari.Atari_src.expert import make_policy, play_episode
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, check_seeds, unit_floats
from RATE_model.rollout import sem


def play(game: str, episodes: int, epsilon: float | None, max_steps: int, seed: int) -> tuple[np.ndarray, float]:
    """Returns of ``episodes`` episodes (env seeds seed, seed+1, ...) and agent steps per second.
    ``epsilon`` None plays uniformly random actions; else the scripted policy, replaced with probability
    ``epsilon`` by a uniformly random action."""
    env = make_env(game, data=True)
    policy = None if epsilon is None else make_policy(game)
    rng = np.random.default_rng(seed)
    returns, steps, t0 = [], 0, time.perf_counter()
    for i in range(episodes):
        ep = play_episode(env, policy, epsilon or 0.0, seed + i, rng, max_steps, keep=False)
        returns.append(float(ep["reward"].sum()))
        steps += len(ep["reward"])
    seconds = time.perf_counter() - t0
    env.close()
    return np.array(returns), steps / max(seconds, 1e-9)


def measure(game: str, episodes: int, epsilons: list[float], max_steps: int, seed: int) -> dict[str, Any]:
    """{game, episodes, random: {mean, sem}, "<epsilon>": {mean, sem, steps_per_s} for each epsilon}."""
    check_game(game)
    rand, _ = play(game, episodes, None, max_steps, seed)
    out: dict[str, Any] = {"game": game, "episodes": episodes,
                           "random": {"mean": round(rand.mean(), 2), "sem": round(sem(rand), 2)}}
    for eps in epsilons:
        ret, speed = play(game, episodes, eps, max_steps, seed)
        out[str(eps)] = {"mean": round(ret.mean(), 2), "sem": round(sem(ret), 2), "steps_per_s": round(speed)}
    return out


def games(text: str) -> list[str]:
    """argparse type: game names separated by commas."""
    names = text.split(",")
    for name in names:
        if name not in GAMES:
            raise argparse.ArgumentTypeError(f"unknown game {name!r}; expected names of {', '.join(GAMES)}")
    return names


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--games", type=games, default=list(GAMES), help=f"comma-separated, of {','.join(GAMES)}")
    p.add_argument("--episodes", type=int, default=3, help="episodes per policy")
    p.add_argument("--epsilon", type=unit_floats, default=[0.0, 0.1], help="noise levels, e.g. 0,0.1")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="agent steps per episode at most")
    p.add_argument("--seed", type=int, default=0, help="env seed of the first episode; also the noise seed")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS} (108 000 frames), got {args.max_steps}")
    check_seeds(args, ("seed",))
    out = []
    for game in args.games:
        out.append(measure(game, args.episodes, args.epsilon, args.max_steps, args.seed))
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    run_main(main)
