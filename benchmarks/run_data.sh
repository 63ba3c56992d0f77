#!/usr/bin/env bash
# Re-measure the episode-store figures of benchmarks/RESULTS.md ("Datasets at paper scale"): one JSON
# line per measurement in $OUT/data.jsonl. About 40 minutes on 2 idle cores, ~13 GB of disk in $OUT.
#   bash benchmarks/run_data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
bench() { echo "bench_data $*" >&2; $PY -m benchmarks.bench_data "$@" | tail -1 >> "$OUT/data.jsonl"; }

# the Minigrid reference dataset: collect_traj.py defaults (10 000 episodes on 31x31), resumable
$PY MinigridMemory/get_data/collect_traj.py --out_dir "$OUT/minigrid_ref"
bench minigrid-build --data_dir "$OUT/minigrid_ref"
bench minigrid-epoch --data_dir "$OUT/minigrid_ref"
bench minigrid-epoch --data_dir "$OUT/minigrid_ref" -- --grad_checkpoint
bench minigrid-model
bench minigrid-model -- --grad_checkpoint
bench atari-sample --transitions 500000 --batches 40 --workers 1
bench atari-sample --transitions 500000 --batches 40 --workers 2
bench throughput --env tmaze --iters 15 --rounds 3
bench throughput --env minigrid --data_dir "$OUT/minigrid_ref" --max_episodes 1000 --iters 10 --rounds 3
