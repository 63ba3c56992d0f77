"""Machine facts and the GEMM reference rates (fp32, bf16), shared by the benchmark scripts."""

from __future__ import annotations

import json
import resource
import statistics
import time

import torch

from RATE_model.trainer import describe_device

describe = describe_device  # the device string every benchmark prints (the run record's, RATE_model.trainer)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(device: torch.device, n: int = 2048, reps: int = 7, dtype: torch.dtype = torch.float32,
              budget_s: float = 3.0) -> float:
    """Median FLOP/s of an n x n matmul. A 512² product is timed first; where the dtype is emulated
    (bf16 on a CPU without avx512_bf16/AMX ran ~270× slower than fp32) n shrinks so that ``reps``
    products fit ``budget_s``."""

    def once(m: int) -> float:
        a, b = torch.randn(m, m, device=device, dtype=dtype), torch.randn(m, m, device=device, dtype=dtype)
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        return time.perf_counter() - t

    once(256)
    probe = 2 * 512**3 / once(512)
    while n > 256 and 2 * n**3 / probe * reps > budget_s:
        n //= 2
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def print_result(res: dict, as_json: bool, width: int = 32) -> None:
    """A benchmark's result: one JSON line (``--json``), else one ``name value`` line per field."""
    if as_json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        print(f"{k:{width}} {v}")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
