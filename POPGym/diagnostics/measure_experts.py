"""Measure the history-only experts on the evaluation protocol's test seeds and print them beside the paper's
PPO-GRU data column and its random policy.

    python3 POPGym/diagnostics/measure_experts.py                       # 48 tasks × 100 seeds, every core
    python3 POPGym/diagnostics/measure_experts.py --tasks easy --episodes 20 --out experts.json
"""

from __future__ import annotations

import json
import os
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from POPGym.get_data.gen_popgym_data import play_episode, select_tasks
from POPGym.paper_results import paper_value
from POPGym.POPGym_src.popgym_env import TASKS, make
from POPGym.POPGym_src.popgym_eval import ENV
from RATE_model.config import OneLineErrorParser
from RATE_model.rollout import sem


def measure(task: str, episodes: int = 100) -> dict[str, Any]:
    """Mean return ± SEM, mean length and seconds per step of the task's expert on the first ``episodes`` test
    seeds (the seeds models are evaluated on)."""
    env = make(task)
    t0, returns, lengths = time.perf_counter(), [], []
    for seed in ENV.seeds(episodes, "test"):
        ep = play_episode(task, seed, env)
        returns.append(float(ep["reward"].sum()))
        lengths.append(len(ep["reward"]))
    env.close()
    r = np.asarray(returns)
    return {"task": task, "episodes": episodes, "return": float(r.mean()), "return_sem": sem(r),
            "mean_length": float(np.mean(lengths)), "ms_per_step": 1000 * (time.perf_counter() - t0) / sum(lengths),
            "paper_data": paper_value(task, "data"), "paper_random": paper_value(task, "Random")}


def _measure(args: tuple[str, int]) -> dict[str, Any]:
    return measure(*args)


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
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.episodes < 1 or args.workers < 1:
        p.error("--episodes and --workers must be >= 1")
    jobs = [(t, args.episodes) for t in args.tasks]
    with get_context("fork").Pool(min(args.workers, len(jobs))) as pool:
        done = {r["task"]: r for r in tqdm(pool.imap_unordered(_measure, jobs), total=len(jobs), desc="experts")}
    rows = [done[t] for t in args.tasks]
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
