"""MuJoCo evaluation protocol (SPEC §3): gymnasium's v5 env (``mujoco_env``), deterministic actions (the
Tanh head's output), 10 episodes with fixed seeds stepped together, and per target return both
return-to-go modes, reported separately:

* ``decreasing`` — the return-to-go starts at the target and falls by reward / 1000 each step;
* ``reset`` — the paper's evaluation: it is also restored to the target at every segment start.

Each (mode, target) gives the raw return and D4RL's normalised score (mean ± standard error) under keys
``return_<mode>_t<target>`` / ``score_<mode>_t<target>`` (``..._sem``), and every episode's seed and return.
``ENV`` is MuJoCo's :class:`RATE_model.envs.Environment`: the protocol rebuilt from a run's flags (``--env_id``,
or ``--minari_dataset``, whose env Minari recovers, ``--target_return``, ``--rtg_mode`` and the budget).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import gymnasium as gym
import numpy as np

from MuJoCo.MuJoCo_src.mujoco_env import (
    ENVS,
    GYM_IDS,
    MAX_STEPS,
    RTG_SCALE,
    TARGET_RETURNS,
    dataset_of,
    make_env,
    normalised_score,
    split_name,
)
from RATE_model.config import ConfigError, add_eval_flags, add_target_return_flag, check_eval_flags
from RATE_model.data import DataError
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, play_runs, sem
from RATE_model.vector import GymVectorEnv

RTG_MODES = ("decreasing", "reset")


class MuJoCo(Environment):
    """D4RL's halfcheetah, walker2d and hopper datasets on gymnasium's v5 envs; return and D4RL normalised score
    per target return and return-to-go mode. Evaluation seeds 1 000 000 + i (test), 2 000 000 + i (validation);
    the data generator seeds below them."""

    name, title, package, extra = "mujoco", "MuJoCo (D4RL)", "mujoco", "mujoco"
    train_script = "MuJoCo/train_rate_mujoco_ca.py"
    validation_episodes = 5
    several_targets = True

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("MuJoCo evaluation")
        add_target_return_flag(g, "halfcheetah 6000,12000, walker2d 5000, hopper 3600")
        g.add_argument("--rtg_mode", choices=(*RTG_MODES, "both"),
                       help="evaluation return-to-go: decreasing, reset at every segment start (the paper's), or both")
        add_eval_flags(g, MAX_STEPS)

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        check_eval_flags(args, MAX_STEPS, "the envs' time limit")

    def evaluate(self, model, args, split="test"):
        env = env_of(args.minari_dataset, args.env_id)
        modes = RTG_MODES if args.rtg_mode == "both" else (args.rtg_mode,)
        make = recovered(args.minari_dataset) if args.minari_dataset else None
        return evaluate(model, env, self.episodes(args, split), args.eval_max_steps, args.target_return, modes,
                        args.eval_batch_size, split=split, make=make, memory_noise=self.memory_noise(args, split))

    def selection_score(self, metrics):
        """The mean normalised score over every (mode, target) evaluated."""
        return float(np.mean([metrics[f"score_{m}_t{t:g}"] for t in metrics["targets"] for m in metrics["modes"]]))

    def attention_episode(self, seed, length, args):
        """One episode of the run's env: at most ``length`` steps (default: the run's evaluation limit),
        deterministic actions, the first target return, the run's return-to-go mode (``reset`` for ``both``,
        the paper's)."""
        env = env_of(args.get("minari_dataset"), int(args.get("env_id") or 0))
        steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
        target = (args.get("target_return") or TARGET_RETURNS[env])[0]
        venv = GymVectorEnv(partial(make_env, env), [seed], obs_scale=1.0)
        return Episode(venv, target * RTG_SCALE, steps, reward_scale=RTG_SCALE,
                       reset_rtg_each_segment=args.get("rtg_mode", "reset") != "decreasing", close=venv.close)


