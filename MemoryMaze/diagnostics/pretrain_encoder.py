"""Pretrain the Memory Maze image encoder by behaviour cloning from single frames (``RATE_model.pretrain``),
for ``train_mem_maze.py --init_encoder FILE --freeze_encoder``.

    python3 MemoryMaze/diagnostics/pretrain_encoder.py --save_encoder runs/memory_maze/encoder_bc.pt

Reads the training data's episode store (the same one training builds and reuses), holds out its last
``--heldout_episodes`` episodes, and prints one JSON line per ``--eval_every`` steps: training loss, held-out
loss and action accuracy, and the accuracy of always taking the most frequent action (a frame-blind floor).
The encoder is built for ``--d_model`` (the sequence model's width: 64 in config.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from MemoryMaze.get_data.collect_data import DATA_DIR
from MemoryMaze.MemoryMaze_src.mem_maze_data import HOW, N_ACTIONS, PATTERN, load_episode
from RATE_model.cli import run_main
from RATE_model.config import OneLineErrorParser, check_positive
from RATE_model.data import folder_store
from RATE_model.pretrain import add_pretrain_flags, check_pretrain_flags, pretrain


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=DATA_DIR, help="episode files (collect_data.py)")
    p.add_argument("--max_episodes", type=int, help="use the first N episode files (default: all)")
    add_pretrain_flags(p, heldout_episodes=20, d_model=64)
    args = p.parse_args(argv)
    check_positive(args, ("max_episodes",))
    check_pretrain_flags(args)
    store = folder_store(args.data_dir, load_episode, HOW.format(args.data_dir), args.max_episodes,
                         desc="Memory Maze episode store", pattern=PATTERN)
    return pretrain(args, store, "memory_maze", N_ACTIONS, "pretrain_encoder.py")


if __name__ == "__main__":
    run_main(main)
