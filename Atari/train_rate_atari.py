"""Train and evaluate RATE or a baseline on an Atari game from DQN-replay data; every Atari line of the
paper README runs as is.

    python3 Atari/get_data/collect_replay.py --game Breakout      # once, without the published dataset
    python3 Atari/train_rate_atari.py --game Breakout --num_mem_tokens 15 --mem_len 360 --n_head_ca 1 \\
        --mrv_act 'relu' --skip_dec_ffn --seed 123

Data: ``--data_dir`` (or ``--data_dir_prefix``), else ``atari: data:`` in wandb_config.yaml, else
``Atari/Atari_data`` when collect_replay.py wrote the game there; Decision Transformer's sample of it
(see Atari_src/atari_data.py) is kept in an episode store beside the checkpoints (``--store_dir``).
Writes runs/atari/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}
(raw and gamer-normalised return over 10 episodes, and every episode). ``--smoke`` generates a tiny
dataset into <data root>/smoke and runs the whole pipeline in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from Atari.Atari_src.atari_data import atari_dataset, atari_store, replay_logs
from Atari.Atari_src.atari_env import N_ACTIONS
from Atari.Atari_src.atari_eval import ENV
from Atari.get_data.collect_replay import DATA_DIR, RUN, collect
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, split_args
from RATE_model.data import DataError
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds
from RATE_model.logger import read_wandb_config

CONFIG = Path(__file__).with_name("Atari_src") / "config.yaml"

# --smoke: 2 checkpoints of ~300 transitions (episodes cut at 150 steps), a tiny model, 2 evaluation
# episodes of 60 steps.
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, epochs=1,
             batch_size=8, warmup_steps=2, windows_per_epoch=16, eval_episodes=2, eval_max_steps=60,
             num_steps=400)
SMOKE_DATA = dict(transitions=600, checkpoints=2, max_episode_steps=150, epsilon=0.05, seed=0)


def buffer_list(text: str) -> list[int]:
    """argparse type: checkpoint numbers as ``0-49`` or ``3,7,9``."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            values = list(range(lo, hi + 1))
        else:
            values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected checkpoint numbers like 0-49 or 3,7,9, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative checkpoint numbers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv,
                            positive=("num_steps", "trajectories_per_buffer", "windows_per_epoch"))


def data_root(args: argparse.Namespace) -> Path:
    """Where the DQN-replay folders are: --data_dir, wandb_config.yaml, or our generated folder (see the
    module docstring); under --smoke, a tiny generated dataset."""
    if args.smoke:
        root = Path(args.data_dir or DATA_DIR) / "smoke"
        collect(args.game, root, progress=False, **SMOKE_DATA)
        return root
    if args.data_dir:
        return Path(args.data_dir)
    try:
        configured = (read_wandb_config().get("atari") or {}).get("data")
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"wandb_config.yaml: {e}") from None
    if configured:
        return Path(configured)
    if replay_logs(DATA_DIR, args.game, args.run).is_dir():
        return DATA_DIR
    raise DataError(f"no Atari data for {args.game}: pass --data_dir ROOT (a DQN-replay copy holding "
                    f"ROOT/{args.game}/1/replay_logs), or add `atari: data: ROOT` to wandb_config.yaml, or generate "
                    f"it with python3 Atari/get_data/collect_replay.py --game {args.game} (or try --smoke)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "atari")
    mc.env_kwargs = {"n_actions": N_ACTIONS[args.game]}
    seeds = run_seeds(args, explicit)
    root = data_root(args)
    run = RUN if args.smoke else args.run

    def build_stages():
        store = atari_store(root, args.game, run, args.buffers, args.num_steps, args.trajectories_per_buffer,
                            seed=args.data_seed, store_dir=args.store_dir)
        data = atari_dataset(store, mc.context_length * mc.sections, args.windows_per_epoch or store.n_steps,
                             args.window_starts)
        return [data]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    run_main(main)
