"""Train and evaluate RATE or a baseline on Minigrid-Memory; every Minigrid line of the paper README runs as is.

    python3 MinigridMemory/get_data/collect_traj.py            # once: 10 000 expert episodes on 31x31
    python3 MinigridMemory/MinigridMemory_src/train_minigridmemory.py --model_mode 'RATE' --arch_mode 'TrXL' \
        --ckpt_folder 'RATE' --text 'RATE' --nmt 15 --mem_len 180 --n_head_ca 1 --mrv_act 'relu' --skip_dec_attn

Writes runs/minigrid/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}
and runs/minigrid/<ckpt_folder>/results.json (mean return and success rate per grid size, per seed run).
``--smoke`` collects a tiny dataset into <data_dir>/smoke and runs the whole pipeline in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from MinigridMemory.get_data.collect_traj import collect
from MinigridMemory.MinigridMemory_src.minigrid_data import minigrid_dataset
from MinigridMemory.MinigridMemory_src.minigrid_eval import ENV
from RATE_model.cli import run_main
from RATE_model.config import split_args
from RATE_model.data import episode_files
from RATE_model.experiment import episode_folder, parse_train_args, run_experiment, run_seeds

CONFIG = Path(__file__).with_name("config.yaml")

# --smoke: tiny data (16 episodes on 9x9), model and evaluation; the whole pipeline in seconds on 2 CPU cores.
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32,
             epochs=1, batch_size=8, warmup_steps=5, max_episodes=None, eval_sizes=[7, 9], eval_episodes=4,
             eval_max_steps=30, eval_batch_size=4)
SMOKE_DATA = dict(n_episodes=16, size=9, epsilon=0.1, seed=0)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, positive=("max_episodes",))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "minigrid")
    seeds = run_seeds(args, explicit)
    data_dir = episode_folder(args, lambda d: collect(d, workers=1, progress=False, **SMOKE_DATA), episode_files,
                              f"run python3 MinigridMemory/get_data/collect_traj.py --out_dir {args.data_dir} first")

    def build_stages():
        return [minigrid_dataset(data_dir, mc.context_length * mc.sections, args.max_episodes)]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    run_main(main)
