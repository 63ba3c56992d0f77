"""Time one attention layer at a preset's training shapes on both kernels: the explicit batched GEMMs and
the fused ``scaled_dot_product_attention`` (``RelMultiHeadAttention.fused``), forward and forward + backward.
The attention sub-block of one layer only (its projections, scores, softmax, values and output).

    python -m benchmarks.bench_attention --preset tmaze-paper [--precision bf16] [--json]

It runs as in training: a whole segment (memory tokens included) against itself under the model's mask,
under autocast where the precision is bf16. Median of ``--reps`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.machine import describe, print_result, sync
from benchmarks.presets import PRESETS
from RATE_model.config import PRECISIONS
from RATE_model.layers import attention_bias
from RATE_model.model import RATE, attention_mask
from RATE_model.precision import autocast, compute_dtype, resolve_precision
from RATE_model.trainer import resolve_device


def _median_ms(fn, device: torch.device, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    preset = PRESETS[args.preset]
    torch.manual_seed(0)
    model = RATE(preset.model).to(device).train()
    cfg, layer = model.cfg, model.layers[0]
    B, m = preset.batch_size, cfg.num_mem_tokens
    S = 3 * cfg.context_length + 2 * m
    x = torch.randn(B, S, cfg.d_model, device=device, requires_grad=True)
    res = {"preset": args.preset, "device": describe(device), "precision": precision, "date": time.strftime("%Y-%m-%d"),
           "batch": B, "tokens": S, "heads": cfg.n_head, "form": "absorbed" if layer.attn.absorbed else "standard"}
    seg_type = model._layout(3 * cfg.context_length, device)
    k_pos = torch.arange(S, device=device)
    blocked = attention_mask(seg_type, k_pos, seg_type, k_pos, torch.ones(B, S, dtype=torch.bool, device=device))
    sin, cos, key_feat = model.position_table(S, device)
    g = torch.randn(B, S, cfg.d_model, device=device)
    attn = layer.attn
    for fused in (False, True):
        attn.fused = fused
        name = "fused" if fused else "explicit"

        def forward(fused: bool = fused) -> torch.Tensor:
            with autocast(device, precision):
                mask = attention_bias(blocked, attn.n_head, compute_dtype(x), attn.absorbed, fused)
                return attn(x, None, sin, cos, key_feat, mask, model.u, model.v)

        res[f"{name}_forward_ms"] = _median_ms(forward, device, args.reps)
        res[f"{name}_forward_backward_ms"] = _median_ms(
            lambda: torch.autograd.grad(forward().float(), x, g), device, args.reps)
    res["fused_time_over_explicit"] = round(res["fused_forward_backward_ms"] / res["explicit_forward_backward_ms"], 2)
    print_result(res, args.json, width=38)
    return res


if __name__ == "__main__":
    main()
