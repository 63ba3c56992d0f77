"""Train and evaluate RATE or a baseline on any local Minari dataset with Box or Discrete observations.

    python3 Minari/train_minari.py --minari_dataset mujoco/pen/human-v2 --model_mode RATE
    python3 Minari/train_minari.py --minari_dataset rate/vizdoom/two-colors-v0 --smoke

The dataset is read from Minari's folder (``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``; never
downloaded) into an episode store (``--store_dir``), one episode at a time. Observations: vectors, categories or
uint8 images (``RATE_model.minari_data``); actions: Discrete or a 1-D Box. Evaluation runs in the env Minari
recovers from the dataset (its eval env, else the one it was collected on), on fixed seeds, the return-to-go
starting at ``--target_return`` (default: the dataset's best episode return) and scaled by ``--rtg_scale``
(default: 1 / the largest absolute episode return). Writes runs/minari/<ckpt_folder>/seed_<s>/{config.json,
metrics.jsonl, checkpoints/, results.json}: mean return ± SEM per target, Minari's normalised score where the
dataset has reference scores, and every episode. ``--smoke``: a tiny model, budget and evaluation.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from RATE_model.config import (
    ConfigError,
    add_eval_flags,
    build_parser,
    check_positive,
    float_list,
    parse_with_smoke,
    split_args,
)
from RATE_model.data import WINDOW_STARTS, WINDOW_STARTS_HELP, dt_style, uint8_to_float
from RATE_model.experiment import load_defaults, run_experiment, run_main, run_seeds
from RATE_model.minari_data import (
    encoder_kwargs,
    episode_returns,
    eval_spec,
    minari_store,
    recovered_env,
)
from RATE_model.model import RATE
from RATE_model.rollout import sem, split_seeds
from RATE_model.vector import returns_in_envs

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.yaml"
STORES = HERE / "Minari_data" / "stores"
EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET = 1_000_000, 2_000_000
VALIDATION_EPISODES = 5
DEFAULT_MAX_STEPS = 1000  # evaluation steps of an env that records no time limit

SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, num_mem_tokens=2,
             mem_len=10, epochs=1, batch_size=8, warmup_steps=2, windows_per_epoch=32, eval_episodes=2,
             eval_max_steps=30, val_episodes=2)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over Minari/config.yaml; also returns the flags given explicitly."""
    p = build_parser(__doc__.splitlines()[0], load_defaults(CONFIG))
    g = p.add_argument_group("Minari")
    g.add_argument("--minari_dataset", help="the local Minari dataset id, e.g. mujoco/hopper/medium-v0")
    g.add_argument("--store_dir", type=Path, help="where the episode store goes (default: Minari/Minari_data/"
                                                  "stores/<dataset id>)")
    g.add_argument("--windows_per_epoch", type=int, help="training windows per epoch (default: steps / window)")
    g.add_argument("--window_starts", choices=WINDOW_STARTS, help=WINDOW_STARTS_HELP)
    g.add_argument("--start_seed", type=int, help="first seed run (inclusive)")
    g.add_argument("--end_seed", type=int, help="last seed run (inclusive)")
    g.add_argument("--target_return", type=float_list,
                   help="initial return-to-go, several separated by commas (default: the dataset's best episode "
                        "return)")
    g.add_argument("--rtg_scale", type=float, help="returns-to-go are fed multiplied by this (default: 1 / the "
                                                   "largest absolute episode return)")
    add_eval_flags(g, DEFAULT_MAX_STEPS, batch="episodes stepped together (worker processes; default: all)")
    return parse_with_smoke(p, argv, SMOKE)


def check_args(args: argparse.Namespace) -> None:
    if not args.minari_dataset:
        raise ConfigError("--minari_dataset ID is required (a dataset in $MINARI_DATASETS_PATH or "
                          "~/.minari/datasets, e.g. mujoco/hopper/medium-v0)")
    check_positive(args, ("windows_per_epoch", "rtg_scale", "eval_episodes", "eval_max_steps", "eval_batch_size"))


