"""Numeric precision of a run: fp32, or bf16 autocast where the hardware runs bf16 natively.

``auto`` (the default everywhere) is bf16 autocast on a CPU with native bf16 matrix units
(avx512_bf16 or AMX) and fp32 elsewhere. CUDA stays fp32 under ``auto``: at these model sizes a GPU
step is launch-bound and bf16 measured slower than fp32 on an H100. A CPU without native bf16
emulates it: on an AVX2-only EPYC bf16 matrix products ran 100–270× slower than fp32
(benchmarks/RESULTS.md), hence the check. Under bf16 only the forward pass is autocast: master
weights, gradients, the optimizer state and the loss stay fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from RATE_model.config import PRECISIONS, ConfigError


def native_bf16_cpu() -> bool:
    """True when this CPU runs bf16 matrix products natively (avx512_bf16 or AMX tiles, through oneDNN)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on a CPU with native bf16, else 'fp32'; 'fp32' and 'bf16' are kept as given."""
    if name not in PRECISIONS:
        raise ConfigError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    return "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"


def describe_precision(name: str, device: torch.device) -> str:
    """One line saying which precision a run uses and why (printed once per run)."""
    chosen = resolve_precision(name, device)
    if name != "auto":
        why = "as requested"
        if chosen == "bf16" and device.type == "cpu" and not native_bf16_cpu():
            why += "; this CPU has no native bf16 (no avx512_bf16/AMX), so it is emulated and much slower than fp32"
    elif device.type == "cpu":
        why = "auto: this CPU " + ("runs bf16 natively" if chosen == "bf16" else "has no native bf16 (avx512_bf16/AMX)")
    else:
        why = "auto: fp32 on CUDA (bf16 measured slower at these sizes)"
    text = "bf16 autocast" if chosen == "bf16" else "fp32"
    return f"precision: {text} ({why}; --precision fp32|bf16 forces one)"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast for ``precision == 'bf16'`` (already resolved), nothing otherwise."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"autocast needs a resolved precision (fp32 or bf16), got {precision!r}")
    with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
        yield


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on ``device`` right now; None where autocast is off."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype an op on x computes in: autocast's where it is on for x's device, else x's own."""
    return autocast_dtype(x.device) or x.dtype
