"""Episode store at paper scale: build time and size, peak memory while training or sampling, and
training throughput against the old path that held every padded window in RAM.

    python -m benchmarks.bench_data minigrid-build --data_dir benchmarks/out/minigrid_ref
    python -m benchmarks.bench_data minigrid-epoch --data_dir benchmarks/out/minigrid_ref [-- --grad_checkpoint]
    python -m benchmarks.bench_data minigrid-model [-- --grad_checkpoint]
    python -m benchmarks.bench_data atari-sample [--transitions 500000] [--batches 40] [--store PATH]
    python -m benchmarks.bench_data throughput --env tmaze|minigrid [--iters 10]

``minigrid-build`` converts the reference dataset (``collect_traj.py`` defaults: 10 000 episodes on
31×31) into its store; ``minigrid-epoch`` runs one epoch of the real train script at the reference
configuration (config.yaml) and samples the memory of the whole process tree (main process and
DataLoader workers) every 0.2 s; ``minigrid-model`` measures the network alone at that configuration;
``atari-sample`` writes a synthetic store of single 84×84 frames (or opens ``--store``, e.g. the store the
Atari reader built from DQN-replay checkpoints) and
draws DT-style batches of 128 windows × 90 steps × 4 stacked frames through the DataLoader;
``throughput`` alternates training iterations on the store and on the same windows held in RAM as
tensors (the old ``Trajectories`` path), same model, same batches. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from RATE_model.data import Trajectories, batch_loader, consecutive, dt_style, epoch_batches
from RATE_model.store import EpisodeStore, StoreWriter

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


# ------------------------------------------------------------------------------------ memory of a process tree
def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return pids


def _rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in kB (Pss splits shared pages between the processes that map them)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeMemory:
    """Peak memory of process ``pid`` and its descendants, sampled every ``interval`` seconds:
    the main process's RSS, the sum of RSS (double-counts shared pages) and the sum of PSS."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.main_rss = self.tree_rss = self.tree_pss = 0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            rolls = [_rollup(p) for p in pids]
            self.main_rss = max(self.main_rss, rolls[0][0])
            self.tree_rss = max(self.tree_rss, sum(r for r, _ in rolls))
            self.tree_pss = max(self.tree_pss, sum(p for _, p in rolls))
            self.max_procs = max(self.max_procs, len(pids))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        gb = 2**20
        return {"peak_main_rss_gb": round(self.main_rss / gb, 3), "peak_tree_rss_gb": round(self.tree_rss / gb, 3),
                "peak_tree_pss_gb": round(self.tree_pss / gb, 3), "max_processes": self.max_procs}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- Minigrid
def minigrid_build(args: argparse.Namespace) -> dict:
    from MinigridMemory.MinigridMemory_src.minigrid_data import minigrid_dataset
    from RATE_model.data import STORE, episode_files

    files = episode_files(args.data_dir)
    store_dir = Path(args.data_dir) / STORE
    if store_dir.exists():
        shutil.rmtree(store_dir)
    mem = TreeMemory(os.getpid())
    t = time.perf_counter()
    data = minigrid_dataset(args.data_dir, 90)
    seconds = time.perf_counter() - t
    return {"episodes": len(files), "steps": data.store.n_steps, "windows_90": len(data),
            "build_seconds": round(seconds, 1), "store_gb": round(_du(store_dir) / 1e9, 2),
            "episode_files_gb": round(sum(f.stat().st_size for f in files) / 1e9, 3),
            "old_path_windows_gb": round(len(data) * 90 * 3 * 84 * 84 / 1e9, 1), **mem.stop()}


