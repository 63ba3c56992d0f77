"""Train and evaluate RATE or a baseline on Passive T-Maze; every T-Maze line of the paper README runs as is.

    python3 TMaze_new/TMaze_new_src/train_tmaze.py --model_mode 'RATE' --arch_mode 'TrXL' --curr 'false' \
        --ckpt_folder 'RATE_max_3' --max_n_final 3 --text 'RATE_max_3' --nmt 5 --mem_len 0 \
        --n_head_ca 4 --mrv_act 'relu' --skip_dec_attn

Writes runs/tmaze/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}
and runs/tmaze/<ckpt_folder>/results.json (success rate per corridor length, per seed run).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from RATE_model.cli import run_main
from RATE_model.config import ConfigError, split_args, str2bool
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds
from TMaze_new.TMaze_new_src.tmaze_data import DATA_DIR, stage_segment_counts, tmaze_dataset
from TMaze_new.TMaze_new_src.tmaze_eval import ENV

CONFIG = Path(__file__).with_name("config.yaml")

# --smoke: the whole pipeline (data, training, evaluation) in well under a minute on 2 CPU cores.
SMOKE = dict(context_length=5, max_n_final=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32,
             epochs=1, batch_size=32, warmup_steps=5, trajectories_per_side=40, eval_lengths=[10, 20],
             eval_episodes=10)


def data_flags(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("T-Maze")
    t.add_argument("--curr", type=str2bool, help="curriculum over N = min_n_final..max_n_final ('true'/'false')")
    t.add_argument("--max_n_final", type=int, help="longest training corridor in segments (N)")
    t.add_argument("--min_n_final", type=int, help="shortest training corridor in segments")
    t.add_argument("--trajectories_per_side", type=int, help="oracle trajectories per goal side and N")
    t.add_argument("--data_dir", type=Path, default=DATA_DIR, help="dataset cache folder")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly. On T-Maze N is
    --max_n_final; --sections is its alias."""
    args, explicit = parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, data_flags,
                                      positive=("trajectories_per_side",))
    if "sections" in explicit:
        if "max_n_final" in explicit and args.sections != args.max_n_final:
            raise ConfigError(f"--sections {args.sections} contradicts --max_n_final {args.max_n_final} "
                              "(both set N on T-Maze)")
        args.max_n_final = args.sections
    if not 1 <= args.min_n_final <= args.max_n_final:
        raise ConfigError(f"need 1 <= --min_n_final ({args.min_n_final}) <= --max_n_final ({args.max_n_final})")
    args.sections = args.max_n_final
    return args, explicit


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "tmaze")

    def build_stages():
        counts = stage_segment_counts(args.min_n_final, args.max_n_final, args.curr)
        return [tmaze_dataset(mc.context_length, c, args.max_n_final, args.trajectories_per_side, args.data_dir)
                for c in counts]

    return run_experiment(args, ENV, mc, tc, build_stages, run_seeds(args, explicit))


if __name__ == "__main__":
    run_main(main)
