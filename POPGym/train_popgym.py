"""Train and evaluate RATE or a baseline on one POPGym task.

    python3 POPGym/get_data/gen_popgym_data.py --tasks easy                # once: expert episodes
    python3 POPGym/train_popgym.py --task popgym-RepeatFirstEasy-v0 --model_mode RATE
    python3 POPGym/train_popgym.py --task popgym-CountRecallEasy-v0 --model_mode BC_LSTM --seed 2

Defaults: POPGym_src/config.yaml, then the flags. Data: the task's folder under ``--data_dir``
(``<data_dir>/popgym-<Task>-v0/train_data_{i}.npz``, the paper's layout).
Writes runs/popgym/<ckpt_folder: <task>/<model_mode>>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}:
mean return ± SEM over 100 fixed test seeds (every episode in results.json). ``--smoke`` makes 16 expert
episodes into <data_dir>/smoke and runs the whole pipeline in seconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from POPGym.get_data.gen_popgym_data import DATA_DIR, generate
from POPGym.POPGym_src.popgym_data import popgym_dataset, popgym_store, real_stats
from POPGym.POPGym_src.popgym_env import parse_task, task_spec
from POPGym.POPGym_src.popgym_eval import ENV
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, add_episode_data_flags, split_args
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds

HERE = Path(__file__).resolve().parent / "POPGym_src"
CONFIG = HERE / "config.yaml"

# --smoke: 16 expert episodes, a tiny model, one epoch, 4 evaluation episodes.
SMOKE = dict(sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, num_mem_tokens=2, n_head_ca=1,
             epochs=1, batch_size=8, warmup_steps=5, max_episodes=None, eval_episodes=4, val_episodes=4)
SMOKE_EPISODES = 16


def task_arg(text: str) -> str:
    """argparse type of ``--task``: one of POPGym's 48 task ids (the error names the known ones)."""
    try:
        parse_task(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def data_flags(p: argparse.ArgumentParser) -> None:
    g = add_episode_data_flags(p, "POPGym", DATA_DIR, "gen_popgym_data.py (one folder per task inside)")
    g.add_argument("--task", type=task_arg, metavar="popgym-<Task>-v0", help="one of POPGym's 48 task ids")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, data_flags, positive=("max_episodes",))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    if args.context_length < 0:
        raise ConfigError(f"--context_length must be >= 1 (or 0: a third of the longest episode), got "
                          f"{args.context_length}")
    auto_k = args.context_length == 0
    if auto_k:
        args.context_length = 1  # replaced below, once the episodes are read
    mc, tc = split_args(args, "popgym")
    seeds = run_seeds(args, explicit)
    spec = task_spec(args.task)
    root = Path(args.data_dir) / ("smoke" if args.smoke else "")
    if args.smoke:
        generate([args.task], SMOKE_EPISODES, root, workers=1, progress=False)
    store = popgym_store(root / args.task, spec, args.max_episodes)
    if auto_k:
        mc.context_length = args.context_length = math.ceil(int(store.lengths.max()) / mc.sections)
    mc.env_kwargs = {**spec.env_kwargs(), **real_stats(store, spec)}  # reals standardised with the data's stats
    mc.validate()
    if not args.ckpt_folder:  # runs/popgym/<task>/<model_mode>
        args.ckpt_folder = f"{args.task}/{mc.model_mode}"
    return run_experiment(args, ENV, mc, tc, lambda: [popgym_dataset(store, mc.context_length * mc.sections)], seeds)


if __name__ == "__main__":
    run_main(main)
