"""Measure a speed change: every bench_train preset (and the T-Maze evaluation) at an earlier commit and at
the working tree, interleaved run by run on this machine, as one markdown table.

    python -m benchmarks.before_after --before 0d2973e [--presets tmaze-paper vizdoom-cpu] [--out DIR]

The earlier commit is checked out into a temporary git worktree and run with this environment's Python
(its own RATE_model is imported: the benchmark runs with that folder as the working directory). Each preset
runs in --precision auto and fp32, before then after, so drift of a shared machine falls on both alike.
The JSON lines go to DIR/before_after.jsonl and the table to DIR/before_after.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, module: str, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", "--json", *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[2:])} failed in {cwd}:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| preset | precision | s / iter before | s / iter after | speed-up | GFLOP / iter | "
             "achieved / GEMM before | after |", "|" + "---|" * 8]
    for r in rows:
        if r["kind"] != "train":
            continue
        b, a = r["before"], r["after"]
        auto = " (auto)" if r["precision"] == "auto" else ""
        lines.append(f"| {r['preset']} | {a['precision']}{auto} | {b['sec_per_iter']:.3f} | {a['sec_per_iter']:.3f} | "
                     f"{b['sec_per_iter'] / a['sec_per_iter']:.2f}× | {a['flops_per_iter'] / 1e9:.0f} | "
                     f"{b['achieved_over_gemm']:.3f} | {a['achieved_over_gemm']:.3f} |")
    evals = [r for r in rows if r["kind"] == "eval"]
    if evals:
        lines += ["", "| T-Maze evaluation | precision | s before | s after | speed-up |", "|---|---|---|---|---|"]
        for r in evals:
            b, a = r["before"]["total_seconds"], r["after"]["total_seconds"]
            lines.append(f"| {r['preset']}, {r['episodes']} episodes × {r['T']} steps | {r['precision']} | "
                         f"{b:.2f} | {a:.2f} | {b / a:.2f}× |")
    first = next((r["after"] for r in rows if r["kind"] == "train"), None)
    if first is not None:
        fp32, bf16 = first["gemm_fp32_flops_per_sec"] / 1e9, first["gemm_bf16_flops_per_sec"] / 1e9
        lines += ["", f"GEMM rates (2048², measured in the run of {first['preset']}): fp32 {fp32:.0f} GFLOP/s, "
                  f"bf16 {bf16:.0f} GFLOP/s. Device: {first['device']}. Date: {first['date']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    p.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=sorted(PRESETS))
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--eval_episodes", type=int, default=100, help="T-Maze evaluation (0: skip)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        made = subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise SystemExit(f"error: --before {args.before}: {made.stderr.strip().splitlines()[-1]}")
        try:
            jobs = [("train", preset, prec) for preset in args.presets for prec in ("auto", "fp32")]
            if args.eval_episodes:
                jobs += [("eval", "tmaze-paper", prec) for prec in ("auto", "fp32")]
            for i, (kind, preset, prec) in enumerate(jobs, 1):
                print(f"[{i}/{len(jobs)}] {kind} {preset} {prec}", file=sys.stderr, flush=True)
                if kind == "train":
                    bench = ["--preset", preset, "--precision", prec, "--iters", str(args.iters),
                             "--warmup", str(args.warmup)]
                    row = {"kind": kind, "preset": preset, "precision": prec}
                else:
                    bench = ["--preset", preset, "--T", "900", "--episodes", str(args.eval_episodes),
                             "--precision", prec]
                    row = {"kind": kind, "preset": preset, "precision": prec, "T": 900, "episodes": args.eval_episodes}
                module = "bench_train" if kind == "train" else "bench_eval"
                row["before"] = run(before, module, bench)
                row["after"] = run(ROOT, module, bench)
                rows.append(row)
                with open(args.out / "before_after.jsonl", "a") as f:
                    f.write(json.dumps({**row, "before_ref": args.before, "time": time.strftime("%F %T")}) + "\n")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False,
                           capture_output=True)
    text = table(rows)
    (args.out / "before_after.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