def evaluate(model: RATE, make_env: Any, n_episodes: int, max_steps: int, targets: tuple[float, ...],
             rtg_scale: float, obs_scale: float, batch_size: int | None = None, split: str = "test",
             normalise: Any = None, progress: bool = True) -> dict[str, Any]:
    """Mean return ± SEM (and ``normalise(returns)`` as ``score``, when given) per target over ``n_episodes``
    fixed seeds of the split, ``batch_size`` (default: all) stepped together; ``episodes`` lists each one."""
    runs = {f"t{target:g}": (target * rtg_scale, False) for target in targets}
    seeds = split_seeds(n_episodes, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)
    seeds, returns = returns_in_envs(model, make_env, seeds, runs, max_steps, rtg_scale, batch_size, obs_scale,
                                     "forkserver", progress=progress)
    metrics: dict[str, Any] = {"episodes_n": n_episodes, "targets": list(targets), "episodes": []}
    for target in targets:
        ret = returns[f"t{target:g}"]
        metrics.update({f"return_t{target:g}": float(ret.mean()), f"return_t{target:g}_sem": sem(ret)})
        if normalise is not None:
            score = np.asarray(normalise(ret), np.float64) * 100
            metrics.update({f"score_t{target:g}": float(score.mean()), f"score_t{target:g}_sem": sem(score)})
        metrics["episodes"] += [{"target": target, "seed": int(s), "return": float(r)}
                                for s, r in zip(seeds, ret, strict=True)]
    return metrics


def selection_score(metrics: dict[str, Any]) -> float:
    """What best-on-validation maximises: the mean return over the targets."""
    return float(np.mean([metrics[f"return_t{t:g}"] for t in metrics["targets"]]))


def reference_scores(dataset: Any) -> Any:
    """Minari's normalised score of the dataset (a function of returns), or None without reference scores."""
    meta = dataset.storage.metadata
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        return None
    import minari

    return partial(minari.get_normalized_score, dataset)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    check_args(args)
    mc, tc = split_args(args, "minari")
    seeds = run_seeds(args, explicit)
    dataset_id = args.minari_dataset
    store_dir = args.store_dir or STORES / dataset_id.replace("/", "__")
    store, dataset, layout = minari_store(dataset_id, store_dir)
    spec = eval_spec(dataset, dataset_id)
    max_steps = args.eval_max_steps or spec.max_episode_steps or DEFAULT_MAX_STEPS
    make_env = partial(recovered_env, spec, layout, args.eval_max_steps)
    make_env().close()  # an env that cannot be built here fails now, in one line, not in a worker after training
    returns = episode_returns(store)
    targets = tuple(args.target_return) if args.target_return else (float(returns.max()),)
    rtg_scale = args.rtg_scale or 1.0 / max(1.0, float(np.abs(returns).max()))
    mc.env_kwargs = encoder_kwargs(layout, store)
    args.text = args.text or f"Minari dataset {dataset_id}"
    args.rtg_scale, args.target_return = rtg_scale, list(targets)  # recorded in the run's config.json
    normalise = reference_scores(dataset)

    def build_stages():
        return [dt_style(store, mc.context_length * mc.sections, args.windows_per_epoch, args.window_starts,
                         rtg_scale=rtg_scale, obs_transform=uint8_to_float if layout.image else None)]

    def evaluate_model(model, split):
        n = args.eval_episodes if split == "test" else args.val_episodes or VALIDATION_EPISODES
        return evaluate(model, make_env, n, max_steps, targets, rtg_scale, 1 / 255 if layout.image else 1.0,
                        args.eval_batch_size, split, normalise)

    return run_experiment(args, "minari", mc, tc, build_stages, evaluate_model, seeds, Path(args.runs_dir or "runs"),
                          selection_score)


if __name__ == "__main__":
    run_main(main)
