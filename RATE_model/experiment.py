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
from RATE_model.checkpoint import CheckpointError
from RATE_model.config import ConfigError, ModelConfig, TrainConfig, split_args
from RATE_model.data import DataError, Trajectories
from RATE_model.logger import RunLogger
from RATE_model.model import RATE
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
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)


def seeds_of(start: int, end: int) -> list[int]:
    """The paper scripts' inclusive seed range ``--start_seed``..``--end_seed``."""
    if end < start:
        raise ConfigError(f"--end_seed {end} is smaller than --start_seed {start}")
    return list(range(start, end + 1))


def run_experiment(
    args: Any,
    env: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    build_stages: Callable[[], list[Trajectories]],
    evaluate: Callable[[RATE], dict[str, Any]],
    seeds: list[int],
    runs_dir: Path,
) -> dict[str, Any]:
    """Train and evaluate one model per seed; returns and writes {"runs": {seed: metrics}, ...}."""
    model_config.validate()
    device = resolve_device(train_config.device)
    root = Path(runs_dir) / env / (args.ckpt_folder or model_config.model_mode)
    if args.resume not in (None, "latest") and len(seeds) > 1:
        raise ConfigError("--resume PATH needs a single seed (--start_seed = --end_seed); use --resume latest")
    stages = build_stages()
    results: dict[str, Any] = {"env": env, "text": args.text, "model_config": asdict(model_config),
                               "train_config": asdict(train_config), "runs": {}}
    for seed in seeds:
        ckpt_io.seed_everything(seed)
        run_dir = root / f"seed_{seed}"
        tc = TrainConfig(**{**asdict(train_config), "seed": seed})
        model = RATE(model_config).to(device)
        run_config = {"env": env, "model": asdict(model_config), "train": asdict(tc), "text": args.text}
        (run_dir).mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(run_config, indent=2))
        logger = RunLogger(run_dir, run_config, project=f"RATE-{env}", name=f"{root.name}-seed{seed}",
                           use_wandb=not args.no_wandb)
        trainer = Trainer(model, tc, run_dir, logger, run_config, stages)
        resume = None
        if args.resume == "latest":
            last = run_dir / "checkpoints" / "last.pt"
            resume = last if last.exists() else None
        elif args.resume:
            resume = Path(args.resume)
        t0 = time.time()
        try:
            trainer.fit(resume=resume)
            train_s = time.time() - t0
            t0 = time.time()
            metrics = evaluate(model)
            eval_s = time.time() - t0
            logger.log({f"eval/{k}": v for k, v in metrics.items()}, trainer.step)
        finally:
            logger.close()
        run_result = {"metrics": metrics, "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
                      "optimizer_steps": trainer.step}
        (run_dir / "results.json").write_text(json.dumps(run_result, indent=2))
        results["runs"][str(seed)] = run_result
        print(f"[{env}] {root.name} seed {seed}: {json.dumps(metrics)}  "
              f"(train {train_s:.0f}s, eval {eval_s:.0f}s)", flush=True)
    results["mean"] = mean_metrics([r["metrics"] for r in results["runs"].values()])
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return results


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over seed runs of every numeric metric they share."""
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)] if runs else []
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}
