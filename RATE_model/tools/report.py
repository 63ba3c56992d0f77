"""Results tables from run folders: mean ± SEM over training seeds of every metric in ``results.json``.

A training command writes ``runs/<env>/<ckpt_folder>/seed_<S>/results.json``; this module groups those
per-seed files by their run folder and prints one row per run and model selection ("last", and
"best_on_validation" when a seed evaluated during training)::

    python -m RATE_model.tools.report 'runs/demo/tmaze/*' [--markdown] [--metrics 9,30] [--json table.json]

``--paired return,return_second_half`` with exactly two run folders A and B prints A − B paired over the
evaluation episodes both played (the same seeds: the same mazes, levels, ...): each episode's value is
averaged over a run's training seeds, then mean ± SEM of the per-episode differences, which removes the
spread between episodes that a difference of two independent means keeps.
"""

from __future__ import annotations

import glob
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from RATE_model.config import OneLineErrorParser
from RATE_model.files import write_text

SELECTIONS = ("last", "best_on_validation")


class ReportError(ValueError):
    """Bad input to a report or plot command (reported on one line, exit 2)."""


@dataclass
class RunGroup:
    """One run folder (``ROOT``) and the ``results.json`` of each of its training seeds."""

    root: Path
    label: str
    seeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Seed folder name (``seed_1``) -> that seed's results.json."""

    def metrics(self, selection: str) -> list[dict[str, float]]:
        """The numeric metrics of each seed that has ``selection`` ("last" or "best_on_validation")."""
        out = []
        for result in self.seeds.values():
            block = result if selection == "last" else result.get(selection)
            if isinstance(block, dict) and isinstance(block.get("metrics"), dict):
                out.append(numeric_metrics(block["metrics"]))
        return out


@dataclass
class Cell:
    """Mean over the ``n`` seeds reporting a metric; ``sem`` is None for a single seed."""

    mean: float
    sem: float | None
    n: int


@dataclass
class Row:
    """One table row: a run folder under one model selection."""

    group: RunGroup
    selection: str
    seeds: int
    cells: dict[str, Cell | None]


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of a results dict; lists, dicts, strings, booleans and ``*_sem`` keys dropped."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith("_sem")}


def expand(patterns: list[str]) -> list[list[Path]]:
    """Each glob (or plain path) -> the sorted paths it matches; a pattern matching nothing is an error."""
    out = []
    for pattern in patterns:
        paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if not paths:
            raise ReportError(f"no file or folder matches {pattern!r}")
        out.append(paths)
    return out


def short_labels(roots: list[Path]) -> list[str]:
    """``<env>/<folder>`` (a root's last two path components), longer suffixes only where those collide."""
    parts = [r.resolve().parts for r in roots]
    for k in range(2, max((len(p) for p in parts), default=2) + 1):
        labels = [Path(*p[-k:]).as_posix() for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(r) for r in roots]


def seed_key(name: str) -> tuple[int, str]:
    """Sort key putting ``seed_2`` before ``seed_10``."""
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


def find_seed_files(path: Path, file_name: str) -> list[Path]:
    """The per-seed ``file_name`` files a path stands for: the file itself, a seed folder's file, or every
    ``seed_*/file_name`` below a folder (a run folder, or a folder of run folders)."""
    if path.is_file():
        return [path] if path.name == file_name and path.parent.name.startswith("seed_") else (
            find_seed_files(path.parent, file_name) if path.name == file_name else [])
    if (path / file_name).is_file() and path.name.startswith("seed_"):
        return [path / file_name]
    return sorted(path.rglob(f"seed_*/{file_name}"))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ReportError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError, or bytes that are not text
        raise ReportError(f"{path} is not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} holds a JSON {type(data).__name__}, not an object of results")
    return data


