"""Train and evaluate a grid of POPGym tasks × models × training seeds, then print the per-task table and the
memory / reactive / all aggregates beside the paper's.

    python3 POPGym/run_grid.py --tasks easy --models RATE,DT,BC_LSTM,BC_MLP --seeds 1,2
    python3 POPGym/run_grid.py --tasks easy --table_only        # the table of what has finished so far

Resumable: the data of each task is made once (``get_data/gen_popgym_data.py``, missing episodes only) and a
run whose ``runs/popgym/<task>/<model>/seed_<s>/results.json`` exists is skipped, so an interrupted grid goes
on where it stopped. Every run is ``train_popgym.py --task T --model_mode M --seed S`` plus ``--size``'s
flags and whatever follows ``--`` (e.g. ``-- --lr 3e-4``). ``--size cpu`` (the default) trains a 3-layer
model for ``--steps`` optimizer steps on ``--n_episodes`` episodes, each batch about 3 200 env steps (64
windows of a 50-step task, 16 of a 200-step one), so every run costs minutes; ``--size paper`` keeps
config.yaml's sizes and 50 epochs. Aggregates are sums over the tasks run of the
per-task mean return over seeds (the paper's convention; ± the SEM of the sum, from the per-task SEMs); its columns are
summed over the same tasks.
Writes the table to ``<runs_dir>/popgym/grid.md`` and ``grid.json``.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from POPGym.get_data.gen_popgym_data import DATA_DIR, generate, select_tasks
from POPGym.paper_results import paper_value
from POPGym.POPGym_src.popgym_env import REACTIVE, family_of
from RATE_model.config import BC_MODES, OneLineErrorParser
from RATE_model.files import write_text
from RATE_model.tools.report import ReportError, aggregate, load_runs

MODELS = ("RATE", "DT", "BC_LSTM", "BC_MLP")
# --size cpu: a model a 2-core CPU trains in minutes (3 layers, 2 heads of 32, d 64) for --steps optimizer steps
# of batches of about BATCH_STEPS env steps; --size paper: config.yaml's sizes and 50 epochs.
SIZES: dict[str, list[str]] = {
    "paper": [],
    "cpu": ["--n_layer", "3", "--n_head", "2", "--d_head", "32", "--d_model", "64", "--d_inner", "64",
            "--n_head_ca", "2", "--lr", "1e-3", "--warmup_steps", "20"],
}
BATCH_STEPS = 3200  # env steps per batch under --size cpu: 64 episodes of 50 steps, 16 of 200
SMOKE = ["--smoke"]


def cpu_budget(n_episodes: int, longest: int, steps: int) -> list[str]:
    """--batch_size and --epochs giving about ``steps`` optimizer steps over ``n_episodes`` episodes (one
    window each) whose longest has ``longest`` steps: a batch of about BATCH_STEPS env steps (8 to 64
    episodes), so a step costs about the same on every task."""
    batch = max(8, min(64, BATCH_STEPS // max(longest, 1)))
    per_epoch = -(-n_episodes // batch)
    return ["--batch_size", str(batch), "--epochs", str(max(1, round(steps / per_epoch)))]


def run_dir(runs: Path, task: str, model: str) -> Path:
    return runs / "popgym" / task / model


def train_one(task: str, model: str, seed: int, runs: Path, data_dir: Path, extra: list[str]) -> float:
    """One grid cell (``train_popgym.main`` in this process); returns its wall-clock seconds."""
    from POPGym.train_popgym import main as train_main

    argv = ["--task", task, "--model_mode", model, "--seed", str(seed), "--runs_dir", str(runs), "--data_dir",
            str(data_dir), "--no_wandb", *extra]
    t0 = time.time()
    train_main(argv)
    return time.time() - t0


def task_means(runs: Path, task: str, models: list[str]) -> dict[str, Any]:
    """{model: Cell of the per-seed mean test return (last model)} for the models that have finished seeds."""
    out = {}
    for model in models:
        folder = run_dir(runs, task, model)
        try:
            groups = load_runs([str(folder)])
        except ReportError:
            continue
        cell = aggregate([m["return"] for g in groups for m in g.metrics("last") if "return" in m])
        if cell is not None:
            out[model] = cell
    return out


def data_return(data_dir: Path, task: str) -> float | None:
    summary = Path(data_dir) / task / "summary.json"
    return json.loads(summary.read_text())["return"] if summary.exists() else None


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def table(tasks: list[str], models: list[str], runs: Path, data_dir: Path) -> tuple[str, dict[str, Any]]:
    """Markdown: per task our models (mean ± SEM over seeds, seeds) and data, the paper's beside them; then the
    sums over memory, reactive and all tasks that every model in the row has finished."""
    head = ["task", *[f"{m} (ours)" for m in models], "data (ours)", *[f"{m} (paper)" for m in models],
            "data (paper)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows: dict[str, Any] = {}
    for task in tasks:
        cells = task_means(runs, task, models)
        ours = {m: cells[m].mean for m in cells}
        row = {"ours": ours, "sem": {m: cells[m].sem for m in cells}, "seeds": {m: cells[m].n for m in cells},
               "data": data_return(data_dir, task), "paper": {m: paper_value(task, m) for m in [*models, "data"]}}
        rows[task] = row
        shown = [f"{fmt(ours[m])} ± {cells[m].sem or 0:.2f} ({cells[m].n})" if m in ours else "—" for m in models]
        lines.append("| " + " | ".join([task.removeprefix("popgym-").removesuffix("-v0"), *shown, fmt(row["data"]),
                                        *[fmt(row["paper"][m]) for m in models], fmt(row["paper"]["data"])]) + " |")
    sums: dict[str, Any] = {}
    for subset in ("memory", "reactive", "all"):
        chosen = [t for t in tasks if subset == "all" or (family_of(t) in REACTIVE) == (subset == "reactive")]
        done = [t for t in chosen if all(m in rows[t]["ours"] for m in models)]  # every model finished the task
        if not done:
            continue
        s = {f"{m} (ours)": sum(rows[t]["ours"][m] for t in done) for m in models}
        # SEM of a sum of independent per-task means: the root of the summed squared SEMs
        sem = {f"{m} (ours)": math.sqrt(sum((rows[t]["sem"][m] or 0.0) ** 2 for t in done)) for m in models}
        s["data (ours)"] = sum(rows[t]["data"] or 0.0 for t in done)
        s.update({f"{m} (paper)": sum(rows[t]["paper"][m] or 0.0 for t in done) for m in [*models, "data"]})
        sums[subset] = {"tasks": len(done), **s, "sem": sem}
        lines.append(f"| **{subset}** ({len(done)} of {len(chosen)} tasks, sum) | "
                     + " | ".join(f"{v:+.2f}" + (f" ± {sem[k]:.2f}" if k in sem else "") for k, v in s.items())
                     + " |")
    return "\n".join(lines), {"tasks": rows, "aggregates": sums}


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--tasks", type=select_tasks, default=select_tasks("easy"),
                   help="all, easy (default) / medium / hard, family names or task ids, comma-separated")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {', '.join(MODELS)}")
    p.add_argument("--seeds", default="1,2", help="training seeds, comma-separated (default 1,2)")
    p.add_argument("--size", choices=sorted(SIZES), default="cpu",
                   help="cpu (default): a model and budget a 2-core CPU trains in minutes; paper: config.yaml's")
    p.add_argument("--n_episodes", type=int, default=1000, help="expert episodes made and trained on per task "
                                                                "(paper: 3 000)")
    p.add_argument("--steps", type=int, default=200, help="--size cpu: optimizer steps per run (default 200)")
    p.add_argument("--data_dir", type=Path, default=DATA_DIR)
    p.add_argument("--runs_dir", type=Path, default=Path("runs"))
    p.add_argument("--workers", type=int, default=1, help="processes making data")
    p.add_argument("--table_only", action="store_true", help="train nothing: the table of the finished runs")
    p.add_argument("--smoke", action="store_true", help="every cell a --smoke run (tiny data and model)")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in (*MODELS, "DTXL", "RATEM", "RATE_wo_nmt") and m not in BC_MODES]
    if bad or not models:
        p.error(f"--models: unknown {', '.join(bad) or '(none)'}; choose among {', '.join(MODELS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected integers separated by commas, got {args.seeds!r}")
    if not seeds or min(seeds) < 0:
        p.error(f"--seeds: expected integers >= 0, got {args.seeds!r}")
    if args.n_episodes < 1 or args.workers < 1 or args.steps < 1:
        p.error("--n_episodes, --steps and --workers must be >= 1")
    flags = SMOKE if args.smoke else SIZES[args.size]
    data_dir = args.data_dir
    if not args.table_only:
        if not args.smoke:
            generate(args.tasks, args.n_episodes, data_dir, args.workers)
        for task in args.tasks:
            budget = []
            if args.size == "cpu" and not args.smoke:
                longest = json.loads((data_dir / task / "summary.json").read_text())["max_length"]
                budget = ["--max_episodes", str(args.n_episodes), *cpu_budget(args.n_episodes, longest, args.steps)]
            for model in models:
                for seed in seeds:
                    if (run_dir(args.runs_dir, task, model) / f"seed_{seed}" / "results.json").exists():
                        continue
                    try:
                        secs = train_one(task, model, seed, args.runs_dir, data_dir, [*flags, *budget, *extra])
                    except (Exception, SystemExit) as e:  # one failed cell does not stop the grid
                        print(f"[grid] {task} {model} seed {seed} FAILED: {e!r}", file=sys.stderr)
                        traceback.print_exc()
                        continue
                    print(f"[grid] {task} {model} seed {seed}: {secs:.0f} s", flush=True)
    text, data = table(args.tasks, models, args.runs_dir, data_dir / "smoke" if args.smoke else data_dir)
    out = args.runs_dir / "popgym"
    write_text(out / "grid.md", text + "\n")
    write_text(out / "grid.json", json.dumps(data, indent=2, default=vars))
    print(text)
    return text


if __name__ == "__main__":
    main()
