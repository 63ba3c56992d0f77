"""Compare the training losses of runs of the same command in two precisions (or any two runs).

    python -m benchmarks.compare_losses RUN_DIR_A RUN_DIR_B [--last 100]

Reads each run's ``metrics.jsonl`` (``--log_every 1`` logs every optimizer step) and prints, for the
steps both runs logged, the mean loss of the last ``--last`` of them in each run, their relative
difference, and the largest per-step difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def losses(run_dir: Path) -> dict[int, float]:
    rows = (json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip())
    return {r["step"]: r["losses/train_loss"] for r in rows if "losses/train_loss" in r}


def compare(a: dict[int, float], b: dict[int, float], last: int) -> dict:
    steps = sorted(set(a) & set(b))
    if not steps:
        raise SystemExit("error: the two runs logged no common step")
    x, y = np.array([a[s] for s in steps]), np.array([b[s] for s in steps])
    tail = slice(-min(last, len(steps)), None)
    ma, mb = float(x[tail].mean()), float(y[tail].mean())
    return {"common_steps": len(steps), "first": steps[0], "last_step": steps[-1], "window": len(x[tail]),
            "mean_a": ma, "mean_b": mb, "relative_difference": abs(ma - mb) / abs(ma),
            "max_step_difference": float(np.abs(x - y).max())}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--last", type=int, default=100, help="steps averaged at the end")
    args = p.parse_args(argv)
    res = compare(losses(args.run_a), losses(args.run_b), args.last)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