def load_runs(patterns: list[str]) -> list[RunGroup]:
    """Seed results matched by ``patterns`` grouped by run folder, in argument order, then path order.

    A pattern may match run folders (holding ``seed_*/results.json``), seed folders, results.json files,
    or folders above run folders."""
    groups: dict[Path, dict[str, dict[str, Any]]] = {}
    for pattern, paths in zip(patterns, expand(patterns), strict=True):
        files = [f for p in paths for f in find_seed_files(p, "results.json")]
        if not files:
            raise ReportError(f"{pattern!r} holds no seed_*/results.json")
        for f in files:
            groups.setdefault(f.parent.parent, {})[f.parent.name] = read_json(f)
    roots = list(groups)
    return [RunGroup(root, label, dict(sorted(groups[root].items(), key=lambda kv: seed_key(kv[0]))))
            for root, label in zip(roots, short_labels(roots), strict=True)]


def metric_names(groups: list[RunGroup]) -> list[str]:
    """Every numeric metric the groups report, in first-seen order."""
    names: dict[str, None] = {}
    for g in groups:
        for selection in SELECTIONS:
            for m in g.metrics(selection):
                names.update(dict.fromkeys(m))
    return list(names)


def aggregate(values: list[float]) -> Cell | None:
    """Mean and standard error (std with ddof=1 over sqrt n) of per-seed values; None when there are none."""
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    sem = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None
    return Cell(float(x.mean()), sem, len(x))


def rows(groups: list[RunGroup], metrics: list[str] | None = None) -> tuple[list[str], list[Row]]:
    """The table's metric columns and rows; ``metrics`` picks the columns (unknown names are an error)."""
    known = metric_names(groups)
    if metrics is None:
        metrics = known
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ReportError(f"unknown metric {', '.join(map(repr, unknown))}; the runs report: {', '.join(known)}")
    out = []
    for g in groups:
        for selection in SELECTIONS:
            per_seed = g.metrics(selection)
            if per_seed or selection == "last":
                cells = {k: aggregate([m[k] for m in per_seed if k in m]) for k in metrics}
                out.append(Row(g, selection, len(per_seed), cells))
    return metrics, out


@dataclass
class Paired:
    """A − B over the ``n`` evaluation episodes (by seed) both run folders played."""

    metric: str
    mean: float
    sem: float | None
    n: int
    a: float  # A's mean over those episodes
    b: float


def episode_values(group: RunGroup, metric: str, selection: str = "last") -> dict[int, float]:
    """Evaluation-episode seed -> ``metric`` of that episode, averaged over the group's training seeds."""
    values: dict[int, list[float]] = {}
    for name, result in group.seeds.items():
        block = result if selection == "last" else result.get(selection)
        episodes = block.get("metrics", {}).get("episodes") if isinstance(block, dict) else None
        if not isinstance(episodes, list) or not all(isinstance(e, dict) and "seed" in e for e in episodes):
            raise ReportError(f"{group.root / name}: results.json lists no evaluation episodes with seeds")
        for e in episodes:
            if metric not in e:
                raise ReportError(f"{group.root / name}: its episodes have no {metric!r} "
                                  f"(they have {', '.join(k for k in e if k != 'seed')})")
            values.setdefault(int(e["seed"]), []).append(float(e[metric]))
    return {seed: float(np.mean(v)) for seed, v in values.items()}


def paired(a: RunGroup, b: RunGroup, metric: str, selection: str = "last") -> Paired:
    """``metric`` of run A minus run B, paired over the evaluation episodes both played."""
    va, vb = episode_values(a, metric, selection), episode_values(b, metric, selection)
    common = sorted(set(va) & set(vb))
    if not common:
        raise ReportError(f"{a.label} and {b.label} share no evaluation episode seeds")
    xa, xb = np.array([va[s] for s in common]), np.array([vb[s] for s in common])
    d = aggregate(list(xa - xb))
    return Paired(metric, d.mean, d.sem, d.n, float(xa.mean()), float(xb.mean()))


