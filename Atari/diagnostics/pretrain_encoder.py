"""Pretrain the Atari image encoder by behaviour cloning from single 4-frame stacks (``RATE_model.pretrain``),
for ``train_rate_atari.py --init_encoder FILE --freeze_encoder``; its held-out accuracy also measures how
much of the data's policy one observation determines.

    python3 Atari/diagnostics/pretrain_encoder.py --game Breakout --save_encoder runs/atari/Breakout_encoder.pt

Reads the training data's episode store (the one ``train_rate_atari.py`` builds and reuses: the same data
flags and config.yaml defaults), holds out its last ``--heldout_episodes`` episodes, and prints one JSON line
per ``--eval_every`` steps: training loss, held-out loss and action accuracy, and the accuracy of always
taking the most frequent action (a frame-blind floor). The encoder is built for ``--d_model`` (the sequence
model's width).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from Atari.Atari_src.atari_data import FRAME_STACK, atari_store
from Atari.Atari_src.atari_env import GAMES, N_ACTIONS
from Atari.train_rate_atari import CONFIG, buffer_list, data_root
from RATE_model.cli import load_defaults, run_main
from RATE_model.config import OneLineErrorParser, check_positive
from RATE_model.pretrain import add_pretrain_flags, check_pretrain_flags, pretrain


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    defaults = load_defaults(CONFIG)
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument("--game", choices=GAMES, required=True)
    p.add_argument("--data_dir", "--data_dir_prefix", dest="data_dir", type=Path,
                   help="DQN-replay root holding <Game>/<run>/replay_logs (default: as train_rate_atari.py)")
    p.add_argument("--store_dir", type=Path, help="the episode store (default: as train_rate_atari.py)")
    p.add_argument("--run", default=defaults["run"], help="run folder inside <Game>/")
    p.add_argument("--buffers", type=buffer_list, default=defaults["buffers"], help="checkpoints to draw from")
    p.add_argument("--num_steps", type=int, default=defaults["num_steps"], help="transitions sampled")
    p.add_argument("--trajectories_per_buffer", type=int, default=defaults["trajectories_per_buffer"])
    p.add_argument("--data_seed", type=int, default=defaults["data_seed"], help="seed of the trajectory sample")
    add_pretrain_flags(p, heldout_episodes=10, d_model=defaults["d_model"])
    args = p.parse_args(argv)
    check_positive(args, ("num_steps", "trajectories_per_buffer"))
    check_pretrain_flags(args)
    args.smoke = False
    store = atari_store(data_root(args), args.game, args.run, args.buffers, args.num_steps,
                        args.trajectories_per_buffer, seed=args.data_seed, store_dir=args.store_dir)
    return pretrain(args, store, "atari", N_ACTIONS[args.game], "pretrain_encoder.py", frame_stack=FRAME_STACK,
                    env_kwargs={"n_actions": N_ACTIONS[args.game]})


if __name__ == "__main__":
    run_main(main)
