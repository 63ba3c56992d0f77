"""Markdown tables from the JSON lines written by run_all.sh (benchmarks/out/{train,eval}.jsonl).

    python -m benchmarks.report [benchmarks/out]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def train_table(runs: list[dict]) -> str:
    out = ["| preset | memory_grad | options | s / iter (median) | traj / s | peak memory GB | GFLOP / iter | "
           "GEMM GFLOP/s | achieved / GEMM | paper FLOPs / GEMM |", "|" + "---|" * 10]
    for r in runs:
        opts = ", ".join(k for k in ("bf16", "grad_checkpoint", "compile") if r.get(k)) or "fp32"
        if r.get("precision_requested") == "auto":
            opts = f"auto = {opts}"
        paper = r.get("paper_flops_achieved_over_gemm", "")
        out.append(f"| {r['preset']} | {r['memory_grad']} | {opts} | {r['sec_per_iter']:.2f} | "
                   f"{r['traj_per_sec']:.1f} | {r['peak_memory_gb']:.2f} ({r['peak_memory_kind']}) | "
                   f"{r['flops_per_iter'] / 1e9:.0f} | "
                   f"{r['gemm_flops_per_sec'] / 1e9:.0f} | {r['achieved_over_gemm']:.2f} | {paper} |")
    return "\n".join(out)


def precision_table(runs: list[dict]) -> str:
    """Per preset: the default (--precision auto) against --precision fp32, with both GEMM rates."""
    out = ["| preset | auto chose | s / iter auto | s / iter fp32 | fp32 time / auto time | GEMM fp32 GFLOP/s | "
           "GEMM bf16 GFLOP/s | achieved / GEMM of the precision used (auto) |", "|" + "---|" * 8]
    by = {}
    for r in runs:
        if r.get("precision_requested") in ("auto", "fp32") and r["memory_grad"] == "bptt" and not r.get("compile") \
                and not r.get("grad_checkpoint"):
            by.setdefault(r["preset"], {})[r["precision_requested"]] = r
    for preset, pair in by.items():
        if len(pair) < 2:
            continue
        a, f = pair["auto"], pair["fp32"]
        out.append(f"| {preset} | {a['precision']} | {a['sec_per_iter']:.2f} | {f['sec_per_iter']:.2f} | "
                   f"{f['sec_per_iter'] / a['sec_per_iter']:.2f} | {a['gemm_fp32_flops_per_sec'] / 1e9:.0f} | "
                   f"{a['gemm_bf16_flops_per_sec'] / 1e9:.1f} | {a['achieved_over_gemm']:.2f} |")
    return "\n".join(out)


def profile_tables(runs: list[dict]) -> str:
    """The costliest ops of one iteration, per profiled run (bench_train --profile N)."""
    parts = []
    for r in runs:
        if r.get("profile"):
            ops = "; ".join(f"{e['op'].removeprefix('aten::')} {100 * e['share']:.0f} %" for e in r["profile"])
            parts.append(f"- {r['preset']} ({r.get('precision', 'fp32')}, {r['sec_per_iter']:.2f} s / iter): {ops}")
    return "\n".join(parts)


def eval_table(runs: list[dict]) -> str:
    out = ["| preset | dtype | T | episodes | seconds | ms / batched step | ms / step / episode |", "|" + "---|" * 7]
    for r in runs:
        dtype = r.get("precision") or ("bf16" if r["bf16"] else "fp32")
        for x in r["runs"]:
            out.append(f"| {r['preset']} | {dtype} | {x['T']} | {x['episodes']} | {x['seconds']:.1f} | "
                       f"{x['ms_per_batched_step']:.1f} | {x['ms_per_step_per_episode']:.3f} |")
        if len(r["runs"]) > 1:
            total = f"**{r['total_seconds']:.0f}**"
            out.append(f"| {r['preset']} | {dtype} | **all {len(r['runs'])} lengths** | | {total} | | |")
    return "\n".join(out)


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/out")
    train, evals = rows(folder / "train.jsonl"), rows(folder / "eval.jsonl")
    devices = sorted({r["device"] for r in train + evals})
    print("Machine: " + "; ".join(devices) + "\n")
    print(train_table(train) + "\n")
    print(precision_table(train) + "\n")
    print(profile_tables(train) + "\n")
    print(eval_table(evals))


if __name__ == "__main__":
    main()