def paired_lines(a: RunGroup, b: RunGroup, metrics: list[str]) -> list[str]:
    """One readable line per metric of :func:`paired`."""
    out = []
    for m in metrics:
        p = paired(a, b, m)
        diff = fmt_number(p.mean, p.a) + ("" if p.sem is None else f" ± {fmt_number(p.sem, p.a)}")
        means = f"{fmt_number(p.a, p.a)} vs {fmt_number(p.b, p.a)}"
        out.append(f"{a.label} − {b.label}, {m}: {diff} over {p.n} paired episodes "
                   f"({means}; {len(a.seeds)} vs {len(b.seeds)} training seeds)")
    return out


def fmt_number(x: float, ref: float) -> str:
    """``x`` with decimals chosen by the magnitude of ``ref`` (the cell's mean): 3 below 10, 1 above."""
    if not math.isfinite(ref) or not math.isfinite(x):
        return str(x)
    if 0 < abs(ref) < 1e-3:
        return f"{x:.2e}"
    return f"{x:.1f}" if abs(ref) >= 10 else f"{x:.3f}"


def fmt_cell(cell: Cell | None, seeds: int) -> str:
    """"mean ± sem", just the mean for one seed, "(n=k)" when fewer seeds than the row's report it."""
    if cell is None:
        return "–"
    text = fmt_number(cell.mean, cell.mean)
    if cell.sem is not None:
        text += f" ± {fmt_number(cell.sem, cell.mean)}"
    return text + (f" (n={cell.n})" if cell.n != seeds else "")


def table(groups: list[RunGroup], metrics: list[str] | None = None, markdown: bool = False) -> str:
    """The results table as aligned plain text, or as a GitHub markdown table."""
    names, body = rows(groups, metrics)
    header = ["run", "selection", "seeds", *names]
    lines = [[r.group.label, r.selection, str(r.seeds), *(fmt_cell(r.cells[k], r.seeds) for k in names)]
             for r in body]
    if markdown:
        sep = ["---", "---", *["---:"] * (len(header) - 2)]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, sep, *lines])
    widths = [max(len(c[i]) for c in [header, *lines]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, lines)])


def table_json(groups: list[RunGroup], metrics: list[str] | None = None) -> dict[str, Any]:
    """The table's numbers: per row, the run, selection, seed count and {mean, sem, n} per metric (null: none)."""
    names, body = rows(groups, metrics)
    return {"metrics": names, "rows": [
        {"run": r.group.label, "root": str(r.group.root), "selection": r.selection, "seeds": r.seeds,
         "metrics": {k: None if c is None else {"mean": c.mean, "sem": c.sem, "n": c.n} for k, c in r.cells.items()}}
        for r in body]}


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def command_line(module: str, argv: list[str]) -> str:
    """The shell command that reproduces this invocation, quoted so it can be pasted."""
    return shlex.join(["python", "-m", module, *argv])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = OneLineErrorParser(prog="python -m RATE_model.tools.report", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUNS_GLOB",
                        help="run folders, seed folders or results.json files (globs are expanded)")
    parser.add_argument("--markdown", action="store_true", help="print a GitHub markdown table")
    parser.add_argument("--metrics", help="comma-separated metric columns (default: all numeric metrics)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the table's numbers as JSON")
    parser.add_argument("--paired", metavar="METRICS",
                        help="with two run folders A B: A − B of these per-episode metrics, paired by episode seed")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        groups = load_runs(args.runs)
        text = table(groups, metrics, args.markdown)
        if args.paired:
            if len(groups) != 2:
                raise ReportError(f"--paired compares two run folders, got {len(groups)}")
            text += "\n\n" + "\n".join(paired_lines(*groups, [m.strip() for m in args.paired.split(",") if m.strip()]))
        if args.json is not None:
            write_text(args.json, json.dumps({"command": command_line("RATE_model.tools.report", argv),
                                              **table_json(groups, metrics)}, indent=2))
    except (ReportError, OSError) as e:  # OSError: a WriteError too
        fail(str(e))
    command = command_line("RATE_model.tools.report", argv)
    print(f"`{command}`\n" if args.markdown else f"# {command}")
    print(text)


if __name__ == "__main__":
    main()
