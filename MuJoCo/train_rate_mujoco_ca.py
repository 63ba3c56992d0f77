"""Train and evaluate RATE or a baseline on a D4RL MuJoCo dataset; the paper README's line runs as is.

    python3 download_d4rl_datasets.py          # D4RL files found locally -> the data folder, or how to generate
    python3 MuJoCo/train_rate_mujoco_ca.py --env_id 0 --number_of_segments 3 --segment_length 20 \\
        --num_mem_tokens 5 --n_head_ca 1 --mrv_act 'relu' --skip_dec_ffn --seed 123

``--env_id`` 0..11 is the paper README's table (0 halfcheetah-medium ... 11 hopper-medium-expert). Data:
``--dataset_file``, else the dataset looked up (file names: MuJoCo_src/mujoco_data.py) in
``--data_dir`` (or ``--data_dir_prefix``), else in ``mujoco: data_dir_prefix:`` of wandb_config.yaml, else
in MuJoCo/MuJoCo_data where the generator writes. It is read once into an episode store (``--store_dir``).
``--minari_dataset mujoco/hopper/medium-v0`` (any local Minari dataset of halfcheetah, hopper or walker2d; never
downloaded) trains on that dataset instead and evaluates in the env Minari recovers from it.
Writes runs/mujoco/<ckpt_folder>/seed_<s>/{config.json, metrics.jsonl, checkpoints/, results.json}: return
and D4RL normalised score over 10 episodes for each target and return-to-go mode, and every episode.
``--smoke`` generates a tiny dataset into <data folder>/smoke and runs the whole pipeline in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from MuJoCo.get_data.generate_d4rl import generate
from MuJoCo.MuJoCo_src.mujoco_data import (
    candidates,
    data_folder,
    find_dataset,
    mujoco_dataset,
    mujoco_store,
    state_stats,
)
from MuJoCo.MuJoCo_src.mujoco_env import DATASETS, DIMS, dataset_of, quiet_old_gym, split_name
from MuJoCo.MuJoCo_src.mujoco_eval import ENV, parse_minari_id, recovered
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, add_store_flags, split_args
from RATE_model.data import DataError
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds
from RATE_model.minari_data import minari_store
from RATE_model.store import EpisodeStore

CONFIG = Path(__file__).with_name("MuJoCo_src") / "config.yaml"

# --smoke: a SAC run of a few hundred steps, 600 transitions of 100-step episodes, a tiny model, 2
# evaluation episodes of 60 steps.
SMOKE = dict(context_length=5, sections=2, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, epochs=1,
             batch_size=16, warmup_steps=2, windows_per_epoch=64, eval_episodes=2, eval_max_steps=60)
SMOKE_DATA = dict(steps=300, expert_steps=450, transitions=600, eval_every=150, eval_episodes=2,
                  max_episode_steps=100)


def data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MuJoCo")
    g.add_argument("--env_id", type=int, choices=range(len(DATASETS)), metavar="0..11",
                   help="dataset: " + ", ".join(f"{i} {n}" for i, n in enumerate(DATASETS)))
    g.add_argument("--data_dir", "--data_dir_prefix", dest="data_dir", type=Path, help="folder holding the datasets")
    g.add_argument("--dataset_file", type=Path, help="read this D4RL hdf5 or reference pickle file")
    g.add_argument("--minari_dataset", help="train on this local Minari dataset instead (e.g. mujoco/hopper/medium-v0, "
                                            "in $MINARI_DATASETS_PATH or ~/.minari/datasets; needs the minari extra)")
    add_store_flags(g, "<data folder>/stores/<dataset>")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Flags over config.yaml defaults, checked; also returns the flags given explicitly."""
    return parse_train_args(ENV, __doc__, CONFIG, SMOKE, argv, data_flags, positive=("windows_per_epoch",))


def dataset_source(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """The dataset file to read and the folder it belongs to (see the module docstring); under --smoke a
    tiny generated dataset in <data folder>/smoke."""
    env, kind = split_name(name)
    folder = data_folder(args.data_dir)
    if args.smoke:
        folder = folder / "smoke"
        try:
            generate(env, kind, folder, **SMOKE_DATA)
        except ValueError as e:  # a smoke folder made by other settings
            raise DataError(str(e)) from None
    if args.dataset_file:
        if not Path(args.dataset_file).is_file():
            raise DataError(f"--dataset_file {args.dataset_file} does not exist")
        return Path(args.dataset_file), Path(args.dataset_file).parent
    found = find_dataset(folder, name)
    if found is None:
        looked = ", ".join(p.name for p in candidates(folder, name))
        raise DataError(f"no {name} data in {folder} (looked for {looked}): "
                        f"convert D4RL files with python3 download_d4rl_datasets.py, or generate it with "
                        f"python3 MuJoCo/get_data/generate_d4rl.py --env {env} --dataset {kind}, or pass --data_dir "
                        f"(or `mujoco: data_dir_prefix:` in wandb_config.yaml) (or try --smoke)")
    return found, folder


def minari_source(args: argparse.Namespace, explicit: set[str]) -> tuple[str, EpisodeStore]:
    """The env and episode store of ``--minari_dataset`` (the env's name is the id's env part, e.g.
    mujoco/<hopper>/medium-v0). The evaluation env (``mujoco_eval.recovered``: the one Minari recovers from the
    dataset, or gymnasium's v5 env when the dataset records none) is built once here, so one that cannot be built
    fails before training."""
    clash = sorted(explicit & {"env_id", "dataset_file"})
    if clash:
        raise ConfigError(f"--minari_dataset names the data; drop --{', --'.join(clash)}")
    env = parse_minari_id(args.minari_dataset)
    stores = data_folder(args.data_dir) / "stores" / "minari"
    store_dir = args.store_dir or stores / args.minari_dataset.replace("/", "__")
    store, _, layout = minari_store(args.minari_dataset, store_dir)
    if layout.image or layout.discrete or (layout.obs_shape[0], layout.n_actions) != DIMS[env]:
        raise DataError(f"Minari dataset {args.minari_dataset!r} has observations {layout.obs_shape} and "
                        f"{'discrete' if layout.discrete else layout.n_actions} actions, not {env}'s "
                        f"{DIMS[env][0]} and {DIMS[env][1]}")
    make = recovered(args.minari_dataset)
    if make is not None:
        make().close()  # an env that cannot be built here fails now, not in a worker after training
    return env, store


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, explicit = parse_args(argv)
    mc, tc = split_args(args, "mujoco")  # flags checked before any data is read or built
    seeds = run_seeds(args, explicit)
    if args.minari_dataset:
        env, store = minari_source(args, explicit)
        name, source = env, f"Minari dataset {args.minari_dataset}"
    else:
        name = dataset_of(args.env_id)
        env = split_name(name)[0]
        source, folder = dataset_source(args, name)
        store = mujoco_store(source, env, args.store_dir or folder / "stores" / name)
    mean, std = state_stats(store)
    state_dim, act_dim = DIMS[env]
    mc.env_kwargs = {"state_dim": state_dim, "act_dim": act_dim, "state_mean": mean.tolist(),
                     "state_std": std.tolist()}
    args.text = args.text or f"{name} from {source}"

    def build_stages():
        return [mujoco_dataset(store, mc.context_length * mc.sections, args.windows_per_epoch or store.n_steps,
                               args.window_starts)]

    return run_experiment(args, ENV, mc, tc, build_stages, seeds)


if __name__ == "__main__":
    quiet_old_gym()
    run_main(main)
