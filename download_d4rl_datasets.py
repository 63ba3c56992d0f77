"""Put the D4RL MuJoCo datasets of the paper README into our data folder, without a network.

    python download_d4rl_datasets.py [--source DIR] [--out_dir DIR] [--datasets hopper-medium,walker2d-expert]

Nothing is downloaded (D4RL's servers are not reachable from our machines, and d4rl itself does not
install): the D4RL hdf5 files already on this machine (``--source``, else ``$D4RL_DATASET_DIR``, else
``~/.d4rl/datasets``, named as D4RL names them, e.g. ``hopper_medium_replay-v2.hdf5``) are converted into
the reference's training format, ``<out_dir>/<env>-<dataset>-v2.pkl`` (a list of trajectory dicts with
observations, next_observations, actions, rewards, terminals; episodes end at terminals or timeouts, an
incomplete last one is dropped), which ``MuJoCo/train_rate_mujoco_ca.py`` reads. The output folder is
``--out_dir``, else ``mujoco: data_dir_prefix:`` of wandb_config.yaml, else MuJoCo/MuJoCo_data. Each dataset
is reported as converted, already there, or missing, with the command that generates a missing one
locally (``MuJoCo/get_data/generate_d4rl.py``: SAC on gymnasium's v5 envs, D4RL's recipe).
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from MuJoCo.MuJoCo_src.mujoco_data import d4rl_filename, data_folder, split_d4rl
from MuJoCo.MuJoCo_src.mujoco_env import DATASETS, split_name
from RATE_model.config import ConfigError, OneLineErrorParser
from RATE_model.data import DataError
from RATE_model.files import atomic_write

PICKLE_FIELDS = ("observations", "next_observations", "actions", "rewards", "terminals")


def default_source() -> Path:
    """Where D4RL keeps its files: $D4RL_DATASET_DIR, else ~/.d4rl/datasets."""
    return Path(os.environ.get("D4RL_DATASET_DIR") or Path.home() / ".d4rl" / "datasets")


def convert(src: Path, dst: Path) -> dict[str, float]:
    """D4RL hdf5 ``src`` -> the reference's pickle ``dst`` (written atomically); returns counts and return."""
    episodes = split_d4rl(src, PICKLE_FIELDS)
    with atomic_write(dst) as f:
        pickle.dump(episodes, f, protocol=pickle.HIGHEST_PROTOCOL)
    returns = [float(ep["rewards"].sum()) for ep in episodes]
    return {"episodes": len(episodes), "transitions": sum(len(ep["rewards"]) for ep in episodes),
            "return": float(np.mean(returns))}


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--source", type=Path,
                   help="folder of D4RL hdf5 files (default: $D4RL_DATASET_DIR or ~/.d4rl/datasets)")
    p.add_argument("--out_dir", type=Path, help="data folder (default: wandb_config.yaml mujoco: data_dir_prefix:, "
                                                "else MuJoCo/MuJoCo_data)")
    p.add_argument("--datasets", help="comma-separated names (default: the 12 of the paper README)")
    args = p.parse_args(argv)
    names = args.datasets.split(",") if args.datasets else list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; known: {', '.join(DATASETS)}")
    if args.source is not None and not args.source.is_dir():
        p.error(f"--source {args.source} is not a folder")
    source = args.source or default_source()
    try:
        out = data_folder(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report: dict[str, list[str]] = {"converted": [], "present": [], "missing": []}
        for name in tqdm(names, desc="D4RL datasets", disable=None, leave=False):
            dst, src = out / f"{name}-v2.pkl", source / d4rl_filename(name)
            if dst.is_file() and (not src.is_file() or dst.stat().st_mtime >= src.stat().st_mtime):
                report["present"].append(name)
                print(f"{name}: {dst} already there")
            elif src.is_file():
                stats = convert(src, dst)
                report["converted"].append(name)
                print(f"{name}: {src} -> {dst} ({stats['episodes']} episodes, {stats['transitions']} transitions, "
                      f"mean return {stats['return']:.1f})")
            else:
                report["missing"].append(name)
                if (out / f"{name}-v5.hdf5").is_file():
                    print(f"{name}: not in {source}; the generated stand-in {out / f'{name}-v5.hdf5'} is used")
    except (DataError, ConfigError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    if report["missing"]:
        print(f"\nmissing ({len(report['missing'])}): no {', '.join(d4rl_filename(n) for n in report['missing'])} "
              f"in {source}. D4RL cannot be downloaded here; copy its hdf5 files there (or pass --source), or "
              f"generate stand-ins locally (SAC on gymnasium's v5 envs, D4RL's recipe) into {out}:")
        for name in report["missing"]:
            env, kind = split_name(name)
            print(f"  python3 MuJoCo/get_data/generate_d4rl.py --env {env} --dataset {kind} --out_dir {out}")
    return report


if __name__ == "__main__":
    main()