ENV = MuJoCo()


def parse_minari_id(dataset_id: str) -> str:
    """The MuJoCo env of a Minari id ``[namespace/]<env>/<name>-vN``."""
    parts = dataset_id.split("/")
    env = parts[-2].lower() if len(parts) >= 2 else ""
    if env not in ENVS:
        raise ConfigError(f"--minari_dataset {dataset_id!r}: its env part must be one of {', '.join(ENVS)} "
                          "(e.g. mujoco/hopper/medium-v0); other datasets train with Minari/train_minari.py")
    return env


def env_of(minari_dataset: str | None, env_id: int) -> str:
    """The run's MuJoCo env: the env part of ``--minari_dataset``, else that of ``--env_id``'s dataset."""
    return parse_minari_id(minari_dataset) if minari_dataset else split_name(dataset_of(env_id))[0]


@lru_cache(maxsize=8)
def _recovered(dataset_id: str, root: str) -> Callable[[], gym.Env] | None:
    from RATE_model.minari_data import eval_spec, layout_of, load, recovered_env

    dataset = load(dataset_id)
    layout = layout_of(dataset.observation_space, dataset.action_space, f"Minari dataset {dataset_id!r}")
    try:
        spec = eval_spec(dataset, dataset_id)
    except DataError:
        print(f"Minari dataset {dataset_id!r} records no env: evaluating on gymnasium's "
              f"{GYM_IDS[parse_minari_id(dataset_id)]}", file=sys.stderr)
        return None
    return partial(recovered_env, spec, layout)


def recovered(dataset_id: str) -> Callable[[], gym.Env] | None:
    """The evaluation-env factory of a Minari dataset (read once per dataset and Minari folder): the env Minari
    recovers from it, or None (gymnasium's v5 env) when the dataset records none."""
    from RATE_model.minari_data import datasets_root

    return _recovered(dataset_id, str(datasets_root()))


def evaluate(model: RATE, env: str, n_episodes: int = 10, max_steps: int = MAX_STEPS,
             targets: tuple[float, ...] | None = None, modes: tuple[str, ...] = RTG_MODES,
             batch_size: int | None = None, progress: bool = True,
             split: str = "test", make: Callable[[], gym.Env] | None = None,
             memory_noise: str = "none") -> dict[str, Any]:
    """Metrics of every (mode, target) over ``n_episodes`` fixed env seeds of the ``split``, ``batch_size``
    (default: all) stepped together in worker processes; ``episodes`` lists every episode. ``make``: the env
    factory (default: gymnasium's v5 env of ``env``; a Minari dataset's own env, for example)."""
    targets = TARGET_RETURNS[env] if targets is None else tuple(targets)
    runs = {f"{mode}_t{target:g}": {"target_return": target * RTG_SCALE, "reward_scale": RTG_SCALE,
                                    "reset_rtg_each_segment": mode == "reset"} for target in targets for mode in modes}
    factory = make or partial(make_env, env)
    out = play_runs(model, lambda seeds: GymVectorEnv(factory, seeds, obs_scale=1.0), ENV.seeds(n_episodes, split),
                    max_steps, runs, batch_size, memory_noise=memory_noise, desc=env if progress else None)
    metrics: dict[str, Any] = {"episodes_n": n_episodes, "targets": list(targets), "modes": list(modes),
                               "episodes": []}
    for target in targets:
        for mode in modes:
            key = f"{mode}_t{target:g}"
            seeds, ret = out[key]["seed"], out[key]["return"]
            score = normalised_score(env, ret)
            metrics.update({f"return_{key}": float(ret.mean()), f"return_{key}_sem": sem(ret),
                            f"score_{key}": float(score.mean()), f"score_{key}_sem": sem(score)})
            metrics["episodes"] += [{"mode": mode, "target": target, "seed": int(s), "return": float(r)}
                                    for s, r in zip(seeds, ret, strict=True)]
    return metrics
