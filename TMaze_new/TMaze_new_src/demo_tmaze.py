"""`make demo`: RATE vs DT on T-Maze at a CPU-sized configuration, end to end in a few minutes.

Both models see training corridors of up to T = 30 steps (RATE: 3 segments of K = 10 with memory;
DT: one 30-step context). Evaluated on 100 fixed seeds per length; writes results/tmaze_demo.json
({"<model>": {"<T>": success_rate}}) and results/tmaze_demo.png, and prints a table.

Flags given to the demo are passed to both training commands, e.g. ``--precision fp32`` to force fp32
where the default (auto) would train in bf16.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from RATE_model.cli import run_main
from RATE_model.files import save_figure, write_text
from TMaze_new.TMaze_new_src import train_tmaze

OUT = Path("results")
TRAIN_T = 30
LENGTHS = [9, 30, 90, 150, 300, 900]
COMMON = ("--context_length 10 --max_n_final 3 --n_layer 3 --n_head 4 --d_head 16 --d_inner 64 --skip_dec_ffn "
          "--lr 1e-3 --warmup_steps 50 --eval_episodes 100 --runs_dir runs/demo --no_wandb "
          f"--eval_lengths {','.join(map(str, LENGTHS))}")
MODELS = {
    "RATE": "--model_mode RATE --nmt 5 --mem_len 0 --n_head_ca 4 --mrv_act relu --epochs 8 --ckpt_folder RATE",
    "DT": "--model_mode DT --nmt 0 --mem_len 0 --n_head_ca 0 --mrv_act no_act --epochs 5 --ckpt_folder DT",
}


def table(results: dict[str, dict[str, float]]) -> str:
    head = "model | " + " | ".join(f"T={T}" + ("*" if T == TRAIN_T else "") for T in LENGTHS)
    rows = [f"{m:5} | " + " | ".join(f"{r[str(T)]:.2f}".rjust(len(f"T={T}")) for T in LENGTHS)
            for m, r in results.items()]
    return "\n".join([head, "-" * len(head), *rows, f"(* training length; 3x = T={3 * TRAIN_T})"])


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results.items():
        ax.plot(LENGTHS, [r[str(T)] for T in LENGTHS], marker="o", label=name)
    ax.axvline(TRAIN_T, color="gray", ls="--", lw=1, label="training length")
    ax.set(xscale="log", xlabel="corridor length T", ylabel="success rate", ylim=(0, 1.05),
           title="T-Maze: success vs corridor length")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    extra = sys.argv[1:] if argv is None else argv
    OUT.mkdir(exist_ok=True)
    results, t0 = {}, time.time()
    for name, flags in MODELS.items():
        argv = shlex.split(f"{COMMON} {flags}") + extra
        print(f"\n== {name}: python3 TMaze_new/TMaze_new_src/train_tmaze.py {' '.join(argv)}", flush=True)
        res = train_tmaze.main(argv)
        results[name] = res["mean"]
    write_text(OUT / "tmaze_demo.json", json.dumps(results, indent=2))
    plot(results, OUT / "tmaze_demo.png")
    print(f"\nT-Maze success rate (100 seeds per length), total {time.time() - t0:.0f}s\n")
    print(table(results))
    print(f"\nwrote {OUT / 'tmaze_demo.json'} and {OUT / 'tmaze_demo.png'}")


if __name__ == "__main__":
    run_main(main)
