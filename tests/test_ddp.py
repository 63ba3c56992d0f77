"""Multi-process training (torchrun + DistributedDataParallel) on CPU with gloo.

Two processes, each on its shard of every global batch, must compute the same gradients and reach
the same parameters as one process on the combined batch, also when the shards hold different
numbers of valid steps and in ``--memory_grad detach`` mode (one DDP backward per segment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from RATE_model import distributed
from RATE_model.config import TrainConfig
from RATE_model.data import Trajectories
from RATE_model.trainer import Trainer, build_scheduler
from tests.helpers import random_batch, tiny_model

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3


def _data() -> Trajectories:
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(1)
        # 5 windows per global batch: shards of 2 and 3 windows with different valid counts
        return Trajectories(random_batch(15, 12, valid_len=[12, 3, 7, 12, 5, 9, 2, 12, 4, 6, 12, 8, 1, 10, 11]))


def _train(memory_grad: str, tmp: Path) -> list[dict[str, torch.Tensor]]:
    """Grads and params after each of STEPS global batches (this process's shard of each)."""
    torch.manual_seed(0)
    model = tiny_model("RATE", memory_grad=memory_grad, dropout=0.0).train()
    data = _data()
    # fp32 named here: the spawned ranks do not inherit conftest's "auto means fp32", and on a CPU with native
    # bf16 they would train in bf16 while the single process of the comparison runs fp32
    cfg = TrainConfig(batch_size=5, warmup_steps=1, grad_clip=0.5, precision="fp32")
    trainer = Trainer(model, cfg, tmp, {}, [data])
    # Plain SGD for the comparison: Adam's g / (|g| + eps) turns float-rounding differences in
    # near-zero gradients (~1e-9, from summing shards in another order) into 1e-6-sized steps.
    trainer.opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer.sched = build_scheduler(trainer.opt, cfg, total_steps=10)
    out = []
    for b in range(STEPS):
        idx = torch.arange(5 * b, 5 * b + 5)
        trainer.train_batch(data.batch(distributed.shard(idx)))
        snap = {f"grad.{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        snap.update({f"param.{n}": p.detach().clone() for n, p in model.named_parameters()})
        out.append(snap)
    return out


def _worker(rank: int, world: int, memory_grad: str, tmp: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    # Rendezvous through a file, not a TCP port: probing for a free port and binding it later raced
    # with other processes on a busy machine (one failure in eight full runs).
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        result = _train(memory_grad, Path(tmp) / f"rank{rank}")
        torch.save(result, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("memory_grad", ["bptt", "detach"])
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path, memory_grad):
    mp.spawn(_worker, args=(2, memory_grad, str(tmp_path)), nprocs=2, join=True)
    single = _train(memory_grad, tmp_path / "single")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for step, ref in enumerate(single):
        for r, got in enumerate(ranks):
            assert got[step].keys() == ref.keys(), (step, r, set(got[step]) ^ set(ref))
            for k, v in ref.items():
                assert torch.allclose(got[step][k], v, rtol=0, atol=1e-6), (memory_grad, step, r, k)
    if memory_grad == "detach":  # the MRV gets no gradient in detach mode, under DDP as without it
        assert not any(k.startswith("grad.memory.mrv") for k in ranks[0][0])


def test_torchrun_runs_the_train_script_with_two_cpu_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "TMaze_new/TMaze_new_src/train_tmaze.py",
           "--smoke", "--device", "cpu", "--no_wandb", "--runs_dir", str(tmp_path / "runs"),
           "--data_dir", str(tmp_path / "data"), "--ckpt_folder", "ddp", "--ckpt_every", "2"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "runs" / "tmaze" / "ddp" / "seed_1"
    result = json.loads((run / "results.json").read_text())
    assert set(result["metrics"]) == {"10", "20"} and result["optimizer_steps"] > 0
    assert res.stdout.count("[tmaze] ddp seed 1:") == 1  # only rank 0 reports
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["complete"] and len(ckpt["rng_per_rank"]) == 2
    assert not list(run.glob("checkpoints/.*tmp*"))
