"""Measure the history-only experts on the evaluation protocol's test seeds and print them beside the paper's
PPO-GRU data column and its random policy (one task alone: ``python -m RATE_model.tools.measure --env popgym
--task popgym-<Task>-v0``).

    python3 POPGym/diagnostics/measure_experts.py                       # 48 tasks × 100 seeds, every core
    python3 POPGym/diagnostics/measure_experts.py --tasks easy --episodes 20 --out experts.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from POPGym.get_data.gen_popgym_data import select_tasks
from POPGym.paper_results import paper_value
from POPGym.POPGym_src.popgym_env import TASKS
from POPGym.POPGym_src.popgym_eval import ENV
from RATE_model.cli import run_main
from RATE_model.config import OneLineErrorParser, check_positive
from RATE_model.tools import measure as shared


def measure(task: str, episodes: int = 100, workers: int = 1) -> dict[str, Any]:
    """Mean return ± SEM, mean length and milliseconds per step (per process) of the task's expert on the first
    ``episodes`` test seeds (the seeds models are evaluated on), with the paper's data and random returns."""
    args = shared.env_args(ENV, task=task, episodes=episodes, workers=workers, policies=["expert"])
    line, _ = shared.measure(ENV, "expert", args, progress=False)
    return {"task": task, "episodes": line["episodes"], "return": line["return"], "return_sem": line["return_sem"],
            "mean_length": line["length"], "ms_per_step": 1000 / line["steps_per_s"],
            "paper_data": paper_value(task, "data"), "paper_random": paper_value(task, "Random")}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of :func:`measure` rows."""
    lines = ["| task | expert (ours) | paper's data (PPO-GRU) | random (paper) | mean length | ms / step |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task'].removeprefix('popgym-').removesuffix('-v0')} | {r['return']:+.3f} ± "
                     f"{r['return_sem']:.3f} | {r['paper_data']:+.2f} | {r['paper_random']:+.2f} | "
                     f"{r['mean_length']:.0f} | {r['ms_per_step']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--tasks", type=select_tasks, default=list(TASKS), help="all (default), easy, families, ids")
    p.add_argument("--episodes", type=int, default=100, help="test seeds per task (the protocol: 100)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes per task (default: all)")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "workers"))
    rows = [measure(t, args.episodes, args.workers) for t in tqdm(args.tasks, desc="experts")]
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    run_main(main)
