"""What every ``train_*.py`` does after parsing its flags: per seed, build data, model and trainer,
train (resumable), evaluate, and write ``results.json``; plus clean one-line errors for bad input."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from RATE_model import checkpoint as ckpt_io
from RATE_model import distributed
from RATE_model.checkpoint import CheckpointError
from RATE_model.config import ConfigError, ModelConfig, TrainConfig
from RATE_model.data import DataError, Windows
from RATE_model.logger import RunLogger
from RATE_model.model import RATE
from RATE_model.precision import autocast, describe_precision, resolve_precision
from RATE_model.trainer import NonFiniteLossError, Trainer, resolve_device

USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteLossError, FileNotFoundError)


def load_defaults(path: Path) -> dict[str, Any]:
    """An environment's config.yaml as parser defaults."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping of flag names to values")
    return data


def run_main(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Call ``main``; report configuration and data problems on one line (exit 2), Ctrl-C as 130."""
    try:
        main(argv)
    except USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)


def episode_folder(args: Any, make_smoke_data: Callable[[Path], Any], has_episodes: Callable[[Path], Any],
                   how: str) -> Path:
    """The episode folder a train script reads: under ``--smoke`` a tiny dataset made into
    ``<data_dir>/smoke`` (no separate step), else ``--data_dir``, which must hold episodes (``how``
    says how to make them)."""
    if args.smoke:
        smoke_dir = Path(args.data_dir) / "smoke"
        make_smoke_data(smoke_dir)
        return smoke_dir
    if not has_episodes(Path(args.data_dir)):
        raise FileNotFoundError(f"no episodes in {args.data_dir}: {how} (or try --smoke)")
    return Path(args.data_dir)


def seeds_of(start: int, end: int) -> list[int]:
    """The paper scripts' inclusive seed range ``--start_seed``..``--end_seed``."""
    if end < start:
        raise ConfigError(f"--end_seed {end} is smaller than --start_seed {start}")
    return list(range(start, end + 1))


def run_seeds(args: Any, explicit: set[str]) -> list[int]:
    """``--seed S`` alone means one run with seed S; otherwise the range --start_seed..--end_seed."""
    if getattr(args, "seed", None) is None:
        return seeds_of(args.start_seed, args.end_seed)
    for name in ("start_seed", "end_seed"):
        if name in explicit and getattr(args, name) != args.seed:
            raise ConfigError(f"--seed {args.seed} contradicts --{name} {getattr(args, name)} "
                              "(--seed S runs the single seed S)")
    return [args.seed]


def _plain(args: Any) -> dict[str, Any]:
    """The parsed flags as JSON-friendly values (stored in config.json and every checkpoint)."""
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in sorted(vars(args).items())}


def run_experiment(
    args: Any,
    env: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    build_stages: Callable[[], list[Windows]],
    evaluate: Callable[[RATE], dict[str, Any]],
    seeds: list[int],
    runs_dir: Path,
) -> dict[str, Any]:
    """Train and evaluate one model per seed; returns and writes {"runs": {seed: metrics}, ...}.

    Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 alone writes files and logs.
    Nothing in the run directory is written before the flags, the data and any checkpoint to resume
    from have been checked.
    """
    model_config.validate()
    train_config.validate()
    device = resolve_device(train_config.device)
    root = Path(runs_dir) / env / (args.ckpt_folder or model_config.model_mode)
    if args.resume not in (None, "latest") and len(seeds) > 1:
        raise ConfigError("--resume PATH needs a single seed (--seed S, or --start_seed = --end_seed); "
                          "use --resume latest")
    device = distributed.setup(device)
    try:
        result = _run_seeds(args, env, model_config, train_config, build_stages, evaluate, seeds, root, device)
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return result


def _run_seeds(args: Any, env: str, model_config: ModelConfig, train_config: TrainConfig,
               build_stages: Callable[[], list[Windows]], evaluate: Callable[[RATE], dict[str, Any]],
               seeds: list[int], root: Path, device: Any) -> dict[str, Any]:
    main = distributed.is_main()
    precision = resolve_precision(train_config.precision, device)
    if main:
        print(describe_precision(train_config.precision, device), flush=True)
    stages = build_stages()
    results: dict[str, Any] = {"env": env, "text": args.text, "model_config": asdict(model_config),
                               "train_config": asdict(train_config), "runs": {}}
    for seed in seeds:
        ckpt_io.seed_everything(seed)
        run_dir = root / f"seed_{seed}"
        tc = TrainConfig(**{**asdict(train_config), "seed": seed})
        model = RATE(model_config).to(device)
        if distributed.rank() > 0:  # own dropout stream per rank; DDP copies rank 0's initial weights
            ckpt_io.seed_everything(seed + 1_000_003 * distributed.rank())
        run_config = {"env": env, "model": asdict(model_config), "train": asdict(tc), "args": _plain(args),
                      "text": args.text, "precision": precision}
        trainer = Trainer(model, tc, run_dir, None, run_config, stages)
        last = run_dir / "checkpoints" / "last.pt"
        resume = (last if last.exists() else None) if args.resume == "latest" else args.resume and Path(args.resume)
        if resume is not None:
            trainer.load(resume)  # checked before anything in run_dir is touched
        elif main and last.exists():  # a fresh run never overwrites an older run's checkpoint
            last.replace(last.with_name(f"last.replaced_{time.strftime('%Y%m%d-%H%M%S')}.pt"))
        logger = None
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(run_config, indent=2))
            logger = RunLogger(run_dir, run_config, project=f"RATE-{env}", name=f"{root.name}-seed{seed}",
                               use_wandb=not args.no_wandb, resume_step=trainer.step if resume else None)
        trainer.logger = logger
        t0 = time.time()
        try:
            trainer.fit(progress=main)
            train_s = time.time() - t0
            t0 = time.time()
            with autocast(device, precision):  # evaluation rollouts in the training precision
                metrics = evaluate(model)  # each rank runs its share of the episodes; results are gathered
            eval_s = time.time() - t0
            if logger is not None:
                logger.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, trainer.step)
        finally:
            if logger is not None:
                logger.close()
        run_result = {"metrics": metrics, "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
                      "optimizer_steps": trainer.step}
        results["runs"][str(seed)] = run_result
        if main:
            (run_dir / "results.json").write_text(json.dumps(run_result, indent=2))
            scalars = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}  # episodes: results.json
            print(f"[{env}] {root.name} seed {seed}: {json.dumps(scalars)}  "
                  f"(train {train_s:.0f}s, eval {eval_s:.0f}s)", flush=True)
    results["mean"] = mean_metrics([r["metrics"] for r in results["runs"].values()])
    if main:
        root.mkdir(parents=True, exist_ok=True)
        (root / "results.json").write_text(json.dumps(results, indent=2))
    return results


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over seed runs of every numeric metric they share."""
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)] if runs else []
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}
