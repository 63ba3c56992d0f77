"""Learning curves from ``metrics.jsonl``: training loss and validation metrics against optimizer step.

Seeds of one run folder are one curve (mean over seeds, ± SEM band); run folders are overlaid::

    python -m RATE_model.tools.plots 'runs/demo/tmaze/*' -o curves.png [--metrics val/score,val/30] [--smooth 10]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure  # no pyplot: a notebook's (or any caller's) backend stays as it was

from RATE_model.config import OneLineErrorParser
from RATE_model.files import save_figure
from RATE_model.tools.report import ReportError, expand, fail, find_seed_files, short_labels

LOSS = "losses/train_loss"
MAX_PANELS = 6

Curve = tuple[np.ndarray, np.ndarray]
"""(steps, values) of one seed, steps strictly increasing."""


@dataclass
class RunCurves:
    """One run folder (``ROOT``) and the ``metrics.jsonl`` rows of each of its seeds."""

    root: Path
    label: str
    seeds: dict[str, list[dict[str, Any]]]
    """Seed folder name (``seed_1``) -> its metrics.jsonl rows."""

    def curves(self, key: str, smooth: int = 1) -> list[Curve]:
        """Per seed that logged ``key``, its (steps, values); smoothed over ``smooth`` rows."""
        out = [series(rows, key) for rows in self.seeds.values()]
        return [(s, moving_average(v, smooth)) for s, v in out if len(s)]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; lines cut short by a hard kill (or otherwise unparsable) skipped."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


def series(rows: list[dict[str, Any]], key: str) -> Curve:
    """(steps, values) of the rows holding a finite number under ``key``; the last row wins on a repeated step."""
    pairs = [(r["step"], r[key]) for r in rows
             if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool) and math.isfinite(r[key])]
    steps = np.asarray([p[0] for p in pairs], dtype=float)
    values = np.asarray([p[1] for p in pairs], dtype=float)
    order = np.argsort(steps, kind="stable")[::-1]  # reversed, so np.unique's first index is the last row logged
    steps, first = np.unique(steps[order], return_index=True)
    return steps, values[order][first]


def moving_average(values: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over ``n`` rows (fewer at the start); ``n`` <= 1 returns ``values``."""
    if n <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - n, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def mean_sem_curve(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard error over seeds of curves logged at different steps.

    Each curve is interpolated (``np.interp``) onto the union of all steps within the range every curve
    covers; SEM is std (ddof=1) / sqrt(n), zero for one curve. Empty arrays when the ranges do not overlap."""
    lo = max(s[0] for s, _ in curves)
    hi = min(s[-1] for s, _ in curves)
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    steps = steps[(steps >= lo) & (steps <= hi)]
    y = np.stack([np.interp(steps, s, v) for s, v in curves])  # [seeds, steps]
    sem = y.std(axis=0, ddof=1) / math.sqrt(len(curves)) if len(curves) > 1 else np.zeros(len(steps))
    return steps, y.mean(axis=0), sem


def load_curves(run_dirs: list[Path | str]) -> list[RunCurves]:
    """Each argument (a seed folder, a run folder, a folder above run folders, or a glob of those) ->
    its seeds' metrics.jsonl, grouped by run folder in argument order; ReportError when one has none."""
    groups: dict[Path, dict[str, list[dict[str, Any]]]] = {}
    for arg, paths in zip(run_dirs, expand([str(d) for d in run_dirs]), strict=True):
        files = [f for p in paths for f in find_metrics(p)]
        if not files:
            raise ReportError(f"no metrics.jsonl found for {str(arg)!r}")
        for f in files:
            groups.setdefault(f.parent.parent, {})[f.parent.name] = read_metrics(f)
    roots = list(groups)
    return [RunCurves(root, label, groups[root]) for root, label in zip(roots, short_labels(roots), strict=True)]


def find_metrics(path: Path) -> list[Path]:
    """The metrics.jsonl files a path stands for: its own (a seed folder, whatever its name), or its seeds'."""
    if path.is_dir() and (path / "metrics.jsonl").is_file():
        return [path / "metrics.jsonl"]
    if path.is_file() and path.name == "metrics.jsonl":
        return [path]
    return find_seed_files(path, "metrics.jsonl")


def panels(runs: list[RunCurves], metrics: list[str] | None = None) -> list[str]:
    """The metric of each subplot: ``metrics`` if given (each must be logged somewhere), else the training
    loss, ``val/score`` and the other ``val/*`` metrics, those logged by some seed, at most MAX_PANELS."""
    logged: dict[str, None] = {}
    for run in runs:
        for rows in run.seeds.values():
            for row in rows:
                logged.update(dict.fromkeys(k for k, v in row.items() if isinstance(v, (int, float))))
    if metrics is not None:
        missing = [m for m in metrics if m not in logged]
        if missing:
            have = ", ".join(k for k in logged if k not in ("step", "time"))
            raise ReportError(f"no metrics.jsonl logs {', '.join(map(repr, missing))}; they log: {have}")
        return metrics
    wanted = [LOSS, "val/score", *(k for k in logged if k.startswith("val/") and k != "val/score")]
    return [k for k in wanted if k in logged][:MAX_PANELS]


def make_figure(runs: list[RunCurves], metrics: list[str] | None = None, smooth: int = 1) -> Figure:
    """One subplot per panel metric, a mean curve with ± SEM band per run folder; ReportError if no panel."""
    names = panels(runs, metrics)
    if not names:
        raise ReportError("the metrics.jsonl files log no training loss or val/* metric to plot")
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.6 * nrows))
    for i, key in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        positive = True
        for j, run in enumerate(runs):
            curves = run.curves(key, smooth if key.startswith("losses/") else 1)
            if not curves:
                continue
            steps, mean, sem = mean_sem_curve(curves)
            positive &= bool(np.all(mean > 0))
            color = f"C{j % 10}"
            ax.plot(steps, mean, color=color, marker="o" if len(steps) <= 30 else None, markersize=3,
                    label=f"{run.label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(steps, mean - sem, mean + sem, color=color, alpha=0.2, linewidth=0)
        if key.startswith("losses/") and positive and ax.lines:
            ax.set_yscale("log")
        ax.set_title(key + (f" (smoothed over {smooth})" if key.startswith("losses/") and smooth > 1 else ""))
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_runs(run_dirs: list[Path], out: Path, metrics: list[str] | None = None, smooth: int = 1) -> Path:
    """Write the learning curves of ``run_dirs`` (seed or run folders, globs allowed) to ``out``."""
    fig = make_figure(load_curves(run_dirs), metrics, smooth)
    return save_figure(fig, out)


def write_curves(run_dir: Path) -> Path | None:
    """``run_dir/curves.png`` for one seed folder; None when it has no metrics.jsonl or nothing to plot."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    run = RunCurves(run_dir, short_labels([run_dir])[0], {run_dir.name: read_metrics(path)})
    if not panels([run]):
        return None
    return save_figure(make_figure([run]), run_dir / "curves.png")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = OneLineErrorParser(prog="python -m RATE_model.tools.plots", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="seed or run folders (globs are expanded)")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE.png", help="image to write (required)")
    parser.add_argument("--metrics", help="comma-separated metrics, one panel each (default: loss and val/*)")
    parser.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average of the loss over N rows")
    args = parser.parse_args(argv)
    if args.out is None:
        fail("no output path: pass -o FILE.png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if args.out.suffix.lstrip(".").lower() not in formats:
        fail(f"cannot write {args.out}: the file name must end in one of .{', .'.join(sorted(formats))}")
    if args.smooth < 1:
        fail(f"--smooth must be at least 1 (rows), got {args.smooth}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        out = plot_runs(args.runs, args.out, metrics, args.smooth)
    except (ReportError, OSError) as e:
        fail(str(e))
    print(out)


if __name__ == "__main__":
    main()
