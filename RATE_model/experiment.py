"""What every ``train_*.py`` does after parsing its flags: per seed, build data, model and trainer,
train (resumable, validating every ``--eval_every`` steps), evaluate the last and the best-on-validation
model on the test seeds, and write ``results.json`` and ``curves.png``; plus clean one-line errors for bad input."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from RATE_model import checkpoint as ckpt_io
from RATE_model import distributed
from RATE_model.checkpoint import CheckpointError
from RATE_model.config import BC_MODES, ConfigError, ModelConfig, TrainConfig
from RATE_model.data import DataError, WindowDataset, Windows, embedded, weights_key
from RATE_model.encoders import load_encoder
from RATE_model.logger import RunLogger
from RATE_model.model import RATE
from RATE_model.precision import autocast, describe_precision, resolve_precision
from RATE_model.pretrain import fit_pixel_norm
from RATE_model.rollout import memory_noise
from RATE_model.trainer import NonFiniteLossError, Trainer, describe_device, resolve_device

USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteLossError, FileNotFoundError)
Evaluate = Callable[[RATE, str], dict[str, Any]]  # (model, split "test" | "validation") -> metrics
ENV_PACKAGES = {"vizdoom": "vizdoom", "minigrid": "minigrid", "memory_maze": "memory-maze", "atari": "ale-py",
                "mujoco": "mujoco", "popgym": "popgym",
                "minari": "minari"}  # the package each env's simulator comes from (T-Maze: none)


def load_defaults(path: Path) -> dict[str, Any]:
    """An environment's config.yaml as parser defaults."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping of flag names to values")
    return data


def write_json_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as one JSON object per line in ``path`` (its folder made if missing): a command's ``--out``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def evaluate_targets(targets: Iterable[Any], evaluate_one: Callable[[Any], dict[str, Any]],
                     out: Path | None = None) -> list[dict[str, Any]]:
    """A checkpoint evaluation command's loop: ``evaluate_one(target)`` for each target return, one JSON line
    each on stdout without its ``episodes`` list, every result with its episodes in ``out`` (JSON lines)."""
    short, full = [], []
    for target in targets:
        full.append(evaluate_one(target))
        short.append({k: v for k, v in full[-1].items() if k != "episodes"})
        print(json.dumps(short[-1]), flush=True)
    if out:
        write_json_lines(out, full)
    return short


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


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics (per-episode lists and dicts stay in results.json)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_record(env: str, device: Any) -> dict[str, Any]:
    """What reproduces a run besides its flags: the command line, the code (git commit, uncommitted
    changes), the versions of the packages that matter and the device."""
    packages = ["torch", "numpy", "gymnasium", *([ENV_PACKAGES[env]] if env in ENV_PACKAGES else [])]
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "git": ckpt_io.git_state(),
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in packages}},
            "device": describe_device(device)}