def minigrid_epoch(args: argparse.Namespace) -> dict:
    run = OUT / "runs"
    cmd = [sys.executable, "MinigridMemory/MinigridMemory_src/train_minigridmemory.py", "--data_dir",
           str(args.data_dir), "--epochs", "1", "--seed", "1", "--device", "cpu", "--no_wandb",
           "--runs_dir", str(run), "--ckpt_folder", "bench_epoch", "--eval_sizes", "11", "--eval_episodes", "2",
           "--eval_max_steps", "20", "--log_every", "1", *args.extra]
    shutil.rmtree(run / "minigrid" / "bench_epoch", ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = TreeMemory(proc.pid)
    out, _ = proc.communicate()
    peak = mem.stop()
    if proc.returncode:
        raise SystemExit(out[-3000:])
    seed_dir = run / "minigrid" / "bench_epoch" / "seed_1"
    result = json.loads((seed_dir / "results.json").read_text())
    return {"command": " ".join(cmd[1:]), "wall_seconds": round(time.perf_counter() - t, 1),
            "train_seconds": result["train_seconds"], "optimizer_steps": result["optimizer_steps"], **peak}


def minigrid_model(args: argparse.Namespace) -> dict:
    """The floor set by the network itself: peak RSS of a few training steps at the reference Minigrid
    configuration on a random batch already in RAM (no dataset, no loader), episodes of 30..57 steps."""
    import resource
    import tempfile

    from MinigridMemory.MinigridMemory_src import train_minigridmemory as script
    from RATE_model.config import split_args
    from RATE_model.model import RATE
    from RATE_model.trainer import Trainer

    a, _ = script.parse_args(args.extra)
    mc, tc = split_args(a)
    mc.env = "minigrid"
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(RATE(mc).train(), tc, Path(tmp), {}, [])
        B, T = tc.batch_size, mc.context_length * mc.sections
        valid = torch.arange(T)[None] < torch.randint(30, 58, (B, 1))
        for _ in range(4):
            trainer.train_batch({"obs": torch.rand(B, T, 3, 84, 84), "rtg": torch.rand(B, T, 1),
                                 "action": torch.where(valid, torch.randint(0, 3, (B, T)), -10), "valid": valid})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"flags": args.extra, "steps": 4, "peak_rss_gb": round(peak, 3)}


# ---------------------------------------------------------------------------------------------- Atari-like
def atari_sample(args: argparse.Namespace) -> dict:
    path = args.store or OUT / f"atari_like_store_{args.transitions}"
    rng = np.random.default_rng(0)
    t, written = time.perf_counter(), not path.exists()
    if written:
        with StoreWriter(path) as w:
            left = args.transitions
            while left > 0:  # episodes of 200..3000 frames, like DQN-replay trajectories
                T = int(min(left, rng.integers(200, 3000)))
                frames = rng.integers(0, 255, (T, 84, 84), dtype=np.uint8)
                reward = (rng.random(T) < 0.02).astype(np.float32)
                w.append({"obs": frames, "action": rng.integers(0, 4, T).astype(np.int32), "reward": reward,
                          "rtg": np.cumsum(reward[::-1])[::-1].astype(np.float32)})
                left -= T
            w.close()
    build = time.perf_counter() - t
    store = EpisodeStore.open(path)
    data = dt_style(store, 90, frame_stack=4)
    keys = data.epoch_windows(0, 0)
    batches = [b.numpy() for b in epoch_batches(len(keys), 128, 0, 0)][:args.batches]
    mem = TreeMemory(os.getpid())
    t = time.perf_counter()
    n = checksum = 0
    for batch in batch_loader(data, [keys[b] for b in batches], num_workers=args.workers):
        assert batch["obs"].shape == (128, 90, 4, 84, 84) and batch["obs"].dtype == torch.uint8
        checksum += int(batch["obs"].max())  # the main process reads every byte, as a training step would
        n += 1
    seconds = time.perf_counter() - t
    return {"transitions": store.n_steps, "episodes": store.n_episodes, "store_gb": round(_du(path) / 1e9, 2),
            "write_seconds": round(build, 1) if written else "reused", "batches": n, "workers": args.workers,
            "batch_gb": round(128 * 90 * 4 * 84 * 84 / 1e9, 3), "batches_per_s": round(n / seconds, 2),
            **mem.stop()}


# ---------------------------------------------------------------------------------------------- throughput
def _to_disk(store, path: Path):
    """A copy of an in-RAM store as an on-disk store."""
    with StoreWriter(path) as w:
        for i in range(store.n_episodes):
            w.append(store.episode(i))
        return w.close()


