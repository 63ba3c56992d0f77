"""Train and evaluate RATE or a baseline on Memory Maze 9×9; every Memory Maze line of the paper README runs as is.

    python3 MemoryMaze/get_data/collect_data.py      # once: oracle episodes (the paper: 5 000 × 1 000 steps)
    python3 -W ignore MemoryMaze/MemoryMaze_src/train_mem_maze.py --model_mode 'RATE' --arch_mode 'TrXL' \
        --ckpt_folder 'RATE' --text 'RATE' --nmt 5 --mem_len 300 --n_head_ca 2 --mrv_act 'relu' --skip_dec_attn

Writes runs/memory_maze/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}
(mean return ± standard error over fixed mazes, and every evaluation episode) and
runs/memory_maze/<ckpt_folder>/results.json. ``--smoke`` collects a tiny dataset into <data_dir>/smoke
and runs the whole pipeline in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from MemoryMaze.get_data.collect_data import collect
from MemoryMaze.MemoryMaze_src.mem_maze_data import episode_files, mem_maze_dataset
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV
from RATE_model.cli import run_main
from RATE_model.config import split_args
from RATE_model.experiment import episode_folder, parse_train_args, run_experiment, run_seeds

CONFIG = Path(__file__).with_name("config.yaml")

# --smoke: tiny data (4 episodes of 100 steps; windows with >= 1 reward), model and evaluation
# (2 mazes of 40 steps).
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, mem_len=20,
             epochs=1, batch_size=4, warmup_steps=2, max_episodes=None, window_min_reward=1, eval_episodes=2,
             eval_max_steps=40, eval_batch_size=2)
SMOKE_DATA = dict(n_episodes=4, max_steps=100, epsilon=0.1, seed=0)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, positive=("max_episodes", "window_stride"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "memory_maze")
    seeds = run_seeds(args, explicit)
    data_dir = episode_folder(args, lambda d: collect(d, progress=False, **SMOKE_DATA), episode_files,
                              f"run python3 MemoryMaze/get_data/collect_data.py --out_dir {args.data_dir} first")

    def build_stages():
        return [mem_maze_dataset(data_dir, mc.context_length * mc.sections, args.max_episodes,
                                 args.window_min_reward, stride=args.window_stride)]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    run_main(main)
