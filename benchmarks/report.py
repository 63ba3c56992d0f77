"""Markdown tables from the JSON lines written by run_all.sh (benchmarks/out/{train,eval}.jsonl).

    python benchmarks/report.py [benchmarks/out]
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
        paper = r.get("paper_flops_achieved_over_gemm", "")
        out.append(f"| {r['preset']} | {r['memory_grad']} | {opts} | {r['sec_per_iter']:.2f} | "
                   f"{r['traj_per_sec']:.1f} | {r['peak_memory_gb']:.2f} ({r['peak_memory_kind']}) | "
                   f"{r['flops_per_iter'] / 1e9:.0f} | "
                   f"{r['gemm_flops_per_sec'] / 1e9:.0f} | {r['achieved_over_gemm']:.2f} | {paper} |")
    return "\n".join(out)


def eval_table(runs: list[dict]) -> str:
    out = ["| preset | dtype | T | episodes | seconds | ms / batched step | ms / step / episode |", "|" + "---|" * 7]
    for r in runs:
        dtype = "bf16" if r["bf16"] else "fp32"
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
    print(eval_table(evals))


if __name__ == "__main__":
    main()
