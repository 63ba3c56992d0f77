"""MuJoCo evaluation protocol (SPEC §3): gymnasium's v5 env (``mujoco_env``), deterministic actions (the
Tanh head's output), 10 episodes with fixed seeds stepped together, and per target return both
return-to-go modes, reported separately:

* ``decreasing`` — the return-to-go starts at the target and falls by reward / 1000 each step;
* ``reset`` — the paper's evaluation: it is also restored to the target at every segment start.

Each (mode, target) gives the raw return and D4RL's normalised score (mean ± standard error) under keys
``return_<mode>_t<target>`` / ``score_<mode>_t<target>`` (``..._sem``), and every episode's seed and return.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from MuJoCo.MuJoCo_src.mujoco_env import (
    MAX_STEPS,
    RTG_SCALE,
    TARGET_RETURNS,
    dataset_of,
    make_env,
    normalised_score,
    split_name,
)
from RATE_model.model import RATE
from RATE_model.rollout import Episode, sem, split_seeds
from RATE_model.vector import GymVectorEnv, returns_in_envs

RTG_MODES = ("decreasing", "reset")
EVAL_SEED_OFFSET = 1_000_000  # evaluation env seeds; the data generator uses seeds below it
VALIDATION_SEED_OFFSET = 2_000_000  # validation episodes (evaluation during training); never test ones
VALIDATION_EPISODES = 5


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The fixed env seeds of the split (``test`` or ``validation``)."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def selection_score(metrics: dict[str, Any]) -> float:
    """What best-on-validation maximises: the mean normalised score over every (mode, target) evaluated."""
    return float(np.mean([metrics[f"score_{m}_t{t:g}"] for t in metrics["targets"] for m in metrics["modes"]]))


def attention_episode(seed: int, length: int | None, args: dict[str, Any]) -> Episode:
    """One episode of the run's env for the attention tool: at most ``length`` steps (default: the run's
    evaluation limit), deterministic actions, the first target return, the run's return-to-go mode
    (``reset`` for ``both``, the paper's)."""
    env = split_name(dataset_of(int(args.get("env_id") or 0)))[0]
    steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
    target = (args.get("target_return") or TARGET_RETURNS[env])[0]
    venv = GymVectorEnv(partial(make_env, env), [seed], obs_scale=1.0)
    return Episode(venv, target * RTG_SCALE, steps, reward_scale=RTG_SCALE,
                   reset_rtg_each_segment=args.get("rtg_mode", "reset") != "decreasing", close=venv.close)


def evaluate(model: RATE, env: str, n_episodes: int = 10, max_steps: int = MAX_STEPS,
             targets: tuple[float, ...] | None = None, modes: tuple[str, ...] = RTG_MODES,
             batch_size: int | None = None, progress: bool = True,
             split: str = "test", make: Callable[[], gym.Env] | None = None) -> dict[str, Any]:
    """Metrics of every (mode, target) over ``n_episodes`` fixed env seeds of the ``split``, ``batch_size``
    (default: all) stepped together in worker processes; ``episodes`` lists every episode. ``make``: the env
    factory (default: gymnasium's v5 env of ``env``; a Minari dataset's own env, for example)."""
    targets = TARGET_RETURNS[env] if targets is None else tuple(targets)
    runs = {f"{mode}_t{target:g}": (target * RTG_SCALE, mode == "reset") for target in targets for mode in modes}
    seeds, returns = returns_in_envs(model, make or partial(make_env, env), eval_seeds(n_episodes, split), runs,
                                     max_steps, RTG_SCALE, batch_size, desc=env, progress=progress)
    metrics: dict[str, Any] = {"episodes_n": n_episodes, "targets": list(targets), "modes": list(modes),
                               "episodes": []}
    for target in targets:
        for mode in modes:
            key = f"{mode}_t{target:g}"
            ret = returns[key]
            score = normalised_score(env, ret)
            metrics.update({f"return_{key}": float(ret.mean()), f"return_{key}_sem": sem(ret),
                            f"score_{key}": float(score.mean()), f"score_{key}_sem": sem(score)})
            metrics["episodes"] += [{"mode": mode, "target": target, "seed": int(s), "return": float(r)}
                                    for s, r in zip(seeds, ret, strict=True)]
    return metrics
