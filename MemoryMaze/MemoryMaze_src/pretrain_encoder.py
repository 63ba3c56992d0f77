"""Pretrain the Memory Maze image encoder by behaviour cloning from single frames (``RATE_model.pretrain``),
for ``train_mem_maze.py --init_encoder FILE --freeze_encoder``.

    python3 MemoryMaze/MemoryMaze_src/pretrain_encoder.py --save_encoder runs/memory_maze/encoder_bc.pt

Reads the training data's episode store (the same one training builds and reuses), holds out its last
``--heldout_episodes`` episodes, and prints one JSON line per ``--eval_every`` steps: training loss, held-out
loss and action accuracy, and the accuracy of always taking the most frequent action (a frame-blind floor).
The encoder is built for ``--d_model`` (the sequence model's width: 64 in config.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from MemoryMaze.get_data.collect_data import DATA_DIR
from MemoryMaze.MemoryMaze_src.mem_maze_data import HOW, N_ACTIONS, PATTERN, load_episode
from RATE_model.config import PRECISIONS, ConfigError, OneLineErrorParser, check_positive
from RATE_model.data import folder_store
from RATE_model.encoders import build_encoders, save_encoder
from RATE_model.experiment import run_main, write_json_lines
from RATE_model.precision import describe_precision, resolve_precision
from RATE_model.pretrain import frame_bc
from RATE_model.trainer import resolve_device


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=DATA_DIR, help="episode files (collect_data.py)")
    p.add_argument("--max_episodes", type=int, help="use the first N episode files (default: all)")
    p.add_argument("--heldout_episodes", type=int, default=20, help="the last N of them are held out")
    p.add_argument("--d_model", type=int, default=64, help="encoder output width (the sequence model's d)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval_every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 autocast on a CPU with native bf16, else fp32")
    p.add_argument("--save_encoder", type=Path, required=True, help="write the trained encoder's weights here")
    p.add_argument("--out", type=Path, help="also write the evaluations here, one JSON line each")
    args = p.parse_args(argv)
    check_positive(args, ("max_episodes", "d_model", "steps", "batch_size", "eval_every"))
    if args.heldout_episodes < 0:
        raise ConfigError(f"--heldout_episodes must be >= 0, got {args.heldout_episodes}")
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {args.lr}")
    device = resolve_device(args.device)
    store = folder_store(args.data_dir, load_episode, HOW.format(args.data_dir), args.max_episodes,
                         desc="Memory Maze episode store", pattern=PATTERN)
    if args.heldout_episodes >= store.n_episodes:
        raise ConfigError(f"--heldout_episodes {args.heldout_episodes} leaves none of the {store.n_episodes} "
                          "episodes to train on")
    precision = resolve_precision(args.precision, device)
    print(describe_precision(args.precision, device), flush=True)
    encoder = build_encoders("memory_maze", args.d_model).obs
    _, rows = frame_bc(store, encoder, args.d_model, N_ACTIONS, args.steps, args.batch_size, args.lr,
                       args.heldout_episodes, args.eval_every, args.seed, precision, device)
    info = {"script": "pretrain_encoder.py", "args": {k: str(v) if isinstance(v, Path) else v
                                                      for k, v in vars(args).items()}, "last_evaluation": rows[-1]}
    save_encoder(encoder.cpu(), args.save_encoder, info)
    if args.out:
        write_json_lines(args.out, rows)
    return rows


if __name__ == "__main__":
    run_main(main)
