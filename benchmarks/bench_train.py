"""Time the full training iteration (all N segments of one batch: forward, backward, clipping,
optimizer step) exactly as RATE_model.trainer.Trainer runs it.

    python -m benchmarks.bench_train --preset tmaze-paper [--memory_grad detach] [--precision fp32] [--json]
    python -m benchmarks.bench_train --preset vizdoom-cpu --profile 12   # + the top ops of one iteration

Reports the precision used (``--precision auto``, the default, resolves as in the train scripts),
the median seconds per iteration over >= 5 iterations after warm-up, trajectories per second, peak
resident memory (CPU) or peak allocated memory (CUDA), parameters, the FLOPs of one iteration
(torch.utils.flop_counter), the fp32 and bf16 GEMM rates measured in the same run and the achieved
fraction of the rate of the precision used. ``--profile N``: the N ops with the most self CPU time in
one iteration (torch.profiler).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import describe, gemm_rate, peak_rss_gb, print_result, sync
from benchmarks.presets import PRESETS
from RATE_model.config import PRECISIONS, TrainConfig
from RATE_model.model import RATE
from RATE_model.trainer import Trainer, resolve_device

PAPER_FLOPS = {"tmaze-paper": 328.4e9}  # one iteration of this configuration in the paper's code


def make_batch(preset, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T = preset.batch_size, preset.model.context_length * preset.model.sections
    obs = torch.rand(B, T, *preset.obs_shape, generator=g)
    if preset.continuous:  # action vectors in [-1, 1]
        action = torch.rand(B, T, preset.n_actions, generator=g) * 2 - 1
    else:
        action = torch.randint(0, preset.n_actions, (B, T), generator=g)
    return {
        "obs": obs.to(device),
        "rtg": torch.rand(B, T, 1, generator=g).to(device),
        "action": action.to(device),
        "valid": torch.ones(B, T, dtype=torch.bool, device=device),
    }


def profile_ops(trainer: Trainer, batch: dict[str, torch.Tensor], n: int) -> list[dict]:
    """The n ops with the most self CPU time in one training iteration: name, share, ms, calls."""
    from torch.profiler import profile

    with profile() as prof:
        trainer.train_batch(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3),
             "ms": round(e.self_cpu_time_total / 1000, 1), "calls": e.count} for e in events[:n]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--memory_grad", choices=("bptt", "detach"), default="bptt")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: as the train scripts")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="alias of --precision bf16")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also list the N costliest ops")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--grad_checkpoint", action="store_true", help="per-layer gradient checkpointing")
    p.add_argument("--frozen_encoder", action="store_true",
                   help="as --freeze_encoder trains: the observation encoder fixed, its outputs computed beforehand "
                        "(image presets)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    preset = PRESETS[args.preset]
    preset.model.memory_grad = args.memory_grad
    torch.manual_seed(0)
    model = RATE(preset.model).to(device).train()
    if args.frozen_encoder:
        model.enc.obs.requires_grad_(False)
    if args.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, TrainConfig(batch_size=preset.batch_size, warmup_steps=10,
                                             precision=args.precision, grad_checkpoint=args.grad_checkpoint),
                          Path(tmp), {}, [])
        batch = make_batch(preset, device)
        if args.frozen_encoder:  # what training sees: the cached encodings (RATE_model.data.embedded)
            with torch.no_grad():
                batch["obs"] = model.enc.embed_obs(batch["obs"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(args.warmup + args.iters):
            sync(device)
            t = time.perf_counter()
            trainer.train_batch(batch)
            sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else peak_rss_gb()
        with FlopCounterMode(display=False) as fc:
            trainer.train_batch(batch)
        flops = fc.get_total_flops()
        top = profile_ops(trainer, batch, args.profile) if args.profile else None
    gemms = {name: gemm_rate(device, dtype=dtype) for name, dtype in (("fp32", torch.float32),
                                                                       ("bf16", torch.bfloat16))}
    gemm = gemms[trainer.precision]
    sec = statistics.median(times)
    res = {
        "preset": args.preset, "memory_grad": args.memory_grad, "device": describe(device),
        "precision": trainer.precision, "precision_requested": args.precision, "bf16": trainer.precision == "bf16",
        "compile": args.compile, "grad_checkpoint": args.grad_checkpoint,
        "frozen_encoder": args.frozen_encoder, "date": time.strftime("%Y-%m-%d"),
        "sec_per_iter": round(sec, 4), "iter_times": [round(t, 4) for t in times],
        "traj_per_sec": round(preset.batch_size / sec, 2),
        "peak_memory_gb": round(peak, 3), "peak_memory_kind": "cuda allocated" if device.type == "cuda" else "RSS",
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_iter": flops, "gemm_flops_per_sec": round(gemm),
        "gemm_fp32_flops_per_sec": round(gemms["fp32"]), "gemm_bf16_flops_per_sec": round(gemms["bf16"]),
        "achieved_over_gemm": round(flops / sec / gemm, 3),
    }
    if args.preset in PAPER_FLOPS:
        res["paper_flops_per_iter"] = PAPER_FLOPS[args.preset]
        res["paper_flops_achieved_over_gemm"] = round(PAPER_FLOPS[args.preset] / sec / gemm, 3)
    if top is not None:
        res["profile"] = top
    print_result(res, args.json)
    return res


if __name__ == "__main__":
    main()
