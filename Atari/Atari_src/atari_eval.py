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

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from Atari.Atari_src.atari_data import FRAME_STACK, atari_store
from Atari.Atari_src.atari_env import GAMES, MAX_STEPS, N_ACTIONS, make_env
from Atari.Atari_src.expert import make_policy, play_episode
from RATE_model.config import (
    ConfigError,
    add_eval_flags,
    add_store_flags,
    add_target_return_flag,
    check_eval_flags,
    check_positive,
)
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.pretrain import Frames
from RATE_model.rollout import Episode, play_seeds, sem
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
             progress: bool = True, split: str = "test", greedy: bool = False,
             memory_noise: str = "none") -> dict[str, Any]:
    """{"return", "return_sem", "normalised", "normalised_sem", "episodes_n", "target_return",
    "episodes": [{"seed", "return", "steps"}, ...]} over ``n_episodes`` fixed env seeds of the ``split``, ``batch_size``
    (default: all) stepped together in worker processes; actions sampled (``greedy``: the most likely)."""
    target = TARGET_RETURNS[game] if target_return is None else target_return
    res = play_seeds(model, lambda seeds: GymVectorEnv(partial(make_env, game), seeds), ENV.seeds(n_episodes, split),
                     target, max_steps, batch_size, sample=not greedy, sample_seed=sample_seed,
                     memory_noise=memory_noise, desc=game if progress else None)
    ret = res["return"]
    norm = gamer_normalised(game, ret)
    return {"return": float(ret.mean()), "return_sem": sem(ret), "normalised": float(norm.mean()),
            "normalised_sem": sem(norm), "episodes_n": len(ret), "target_return": target,
            "episodes": [{"seed": int(s), "return": float(r), "steps": int(n)}
                         for s, r, n in zip(res["seed"], ret, res["length"], strict=True)]}


class Atari(Environment):
    """Atari 2600 (Breakout, Qbert, Seaquest, Pong) from DQN-replay data; raw and gamer-normalised return."""

    name, title, package, extra = "atari", "Atari", "ale-py", "atari"
    train_script = "Atari/train_rate_atari.py"
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
        return evaluate(model, args.game, self.episodes(args, split), args.eval_max_steps, self.target(args),
                        args.eval_batch_size, split=split, greedy=bool(getattr(args, "eval_greedy", None)),
                        memory_noise=self.memory_noise(args, split))

    def default_target(self, args):
        """The game's (:data:`TARGET_RETURNS`)."""
        game = args.get("game") if isinstance(args, dict) else getattr(args, "game", None)
        return float(TARGET_RETURNS[game or "Breakout"])

    def attention_episode(self, seed, length, args):
        """One episode of the run's game: at most ``length`` steps (default: the run's evaluation limit),
        sampled actions, the run's target return."""
        game = args.get("game") or "Breakout"
        steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
        env = GymVectorEnv(partial(make_env, game), [seed])
        return Episode(env, self.target(args), steps, sample=True, close=env.close)

    def add_measure_flags(self, parser):
        parser.add_argument("--game", choices=GAMES, help="the game (default: the train script's, Breakout)")
        parser.add_argument("--epsilon", type=float, default=0.0,
                            help="the scripted policy's share of uniformly random actions")
        parser.add_argument("--data_env", action="store_true",
                            help="play in the data's env (sticky actions 0.25, no no-op starts) instead of the "
                                 "evaluation's")

    def policies(self, args):
        """``scripted``: the game's RAM controller (``expert.make_policy``), each action replaced with
        probability ``--epsilon`` by a uniformly random one; ``random``: uniformly random actions. Both play
        ``--game`` in the evaluation's env (``--data_env``: the data's) for at most ``--eval_max_steps`` agent
        steps, their random draws seeded by the env seed. Extra: ``normalised`` (gamer-normalised return)."""
        game = args.game or "Breakout"
        if not 0.0 <= args.epsilon <= 1.0:
            raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
        max_steps = int(getattr(args, "eval_max_steps", None) or MAX_STEPS)

        def play(seed, scripted):
            env = make_env(game, data=bool(args.data_env))
            try:
                ep = play_episode(env, make_policy(game) if scripted else None, args.epsilon, seed,
                                  np.random.default_rng(seed), max_steps, keep=False)
            finally:
                env.close()
            ret = float(ep["reward"].sum())
            return {"return": ret, "length": len(ep["reward"]), "normalised": float(gamer_normalised(game, ret))}

        return {"scripted": partial(play, scripted=True), "random": partial(play, scripted=False)}

    def add_data_flags(self, parser):
        from Atari.train_rate_atari import buffer_list

        g = parser.add_argument_group("Atari")
        g.add_argument("--game", choices=GAMES)
        g.add_argument("--data_dir", "--data_dir_prefix", dest="data_dir", type=Path,
                       help="DQN-replay root holding <Game>/<run>/replay_logs")
        g.add_argument("--run", help="run folder inside <Game>/ (the reference reads 1)")
        g.add_argument("--buffers", type=buffer_list, help="checkpoints to draw from, e.g. 0-49 (default) or 1,2,3")
        g.add_argument("--num_steps", type=int, help="transitions to sample (Decision Transformer: 500 000)")
        g.add_argument("--trajectories_per_buffer", type=int, help="trajectories taken per checkpoint visit")
        g.add_argument("--data_seed", type=int, help="seed of the trajectory sample")
        add_store_flags(g, "<data_dir>/<Game>/<run>/store_<data_seed>")

    def frames(self, args, data_dir=None, episodes=None):
        """The training data's episode store (Decision Transformer's sample of the data flags' DQN-replay run, as
        the train script builds and reuses it); each step's input is its 4-frame stack, as the models see it."""
        if data_dir is not None:
            raise ConfigError("--heldout_dir: Atari's data is one sample of a DQN-replay run; its last "
                              "--heldout_episodes trajectories are held out")
        from Atari.train_rate_atari import data_root

        check_positive(args, ("num_steps", "trajectories_per_buffer"))
        root = data_root(argparse.Namespace(**{**vars(args), "smoke": False}))
        store = atari_store(root, args.game, args.run, args.buffers, args.num_steps, args.trajectories_per_buffer,
                            seed=args.data_seed, store_dir=args.store_dir)
        return Frames(store, N_ACTIONS[args.game], FRAME_STACK, encoder_kwargs={"n_actions": N_ACTIONS[args.game]})


ENV = Atari()
