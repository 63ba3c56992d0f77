"""Measure the oracles and a uniformly random policy on the evaluation protocol's mazes: the shared tool's line
(``python -m RATE_model.tools.measure --env memory_maze``: mean return ± standard error, the return in each
half of the episode, steps per second per process) with what only Memory Maze has: the standard error of the
second half's gain over the first, and how often the current target had been seen when it was assigned
(visible oracle).

    python3 MemoryMaze/diagnostics/measure_expert.py --policies visible --epsilon 0.1 --episodes 20 --json
    python3 MemoryMaze/diagnostics/measure_expert.py --policies privileged,random --epsilon 0.1 --episodes 20

A remembered layout and remembered targets pay in the second half of an episode: there the visible oracle
knows where the targets are, while in the first half it still has to find them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV
from RATE_model.cli import run_main, write_json_lines
from RATE_model.rollout import sem
from RATE_model.tools import measure as shared


def halves(line: dict[str, Any], rows: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """The shared ``line`` of a policy's episodes ``rows`` with the Memory Maze statistics added."""
    first, second = (np.array([r[k] for r in rows], float) for k in ("return_first_half", "return_second_half"))
    out = {k: v for k, v in line.items() if k not in ("assigned", "assigned_seen")}
    out.update(epsilon=args.epsilon if line["policy"] != "random" else None, max_steps=args.eval_max_steps,
               return_min=float(min(r["return"] for r in rows)), second_minus_first_sem=sem(second - first))
    if line["policy"] == "visible":
        assigned = sum(r["assigned"] for r in rows)
        out["seen_at_assignment"] = sum(r["assigned_seen"] for r in rows) / max(assigned, 1)
    return out


def describe(s: dict[str, Any]) -> str:
    """One readable line of :func:`halves`' statistics."""
    name = s["policy"] if s["policy"] == "random" else f"{s['policy']} oracle, epsilon {s['epsilon']:g}"
    seen = f", target seen when assigned {s['seen_at_assignment']:.2f}" if "seen_at_assignment" in s else ""
    return (f"{name}: return {s['return']:.2f} ± {s['return_sem']:.2f} over {s['episodes']} mazes × "
            f"{s['max_steps']} steps (first half {s['return_first_half']:.2f}, second half "
            f"{s['return_second_half']:.2f}){seen}; {s['steps_per_s']:.0f} steps/s per process")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = shared.parser(ENV, prog="MemoryMaze/diagnostics/measure_expert.py", description=__doc__.splitlines()[0],
                      env_flag=False)
    p.add_argument("--json", action="store_true", help="print one JSON line per policy instead of a sentence")
    args = shared.finish_args(ENV, p.parse_args(argv))
    out = []
    for policy in args.policies:
        out.append(halves(*shared.measure(ENV, policy, args), args))
        print(json.dumps(out[-1]) if args.json else describe(out[-1]), flush=True)
    if args.out:
        write_json_lines(args.out, out)
    return out


if __name__ == "__main__":
    run_main(main)
