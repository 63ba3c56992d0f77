"""Multi-process training through ``torchrun`` (one process per GPU, or per CPU slot with gloo).

Nothing here runs unless ``WORLD_SIZE`` > 1: a plain ``python train_*.py`` never touches
``torch.distributed``. Under torchrun every rank builds the same data and model, takes its shard of
every global batch, and DistributedDataParallel averages the gradients; rank 0 alone logs and writes
files; evaluation episodes are split across ranks and their results gathered.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

_comm_device = torch.device("cpu")


def launched() -> bool:
    """True when started by torchrun (or similar) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); return this rank's device.

    Under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``. Without torchrun ``device`` is returned as is.
    """
    global _comm_device
    if not launched() or active():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    _comm_device = device if device.type == "cuda" else torch.device("cpu")
    return device


def teardown(wait: bool = True) -> None:
    """Leave the process group (a no-op outside torchrun). With ``wait`` (the normal end of a run) every
    rank waits for the others first: a rank that destroyed its gloo group while another was still
    sending aborted ("terminate called without an active exception") in 7 of 28 torchrun test runs.
    After an error (``wait=False``) the other ranks may never arrive, so leave at once."""
    if active():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def shard(items: Any) -> Any:
    """This rank's contiguous part of a sequence, tensor or array (sizes differ by at most one)."""
    n, r, w = len(items), rank(), world_size()
    lo, hi = n * r // w, n * (r + 1) // w
    return items[lo:hi]


def all_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks (a new tensor on ``t``'s device); ``t`` itself outside torchrun."""
    if not active():
        return t
    out = t.detach().to(_comm_device, copy=True)
    dist.all_reduce(out)
    return out.to(t.device)


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (so every rank takes the same branch)."""
    if not active():
        return flag
    return bool(all_sum(torch.tensor([float(flag)])).item() > 0)


def gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (picklable objects)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
