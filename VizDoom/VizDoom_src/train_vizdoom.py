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

from RATE_model.config import (
    ConfigError,
    add_episode_data_flags,
    build_parser,
    check_positive,
    parse_with_smoke,
    split_args,
)
from RATE_model.data import episode_files
from RATE_model.experiment import episode_folder, load_defaults, run_experiment, run_main, run_seeds
from VizDoom.get_data.generate_iter_data import DATA_DIR, collect
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_data import COLOURS, vizdoom_dataset
from VizDoom.VizDoom_src.vizdoom_env import MAX_TIMEOUT
from VizDoom.VizDoom_src.vizdoom_eval import VALIDATION_EPISODES, evaluate, selection_score

CONFIG = Path(__file__).with_name("config.yaml")

# --smoke: tiny data (12 episodes of 20 steps), model and evaluation (4 episodes of 60 steps).
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, mem_len=20,
             epochs=1, batch_size=4, warmup_steps=2, max_episodes=None, eval_episodes=4, eval_timeout=60,
             eval_batch_size=4)
SMOKE_DATA = dict(n_episodes=12, n_steps=20, seed=0)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults; also returns the flags given explicitly."""
    p = build_parser(__doc__.splitlines()[0], load_defaults(CONFIG))
    g = add_episode_data_flags(p, "ViZDoom-Two-Colors", DATA_DIR, "generate_iter_data.py")
    g.add_argument("--eval_episodes", type=int, help="fixed evaluation episodes (colours alternate)")
    g.add_argument("--eval_timeout", type=int, help="steps per evaluation episode")
    g.add_argument("--eval_batch_size", type=int, help="episodes stepped together (one worker process each)")
    g.add_argument("--target_return", type=float, help="initial return-to-go at evaluation")
    g.add_argument("--eval_pillar_tics", type=int, help="tics the pillar stands at evaluation (reference: 45)")
    g.add_argument("--colour_curriculum", choices=COLOURS,
                   help="train first on the episodes of this pillar colour only (a stage of --epochs epochs), "
                        "then on all: the item colour is learned before the choice between colours")
    g.add_argument("--choice_weight", type=float, default=1.0,
                   help="loss weight of the steps where the expert chooses its next item (colour-dependent, right "
                        "after a pickup: ~2 %% of the steps, the only ones the trajectory does not give away); "
                        "needs the data's colour_dependent field (default 1: the plain loss)")
    return parse_with_smoke(p, argv, SMOKE)


def check_args(args: argparse.Namespace) -> None:
    """ViZDoom flag values that cannot work."""
    check_positive(args, ("eval_episodes", "eval_timeout", "eval_batch_size", "max_episodes"))
    if not args.choice_weight > 0:
        raise ConfigError(f"--choice_weight must be > 0, got {args.choice_weight}")
    if args.eval_timeout is not None and args.eval_timeout > MAX_TIMEOUT:
        raise ConfigError(f"--eval_timeout must be <= {MAX_TIMEOUT} (the engine's own episode limit), "
                          f"got {args.eval_timeout}")
    try:
        ScenarioConfig(pillar_tics=args.eval_pillar_tics)
    except ValueError as e:
        raise ConfigError(f"--eval_pillar_tics: {e}") from None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    check_args(args)
    mc, tc = split_args(args, "vizdoom")
    seeds = run_seeds(args, explicit)
    data_dir = episode_folder(args, lambda d: collect(d, workers=1, progress=False, **SMOKE_DATA), episode_files,
                              f"run python3 VizDoom/get_data/generate_iter_data.py --out_dir {args.data_dir} first "
                              "(or the notebook VizDoom/VizDoom_notebooks/generate_iter_data.ipynb)")

    meta = data_dir / "meta.json"  # data made with the colour marker is evaluated with it
    mark_colour = bool(json.loads(meta.read_text()).get("mark_colour")) if meta.exists() else False

    def build_stages():
        window = mc.context_length * mc.sections
        first = [vizdoom_dataset(data_dir, window, args.max_episodes, colour=args.colour_curriculum,
                                 choice_weight=args.choice_weight)] if args.colour_curriculum else []
        return [*first, vizdoom_dataset(data_dir, window, args.max_episodes, choice_weight=args.choice_weight)]

    def evaluate_model(model, split):
        n = args.eval_episodes if split == "test" else args.val_episodes or VALIDATION_EPISODES
        return evaluate(model, n, args.eval_timeout, args.eval_batch_size, args.target_return,
                        scenario=ScenarioConfig(pillar_tics=args.eval_pillar_tics), split=split,
                        mark_colour=mark_colour)

    return run_experiment(args, "vizdoom", mc, tc, build_stages, evaluate_model, seeds,
                          Path(args.runs_dir or "runs"), selection_score)


if __name__ == "__main__":
    run_main(main)
