"""Atari evaluation protocol (SPEC §3) and ``ENV``, Atari's :class:`RATE_model.envs.Environment`: the
DQN-preprocessed env of ``atari_env.make_env`` (no-op starts, FIRE at reset, 4-frame stack, rewards not
clipped, no terminal on life loss, 108 000 frames at most; Pong 65 000), actions sampled from the policy
with a seeded generator, 10 episodes stepped together; raw return and gamer-normalised score (mean ±
standard error) and every episode's seed and return.

Gamer-normalised score = 100 · (return − random) / (human − random) with the random and human scores of
Mnih et al. 2015 (Nature DQN, Extended Data Table 2), the constants Decision Transformer's Atari table
uses (via Agarwal et al. 2020).

A trained checkpoint on the test episodes at several target returns, and with the most likely action
instead of a sampled one (``--eval_greedy``: how much of a score the sampling costs):

    python -m RATE_model.tools.evaluate runs/atari/Breakout_RATE/seed_1/checkpoints/last.pt --target_return 90,400
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from Atari.Atari_src.atari_env import MAX_STEPS, make_env
from RATE_model import distributed
from RATE_model.config import ConfigError, add_eval_flags, add_target_return_flag, check_eval_flags
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem
from RATE_model.vector import GymVectorEnv

# Decision Transformer's targets; the RATE paper used 180 on Breakout (pass --target_return 180)
TARGET_RETURNS = {"Breakout": 90.0, "Qbert": 14_000.0, "Seaquest": 1_150.0, "Pong": 20.0}
RANDOM_HUMAN = {"Breakout": (1.7, 30.5), "Qbert": (163.9, 13_455.0), "Seaquest": (68.4, 42_054.7),
                "Pong": (-20.7, 14.6)}


def gamer_normalised(game: str, returns: np.ndarray | float) -> np.ndarray | float:
    """100 · (return − random) / (human − random)."""
    low, high = RANDOM_HUMAN[game]
    return 100.0 * (np.asarray(returns, np.float64) - low) / (high - low)


def evaluate(model: RATE, game: str, n_episodes: int = 10, max_steps: int = MAX_STEPS,
             target_return: float | None = None, batch_size: int | None = None, sample_seed: int = 0,
             progress: bool = True, split: str = "test", greedy: bool = False) -> dict[str, Any]:
    """{"return", "return_sem", "normalised", "normalised_sem", "episodes_n", "target_return",
    "episodes": [{"seed", "return", "steps"}, ...]} over ``n_episodes`` fixed env seeds of the ``split``, ``batch_size``
    (default: all) stepped together in worker processes; actions sampled (``greedy``: the most likely)."""
    target = TARGET_RETURNS[game] if target_return is None else target_return
    seeds = distributed.shard(ENV.seeds(n_episodes, split))
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


def target_of(args: Any) -> float:
    """The run's one ``--target_return`` (a list of one value; None: the game's, :data:`TARGET_RETURNS`).
    ``args`` is a namespace or a dict of recorded flags; a checkpoint from before the flag took a list
    records a number or None."""
    get = args.get if isinstance(args, dict) else partial(getattr, args)
    t = get("target_return", None)
    if isinstance(t, (list, tuple)):
        t = t[0] if t else None
    return TARGET_RETURNS[get("game", None) or "Breakout"] if t is None else float(t)


def check_one_target(args: Any) -> None:
    """ConfigError unless the run has at most one ``--target_return``: training evaluates one target
    (``tools.evaluate``, which plays several in turn, checks with :meth:`check_eval_flags` alone)."""
    targets = getattr(args, "target_return", None)
    if isinstance(targets, (list, tuple)) and len(targets) > 1:
        raise ConfigError(f"--target_return takes one value in training, got {','.join(map(str, targets))} "
                          "(python -m RATE_model.tools.evaluate CKPT --target_return A,B plays several)")


class Atari(Environment):
    """Atari 2600 (Breakout, Qbert, Seaquest, Pong) from DQN-replay data; raw and gamer-normalised return."""

    name, title, package, extra = "atari", "Atari", "ale-py", "atari"
    train_script = "Atari/train_rate_atari.py"
    test_seed_offset = 1_000_000  # evaluation env seeds; the data generator seeds from SeedSequence children
    validation_seed_offset = 2_000_000  # validation episodes (evaluation during training); never test ones
    validation_episodes = 4

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("Atari evaluation")
        add_eval_flags(g, MAX_STEPS)
        add_target_return_flag(g, ", ".join(f"{k} {v:g}" for k, v in TARGET_RETURNS.items()), several=False)
        g.add_argument("--eval_greedy", action="store_true", default=None,
                       help="play the most likely action (the protocol samples): what the sampling costs")

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        check_eval_flags(args, MAX_STEPS, "108 000 frames")

    def evaluate(self, model, args, split="test"):
        return evaluate(model, args.game, self.episodes(args, split), args.eval_max_steps, target_of(args),
                        args.eval_batch_size, split=split, greedy=bool(getattr(args, "eval_greedy", None)))

    def selection_score(self, metrics):
        """The mean return."""
        return float(metrics["return"])

    def attention_episode(self, seed, length, args):
        """One episode of the run's game: at most ``length`` steps (default: the run's evaluation limit),
        sampled actions, the run's target return."""
        game = args.get("game") or "Breakout"
        steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
        env = GymVectorEnv(partial(make_env, game), [seed])
        return Episode(env, target_of(args), steps, sample=True, close=env.close)


ENV = Atari()
