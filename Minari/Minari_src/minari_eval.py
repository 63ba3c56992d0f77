"""Minari evaluation protocol: any local Minari dataset's model played in the env Minari recovers from the dataset
(its eval env, else the one it was collected on), on fixed seeds (test 1 000 000 + i, validation 2 000 000 + i),
batches of episodes stepped together in worker processes. Per target return (the return-to-go restored never,
falling by reward × ``rtg_scale`` each step): mean return ± SEM under ``return_t<target>``, Minari's normalised
score (× 100) under ``score_t<target>`` where the dataset has reference scores, and every episode.

``ENV`` is Minari's :class:`RATE_model.envs.Environment`. Its protocol is rebuilt from the run's flags alone: the
env from ``--minari_dataset`` (read once per dataset), the targets and the return-to-go scale from
``--target_return`` and ``--rtg_scale``, which ``Minari/train_minari.py`` records after deriving their defaults
from the data (the dataset's best episode return, 1 / the largest absolute one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import gymnasium as gym
import numpy as np

from RATE_model.config import ConfigError, add_eval_flags, add_target_return_flag
from RATE_model.envs import Environment
from RATE_model.minari_data import Layout, datasets_root, eval_spec, layout_of, load, recovered_env
from RATE_model.model import RATE
from RATE_model.rollout import Episode, play_runs, sem
from RATE_model.vector import GymVectorEnv

DEFAULT_MAX_STEPS = 1000  # evaluation steps of an env that records no time limit


class Minari(Environment):
    """Any local Minari dataset with Box or Discrete spaces, evaluated in its recovered env."""

    name, title, package, extra = "minari", "Minari dataset", "minari", "minari"
    train_script = "Minari/train_minari.py"
    validation_episodes = 5
    several_targets = True

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("Minari evaluation")
        add_target_return_flag(g, "the dataset's best episode return")
        add_eval_flags(g, DEFAULT_MAX_STEPS, batch="episodes stepped together (worker processes; default: all)")

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        if not args.minari_dataset:
            raise ConfigError("--minari_dataset ID is required (a dataset in $MINARI_DATASETS_PATH or "
                              "~/.minari/datasets, e.g. mujoco/hopper/medium-v0)")

    def evaluate(self, model, args, split="test"):
        dataset, spec, layout = recovered(args.minari_dataset)
        max_steps = args.eval_max_steps or spec.max_episode_steps or DEFAULT_MAX_STEPS
        make_env = partial(recovered_env, spec, layout, args.eval_max_steps)
        return evaluate(model, make_env, self.episodes(args, split), max_steps, tuple(args.target_return),
                        args.rtg_scale, 1 / 255 if layout.image else 1.0, args.eval_batch_size, split,
                        reference_scores(dataset), memory_noise=self.memory_noise(args, split))

    def selection_score(self, metrics):
        """The mean return over the targets."""
        return float(np.mean([metrics[f"return_t{t:g}"] for t in metrics["targets"]]))

    def attention_episode(self, seed, length, args):
        """One episode of the recovered env on seed ``seed``, at most ``length`` steps (default: the evaluation
        limit), the run's first target return; no cue step is marked."""
        _, spec, layout = recovered(args["minari_dataset"])
        steps = length or args.get("eval_max_steps") or spec.max_episode_steps or DEFAULT_MAX_STEPS
        venv = GymVectorEnv(partial(recovered_env, spec, layout, steps), [seed], obs_scale=1 / 255 if layout.image
                            else 1.0, context="forkserver")
        return Episode(venv, args["target_return"][0] * args["rtg_scale"], steps, reward_scale=args["rtg_scale"],
                       close=venv.close)


ENV = Minari()


@lru_cache(maxsize=8)
def _recovered(dataset_id: str, root: str) -> tuple[Any, gym.envs.registration.EnvSpec, Layout]:
    dataset = load(dataset_id)
    layout = layout_of(dataset.observation_space, dataset.action_space, f"Minari dataset {dataset_id!r}")
    return dataset, eval_spec(dataset, dataset_id), layout


def recovered(dataset_id: str) -> tuple[Any, gym.envs.registration.EnvSpec, Layout]:
    """The local dataset ``dataset_id``, the spec of the env Minari recovers from it and the stored layout (read
    once per dataset and Minari folder); a DataError when the dataset is missing or records no env."""
    return _recovered(dataset_id, str(datasets_root()))


def reference_scores(dataset: Any) -> Callable[[np.ndarray], Any] | None:
    """Minari's normalised score of the dataset (a function of returns), or None without reference scores."""
    meta = dataset.storage.metadata
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        return None
    import minari

    return partial(minari.get_normalized_score, dataset)


def evaluate(model: RATE, make_env: Callable[[], gym.Env], n_episodes: int, max_steps: int,
             targets: tuple[float, ...], rtg_scale: float, obs_scale: float, batch_size: int | None = None,
             split: str = "test", normalise: Callable[[np.ndarray], Any] | None = None,
             progress: bool = True, memory_noise: str = "none") -> dict[str, Any]:
    """Mean return ± SEM (and ``normalise(returns)`` as ``score``, when given) per target over ``n_episodes``
    fixed seeds of the split, ``batch_size`` (default: all) stepped together; ``episodes`` lists each one."""
    runs = {f"t{target:g}": {"target_return": target * rtg_scale, "reward_scale": rtg_scale} for target in targets}
    out = play_runs(model, lambda seeds: GymVectorEnv(make_env, seeds, obs_scale=obs_scale, context="forkserver"),
                    ENV.seeds(n_episodes, split), max_steps, runs, batch_size, memory_noise=memory_noise,
                    desc="eval" if progress else None)
    metrics: dict[str, Any] = {"episodes_n": n_episodes, "targets": list(targets), "episodes": []}
    for target in targets:
        seeds, ret = out[f"t{target:g}"]["seed"], out[f"t{target:g}"]["return"]
        metrics.update({f"return_t{target:g}": float(ret.mean()), f"return_t{target:g}_sem": sem(ret)})
        if normalise is not None:
            score = np.asarray(normalise(ret), np.float64) * 100
            metrics.update({f"score_t{target:g}": float(score.mean()), f"score_t{target:g}_sem": sem(score)})
        metrics["episodes"] += [{"target": target, "seed": int(s), "return": float(r)}
                                for s, r in zip(seeds, ret, strict=True)]
    return metrics
