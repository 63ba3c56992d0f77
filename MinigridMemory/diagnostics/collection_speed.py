"""Measure the collection speed of collect_traj.py (episodes/s and MB per 1 000 episodes) in a throw-away
folder. The expert itself (success rate, length, return per grid size and noise level) is measured by the
shared tool:

    python3 MinigridMemory/diagnostics/collection_speed.py --episodes 1000 --size 31 --workers 1
    python -m RATE_model.tools.measure --env minigrid --size 31 --epsilon 0.1 --episodes 500
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from MinigridMemory.get_data.collect_traj import collect
from MinigridMemory.MinigridMemory_src.minigrid_env import check_size
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--episodes", type=int, default=1000, help="episodes to collect")
    p.add_argument("--size", type=int, default=31, help="grid size (odd, >= 7)")
    p.add_argument("--epsilon", type=float, default=0.1, help="the expert's share of random actions, in [0, 1)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "workers"))
    try:
        check_size(args.size)
    except ValueError as e:
        raise ConfigError(f"--size: {e}") from None
    if not 0.0 <= args.epsilon < 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1), got {args.epsilon}")
    with tempfile.TemporaryDirectory() as tmp:
        stats = collect(Path(tmp), args.episodes, args.size, epsilon=args.epsilon, workers=args.workers,
                        progress=False)
        size_mb = sum(f.stat().st_size for f in Path(tmp).glob("*.npz")) / 2**20
    stats["mb_per_1000_episodes"] = round(size_mb * 1000 / args.episodes, 1)
    del stats["out_dir"]  # a deleted temporary folder
    print(json.dumps(stats), flush=True)
    return stats


if __name__ == "__main__":
    run_main(main)
