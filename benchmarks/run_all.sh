#!/usr/bin/env bash
# Re-measure every figure of benchmarks/RESULTS.md: one JSON line per run in $OUT (default benchmarks/out),
# then the markdown tables (python -m benchmarks.report).
#   bash benchmarks/run_all.sh            # CPU: about 20 minutes on 2 cores
#   DEVICE=cuda bash benchmarks/run_all.sh
# Run it on an otherwise idle machine: the figures are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/out}
DEV=${DEVICE:+--device $DEVICE}
mkdir -p "$OUT"
train() { echo "bench_train $*" >&2; $PY -m benchmarks.bench_train $DEV --json "$@" | tail -1 >> "$OUT/train.jsonl"; }
evaluate() { echo "bench_eval $*" >&2; $PY -m benchmarks.bench_eval $DEV --json "$@" | tail -1 >> "$OUT/eval.jsonl"; }

# every preset in the default precision (auto, with its costliest ops) and in fp32
for preset in tmaze-paper vizdoom-cpu memmaze-cpu atari-cpu mujoco-cpu; do
  train --preset "$preset" --profile 8
  train --preset "$preset" --precision fp32
done
train --preset tmaze-paper --memory_grad detach
train --preset tmaze-paper --memory_grad bptt --grad_checkpoint
train --preset tmaze-paper-dt
train --preset vizdoom-paper --memory_grad bptt --iters 5 --warmup 1
train --preset mujoco-cpu-dt
evaluate --preset tmaze-paper --T 900 --episodes 100
evaluate --preset tmaze-paper --T 900 --episodes 100 --precision fp32
evaluate --preset tmaze-paper --protocol --episodes 100
$PY -m benchmarks.report "$OUT"
