"""Train and evaluate RATE or a baseline on any local Minari dataset with Box or Discrete observations.

    python3 Minari/train_minari.py --minari_dataset mujoco/pen/human-v2 --model_mode RATE
    python3 Minari/train_minari.py --minari_dataset rate/vizdoom/two-colors-v0 --smoke

The dataset is read from Minari's folder (``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``; never
downloaded) into an episode store (``--store_dir``), one episode at a time. Observations: vectors, categories or
uint8 images (``RATE_model.minari_data``); actions: Discrete or a 1-D Box. Evaluation (``Minari_src/minari_eval.py``)
runs in the env Minari recovers from the dataset (its eval env, else the one it was collected on), on fixed seeds,
the return-to-go starting at ``--target_return`` (default: the dataset's best episode return) and scaled by
``--rtg_scale`` (default: 1 / the largest absolute episode return); both are recorded with the run. Writes
runs/minari/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}: mean return ± SEM per
target, Minari's normalised score where the dataset has reference scores, and every episode. ``--smoke``: a tiny
model, budget and evaluation.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from Minari.Minari_src.minari_eval import ENV, recovered
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, add_store_flags, split_args
from RATE_model.data import dt_style, uint8_to_float
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds
from RATE_model.minari_data import encoder_kwargs, episode_returns, minari_store, recovered_env

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "Minari_src" / "config.yaml"
STORES = HERE / "Minari_data" / "stores"

SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, num_mem_tokens=2,
             mem_len=10, epochs=1, batch_size=8, warmup_steps=2, windows_per_epoch=32, eval_episodes=2,
             eval_max_steps=30, val_episodes=2)


def data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Minari")
    g.add_argument("--minari_dataset", help="the local Minari dataset id, e.g. mujoco/hopper/medium-v0")
    add_store_flags(g, "Minari/Minari_data/stores/<dataset id>", "steps / window")
    g.add_argument("--rtg_scale", type=float, help="returns-to-go are fed multiplied by this (default: 1 / the "
                                                   "largest absolute episode return)")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over Minari/Minari_src/config.yaml, checked; also returns the flags given explicitly."""
    args, explicit = parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, data_flags, positive=("windows_per_epoch",))
    if args.rtg_scale is not None and not (math.isfinite(args.rtg_scale) and args.rtg_scale > 0):
        raise ConfigError(f"--rtg_scale must be a positive number, got {args.rtg_scale}")
    return args, explicit


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "minari")
    seeds = run_seeds(args, explicit)
    dataset_id = args.minari_dataset
    store, _, layout = minari_store(dataset_id, args.store_dir or STORES / dataset_id.replace("/", "__"))
    _, spec, _ = recovered(dataset_id)  # the evaluation env: one that cannot be built here fails now, in one line
    recovered_env(spec, layout, args.eval_max_steps).close()
    returns = episode_returns(store)
    # the protocol's settings derived from the data, recorded in the run's config.json for ENV.evaluate
    args.target_return = list(args.target_return or (float(returns.max()),))
    args.rtg_scale = args.rtg_scale or 1.0 / max(1.0, float(np.abs(returns).max()))
    mc.env_kwargs = encoder_kwargs(layout, store)
    args.text = args.text or f"Minari dataset {dataset_id}"

    def build_stages():
        return [dt_style(store, mc.context_length * mc.sections, args.windows_per_epoch, args.window_starts,
                         rtg_scale=args.rtg_scale, obs_transform=uint8_to_float if layout.image else None)]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    run_main(main)