def run_experiment(
    args: Any,
    env: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    build_stages: Callable[[], list[Windows]],
    evaluate: Evaluate,
    seeds: list[int],
    runs_dir: Path,
    score: Callable[[dict[str, Any]], float] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one model per seed; returns and writes {"runs": {seed: metrics}, ...}.

    ``evaluate(model, split)`` runs the env's protocol on its test or validation seeds; ``score`` turns
    validation metrics into the number the best checkpoint maximises (needed by ``--eval_every``).

    Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 alone writes files and logs.
    Nothing in the run directory is written before the flags, the data and any checkpoint to resume
    from have been checked.
    """
    model_config.validate()
    train_config.validate()
    device = resolve_device(train_config.device)
    if train_config.eval_every and score is None:
        raise ConfigError(f"--eval_every: the {env} protocol has no validation score")
    if getattr(args, "eval_memory_noise", "none") != "none" and model_config.model_mode in BC_MODES:
        raise ConfigError(f"--eval_memory_noise replaces memory tokens and the hidden-state cache, which "
                          f"--model_mode {model_config.model_mode} does not have")
    root = Path(runs_dir) / env / (args.ckpt_folder or model_config.model_mode)
    if args.resume not in (None, "latest") and len(seeds) > 1:
        raise ConfigError("--resume PATH needs a single seed (--seed S, or --start_seed = --end_seed); "
                          "use --resume latest")
    device = distributed.setup(device)
    try:
        result = _run_seeds(args, env, model_config, train_config, build_stages, evaluate, score, seeds, root, device)
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return result


def _run_seeds(args: Any, env: str, model_config: ModelConfig, train_config: TrainConfig,
               build_stages: Callable[[], list[Windows]], evaluate: Evaluate,
               score: Callable[[dict[str, Any]], float] | None, seeds: list[int], root: Path,
               device: Any) -> dict[str, Any]:
    main = distributed.is_main()
    precision = resolve_precision(train_config.precision, device)
    noise = getattr(args, "eval_memory_noise", "none")
    if main:
        print(describe_precision(train_config.precision, device), flush=True)
    stages = build_stages()
    record = run_record(env, device)

    def test(model: RATE) -> dict[str, Any]:
        with autocast(device, precision), memory_noise(noise):  # rollouts in the training precision
            return evaluate(model, "test")  # each rank runs its share of the episodes; results are gathered

    def validate(model: RATE) -> tuple[dict[str, float], float]:
        with autocast(device, precision):
            metrics = evaluate(model, "validation")
        return scalars(metrics), score(metrics)

    results: dict[str, Any] = {"env": env, "text": args.text, "model_config": asdict(model_config),
                               "train_config": asdict(train_config), "runs": {}}
    for seed in seeds:
        ckpt_io.seed_everything(seed)
        run_dir = root / f"seed_{seed}"
        tc = TrainConfig(**{**asdict(train_config), "seed": seed})
        model = RATE(model_config).to(device)
        last = run_dir / "checkpoints" / "last.pt"
        resume = (last if last.exists() else None) if args.resume == "latest" else args.resume and Path(args.resume)
        prepare_encoder(model, tc, None if resume else stages[0])  # a resumed run's checkpoint holds its statistics
        if distributed.rank() > 0:  # own dropout stream per rank; DDP copies rank 0's initial weights
            ckpt_io.seed_everything(seed + 1_000_003 * distributed.rank())
        run_config = {"env": env, "model": asdict(model_config), "train": asdict(tc), "args": _plain(args),
                      "text": args.text, "precision": precision, **record}
        trainer = Trainer(model, tc, run_dir, None, run_config, stages)
        trainer.validate = validate if score is not None else None
        if resume is not None:
            trainer.load(resume)  # checked before anything in run_dir is touched
        elif main:  # a fresh run never overwrites an older run's checkpoints
            for old in (last, last.with_name("best.pt")):
                if old.exists():
                    old.replace(old.with_name(f"{old.stem}.replaced_{time.strftime('%Y%m%d-%H%M%S')}.pt"))
        resumed_from = trainer.step  # train_seconds below covers only the steps after it
        if tc.freeze_encoder:  # after loading: the cache holds the encoder the run trains with
            key = weights_key(model.enc.obs)  # what encode_frames computes with
            trainer.stages = [embedded(s, model.enc.encode_frames, progress=main, device=device, key=key)
                              for s in stages]
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
            metrics = test(model)
            best = _best_on_validation(trainer, model_config, device, resume, metrics, test)
            eval_s = time.time() - t0
            if logger is not None:
                logger.log({f"eval/{k}": v for k, v in scalars(metrics).items()}, trainer.step)
                if best is not None:
                    logger.log({f"eval_best/{k}": v for k, v in scalars(best["metrics"]).items()}, trainer.step)
        finally:
            if logger is not None:
                logger.close()
        run_result = {"metrics": metrics, "best_on_validation": best, "eval_memory_noise": noise,
                      "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
                      "optimizer_steps": trainer.step, "resumed_from_step": resumed_from}
        results["runs"][str(seed)] = run_result
        if main:
            (run_dir / "results.json").write_text(json.dumps(run_result, indent=2))
            _write_curves(run_dir)
            shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}  # episodes: results.json
            print(f"[{env}] {root.name} seed {seed}{'' if noise == 'none' else f' (memory noise: {noise})'}: "
                  f"{json.dumps(shown)}  (train {train_s:.0f}s, eval {eval_s:.0f}s)", flush=True)
            if best is not None:
                print(f"[{env}] {root.name} seed {seed} best on validation (step {best['step']}, score "
                      f"{best['score']:.4g}): {json.dumps(scalars(best['metrics']))}", flush=True)
    results["mean"] = mean_metrics([r["metrics"] for r in results["runs"].values()])
    if main:
        root.mkdir(parents=True, exist_ok=True)
        (root / "results.json").write_text(json.dumps(results, indent=2))
    return results


def prepare_encoder(model: RATE, tc: TrainConfig, data: Windows | None = None) -> None:
    """``--init_encoder``: load the observation encoder's weights; ``--pixel_norm``: fit its per-pixel
    standardisation to frames of ``data`` (the first training stage; None when resuming: the checkpoint
    holds the statistics), drawn with the run's seed; ``--freeze_encoder``: stop training it."""
    if (tc.init_encoder or tc.freeze_encoder or tc.pixel_norm) and not model.enc.images:
        raise ConfigError("--init_encoder / --freeze_encoder / --pixel_norm apply to image observations only")
    if tc.init_encoder:
        try:
            load_encoder(model.enc.obs, tc.init_encoder)
        except ValueError as e:
            raise ConfigError(f"--init_encoder: {e}") from None
    if tc.pixel_norm and data is not None:
        if not isinstance(data, WindowDataset):
            raise ConfigError("--pixel_norm needs training windows over an episode store")
        fit_pixel_norm(model.enc.obs, data.store, np.arange(data.store.n_steps), data.frame_stack,
                       np.random.default_rng(tc.seed))
    if tc.freeze_encoder:
        model.enc.obs.requires_grad_(False)


def _best_on_validation(trainer: Trainer, model_config: ModelConfig, device: Any, resume: Path | None,
                        last_metrics: dict[str, Any], test: Callable[[RATE], dict[str, Any]]) -> dict[str, Any] | None:
    """{"step", "score", "metrics"} of the checkpoint best on validation, evaluated on the test seeds
    (None when the run never validated). It is the last model when the last validation was the best."""
    if trainer.best is None:
        return None
    step, best_score = int(trainer.best["step"]), float(trainer.best["score"])
    if step == trainer.step:
        return {"step": step, "score": best_score, "metrics": last_metrics}
    places = [trainer.run_dir / "checkpoints" / "best.pt", *([Path(resume).with_name("best.pt")] if resume else [])]
    for path in places:
        if path.is_file():
            ckpt = ckpt_io.load(path)
            if ckpt["step"] == step:
                model = RATE(model_config).to(device)
                model.load_state_dict(ckpt["model"])
                return {"step": step, "score": best_score, "metrics": test(model)}
    raise CheckpointError(f"the best-on-validation checkpoint of step {step} is missing (looked for "
                          f"{', '.join(map(str, places))})")


def _write_curves(run_dir: Path) -> None:
    """``curves.png`` (training loss and validation metrics) in the run folder; a plotting failure only warns."""
    try:
        from RATE_model.plots import write_curves

        write_curves(run_dir)
    except Exception as e:  # noqa: BLE001 (the run's results are written; a figure is not worth a traceback)
        print(f"warning: no curves.png ({type(e).__name__}: {' '.join(str(e).split())})", file=sys.stderr)


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over seed runs of every numeric metric they share."""
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)] if runs else []
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}
