"""Train and evaluate RATE or a baseline on ViZDoom-Two-Colors; every ViZDoom line of the paper README runs as is.

    python3 VizDoom/get_data/generate_iter_data.py     # once: 5 000 expert episodes of 90 steps
    python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'RATE' --arch_mode 'TrXL' --ckpt_folder 'RATE' \
        --text 'RATE' --nmt 5 --mem_len 300 --n_head_ca 2 --mrv_act 'relu' --skip_dec_attn

Writes runs/vizdoom/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}
(mean return overall and per pillar colour, and every evaluation episode) and
runs/vizdoom/<ckpt_folder>/results.json. ``--smoke`` generates a tiny dataset into <data_dir>/smoke
and runs the whole pipeline in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from RATE_model.cli import run_main
from RATE_model.config import split_args
from RATE_model.data import episode_files
from RATE_model.experiment import episode_folder, parse_train_args, run_experiment, run_seeds
from VizDoom.get_data.generate_iter_data import collect
from VizDoom.VizDoom_src.vizdoom_data import vizdoom_dataset
from VizDoom.VizDoom_src.vizdoom_eval import ENV

CONFIG = Path(__file__).with_name("config.yaml")

# --smoke: tiny data (12 episodes of 20 steps), model and evaluation (4 episodes of 60 steps).
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, mem_len=20,
             epochs=1, batch_size=4, warmup_steps=2, max_episodes=None, eval_episodes=4, eval_max_steps=60,
             eval_batch_size=4)
SMOKE_DATA = dict(n_episodes=12, n_steps=20, seed=0)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, positive=("max_episodes",))


def mark_colour(data_dir: Path) -> bool:
    """Whether the data was made with the colour marker (its meta.json): evaluation then shows it too."""
    meta = data_dir / "meta.json"
    return bool(json.loads(meta.read_text()).get("mark_colour")) if meta.exists() else False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "vizdoom")
    seeds = run_seeds(args, explicit)
    data_dir = episode_folder(args, lambda d: collect(d, workers=1, progress=False, **SMOKE_DATA), episode_files,
                              f"run python3 VizDoom/get_data/generate_iter_data.py --out_dir {args.data_dir} first "
                              "(or the notebook VizDoom/VizDoom_notebooks/generate_iter_data.ipynb)")
    args.mark_colour = mark_colour(data_dir)  # recorded with the run's flags: ENV.evaluate reads it

    def build_stages():
        return [vizdoom_dataset(data_dir, mc.context_length * mc.sections, args.max_episodes)]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    run_main(main)