def throughput(args: argparse.Namespace) -> dict:
    """Seconds per training iteration (batch read + forward/backward/step) on each data path, the same
    batches in the same order, interleaved in rounds of ``iters`` iterations; a fresh DataLoader per round
    (its workers start once per round, once per epoch in real training)."""
    import tempfile

    from RATE_model.config import split_args
    from RATE_model.data import default_workers, uint8_to_float
    from RATE_model.model import RATE
    from RATE_model.trainer import Trainer

    if args.env == "tmaze":
        from TMaze_new.TMaze_new_src import train_tmaze as script
        from TMaze_new.TMaze_new_src.tmaze_data import tmaze_dataset

        a, _ = script.parse_args([])
        a.sections = a.max_n_final
        mc, tc = split_args(a)
        ram = tmaze_dataset(mc.context_length, list(range(1, a.max_n_final + 1)), a.max_n_final,
                            data_dir=OUT / "tmaze_data", progress=False)
        shutil.rmtree(OUT / "tmaze_store", ignore_errors=True)
        disk = consecutive(_to_disk(ram.store, OUT / "tmaze_store"), ram.window)
        variants = {"old: padded windows as tensors in RAM": Trajectories(ram.tensors),
                    "store in RAM (T-Maze default)": ram, "store on disk": disk}
    else:
        from MinigridMemory.MinigridMemory_src import train_minigridmemory as script
        from MinigridMemory.MinigridMemory_src.minigrid_data import minigrid_dataset

        a, _ = script.parse_args([])
        mc, tc = split_args(a)
        disk = minigrid_dataset(args.data_dir, mc.context_length * mc.sections, args.max_episodes, progress=False)
        variants = {"old: padded windows as tensors in RAM": Trajectories(disk.tensors, uint8_to_float),
                    "store on disk": disk}
    mc.env = args.env
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name, data in variants.items():
            torch.manual_seed(0)
            trainers[name] = Trainer(RATE(mc).train(), tc, Path(tmp) / str(len(trainers)), {}, [data])
        for r in range(args.rounds):
            for name, data in variants.items():
                keys = data.epoch_windows(0, r)
                batches = [keys[b.numpy()] for b in epoch_batches(len(keys), tc.batch_size, 0, r)[:args.iters]]
                t = time.perf_counter()
                for raw in batch_loader(data, batches, default_workers(data)):
                    trainers[name].train_batch(data.to_device(raw))
                times[name].append((time.perf_counter() - t) / len(batches))
    old = statistics.median(times["old: padded windows as tensors in RAM"])
    return {"env": args.env, "batch_size": tc.batch_size, "window": mc.context_length * mc.sections,
            "model": f"{mc.n_layer} layers, d {mc.d_model}, K {mc.context_length}, N {mc.sections}",
            "windows": len(disk), "iters_per_round": args.iters, "rounds": args.rounds,
            "workers": {k: default_workers(d) for k, d in variants.items()},
            "sec_per_iter": {k: round(statistics.median(v), 4) for k, v in times.items()},
            "all_sec_per_iter": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "throughput_vs_old": {k: round(old / statistics.median(v), 3) for k, v in times.items()}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["minigrid-build", "minigrid-epoch", "minigrid-model", "atari-sample", "throughput"])
    p.add_argument("--data_dir", type=Path, default=OUT / "minigrid_ref")
    p.add_argument("--transitions", type=int, default=500_000)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--store", type=Path, help="atari-sample: an existing episode store (default: a synthetic one)")
    p.add_argument("--env", choices=["tmaze", "minigrid"], default="tmaze")
    p.add_argument("--iters", type=int, default=10, help="throughput: iterations per round and variant")
    p.add_argument("--rounds", type=int, default=3, help="throughput: interleaved rounds")
    p.add_argument("--max_episodes", type=int, default=1000,
                   help="throughput on Minigrid: episodes (the old path must hold their windows in RAM)")
    p.add_argument("extra", nargs="*", help="minigrid-epoch/-model: extra train-script flags (after --)")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    fn = {"minigrid-build": minigrid_build, "minigrid-epoch": minigrid_epoch, "minigrid-model": minigrid_model,
          "atari-sample": atari_sample,
          "throughput": throughput}[args.what]
    res = {"what": args.what, "machine": describe(torch.device("cpu")), "date": time.strftime("%Y-%m-%d"), **fn(args)}
    print(json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    main()
