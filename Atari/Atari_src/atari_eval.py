"""Atari evaluation protocol (SPEC §3): the DQN-preprocessed env of ``atari_env.make_env`` (no-op starts,
FIRE at reset, 4-frame stack, rewards not clipped, no terminal on life loss, 108 000 frames at most; Pong 65 000),
actions sampled from the policy with a seeded generator, 10 episodes stepped together; raw return and
gamer-normalised score (mean ± standard error) and every episode's seed and return.

Gamer-normalised score = 100 · (return − random) / (human − random) with the random and human scores of
Mnih et al. 2015 (Nature DQN, Extended Data Table 2), the constants Decision Transformer's Atari table
uses (via Agarwal et al. 2020).

A trained checkpoint on the test episodes at several target returns, and with the most likely action
instead of a sampled one (``--greedy``: how much of a score the sampling costs):

    python3 Atari/Atari_src/atari_eval.py runs/atari/Breakout_RATE/seed_1/checkpoints/last.pt --target_return 90,400
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from Atari.Atari_src.atari_env import MAX_STEPS, make_env
from RATE_model import distributed
from RATE_model.attention import load_model
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, float_list
from RATE_model.experiment import evaluate_targets, run_main
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem, split_seeds
from RATE_model.vector import GymVectorEnv

# Decision Transformer's targets; the RATE paper used 180 on Breakout (pass --target_return 180)
TARGET_RETURNS = {"Breakout": 90.0, "Qbert": 14_000.0, "Seaquest": 1_150.0, "Pong": 20.0}
RANDOM_HUMAN = {"Breakout": (1.7, 30.5), "Qbert": (163.9, 13_455.0), "Seaquest": (68.4, 42_054.7),
                "Pong": (-20.7, 14.6)}
EVAL_SEED_OFFSET = 1_000_000  # evaluation env seeds; the data generator seeds from SeedSequence children
VALIDATION_SEED_OFFSET = 2_000_000  # validation episodes (evaluation during training); never test ones
VALIDATION_EPISODES = 4


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The fixed env seeds of the split (``test`` or ``validation``)."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def selection_score(metrics: dict[str, Any]) -> float:
    """What best-on-validation maximises: the mean return."""
    return float(metrics["return"])


def gamer_normalised(game: str, returns: np.ndarray | float) -> np.ndarray | float:
    """100 · (return − random) / (human − random)."""
    low, high = RANDOM_HUMAN[game]
    return 100.0 * (np.asarray(returns, np.float64) - low) / (high - low)


def attention_episode(seed: int, length: int | None, args: dict[str, Any]) -> Episode:
    """One episode of the run's game for the attention tool: at most ``length`` steps (default: the run's
    evaluation limit), sampled actions, the run's target return."""
    game = args.get("game") or "Breakout"
    steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
    env = GymVectorEnv(partial(make_env, game), [seed])
    target = args.get("target_return")
    return Episode(env, float(TARGET_RETURNS[game] if target is None else target), steps, sample=True,
                   close=env.close)


def evaluate(model: RATE, game: str, n_episodes: int = 10, max_steps: int = MAX_STEPS,
             target_return: float | None = None, batch_size: int | None = None, sample_seed: int = 0,
             progress: bool = True, split: str = "test", greedy: bool = False) -> dict[str, Any]:
    """{"return", "return_sem", "normalised", "normalised_sem", "episodes_n", "target_return",
    "episodes": [{"seed", "return", "steps"}, ...]} over ``n_episodes`` fixed env seeds of the ``split``, ``batch_size``
    (default: all) stepped together in worker processes; actions sampled (``greedy``: the most likely)."""
    target = TARGET_RETURNS[game] if target_return is None else target_return
    seeds = distributed.shard(eval_seeds(n_episodes, split))
    batch_size = batch_size or max(1, len(seeds))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, lengths = [np.zeros(0)], [np.zeros(0, np.int64)]
    show = progress and distributed.is_main()
    for i in tqdm(range(0, len(seeds), batch_size), desc=f"{game} eval batches", disable=not show, leave=False):
        with GymVectorEnv(partial(make_env, game), seeds[i:i + batch_size]) as env:
            res = rollout(model, env, target, max_steps=max_steps, sample=not greedy, generator=gen,
                          progress=f"{game} eval steps" if show else False)
        returns.append(res.returns)
        lengths.append(res.lengths)
    parts = distributed.gather((np.asarray(seeds), np.concatenate(returns), np.concatenate(lengths)))
    seed_all, ret, steps = (np.concatenate([p[j] for p in parts]) for j in range(3))
    norm = gamer_normalised(game, ret)
    return {"return": float(ret.mean()), "return_sem": sem(ret), "normalised": float(norm.mean()),
            "normalised_sem": sem(norm), "episodes_n": len(ret), "target_return": target,
            "episodes": [{"seed": int(s), "return": float(r), "steps": int(n)}
                         for s, r, n in zip(seed_all, ret, steps, strict=True)]}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """One JSON line per target return: the metrics of ``evaluate`` without the episode list (``--out``: with
    it, one JSON line each)."""
    p = OneLineErrorParser(description="Evaluate an Atari checkpoint on the protocol's test episodes",
                           allow_abbrev=False)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--episodes", type=int, default=10, help="test episodes (the first N test seeds)")
    p.add_argument("--max_steps", type=int, default=MAX_STEPS, help="agent steps per episode (4 frames each)")
    p.add_argument("--target_return", type=float_list, help="e.g. 90,400 (default: the run's)")
    p.add_argument("--greedy", action="store_true", help="play the most likely action (the protocol samples)")
    p.add_argument("--batch_size", type=int, help="episodes stepped together (default: all)")
    p.add_argument("--out", type=Path, help="also write every result with its episodes here, one JSON line each")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps", "batch_size"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS} (108 000 frames), got {args.max_steps}")
    model, config = load_model(args.checkpoint)
    run_args = config.get("args") or {}
    if config.get("env") != "atari" or run_args.get("game") not in TARGET_RETURNS:
        raise ConfigError(f"{args.checkpoint} is not an Atari checkpoint")
    game = run_args["game"]
    return evaluate_targets(args.target_return or [run_args.get("target_return")], lambda target: {
        "checkpoint": str(args.checkpoint), "game": game, "greedy": args.greedy,
        **evaluate(model, game, args.episodes, args.max_steps, target, args.batch_size, greedy=args.greedy)}, args.out)


if __name__ == "__main__":
    run_main(main)
