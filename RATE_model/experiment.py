"""What every ``train_*.py`` does after parsing its flags: per seed, build data, model and trainer,
train (resumable, validating every ``--eval_every`` steps), evaluate the last and the best-on-validation
model on the env's test seeds, and write ``results.json`` and ``curves.png``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from RATE_model import checkpoint as ckpt_io
from RATE_model import distributed
from RATE_model.checkpoint import CheckpointError
from RATE_model.cli import load_defaults
from RATE_model.config import (
    BC_MODES,
    ConfigError,
    ModelConfig,
    TrainConfig,
    build_parser,
    check_positive,
    parse_with_smoke,
)
from RATE_model.data import WindowDataset, Windows, embedded, weights_key
from RATE_model.encoders import load_encoder
from RATE_model.envs import Environment
from RATE_model.files import FolderBusy, WriteError, hold_folder, remove_temporary, write_failure, write_text
from RATE_model.logger import RunLogger
from RATE_model.model import RATE
from RATE_model.precision import autocast, describe_precision, resolve_precision
from RATE_model.pretrain import fit_pixel_norm
from RATE_model.trainer import Trainer, describe_device, resolve_device


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


def run_record(env: Environment, device: Any) -> dict[str, Any]:
    """What reproduces a run besides its flags: the command line, the code (git commit, uncommitted
    changes), the versions of the packages that matter and the device."""
    packages = ["torch", "numpy", "gymnasium", *([env.package] if env.package else [])]
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "git": ckpt_io.git_state(),
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in packages}},
            "device": describe_device(device)}


def parse_train_args(env: Environment, doc: str, config: Path | dict[str, Any], smoke: dict[str, Any],
                     argv: list[str] | None,
                     declare: Callable[[argparse.ArgumentParser], Any] | None = None,
                     positive: tuple[str, ...] = ()) -> tuple[argparse.Namespace, set[str]]:
    """A train script's flags: the shared ones with the defaults of its ``config`` (config.yaml, or the dict of
    its values), the env's data
    flags (``env.add_data_flags``, or ``declare``) and evaluation flags, ``smoke`` applied under ``--smoke``.
    The evaluation flags and the ``positive`` ones are checked here, before any data is read or made
    (ConfigError, one line). Returns the flags and the ``dest`` of those given explicitly."""
    p = build_parser(doc.splitlines()[0], dict(config) if isinstance(config, dict) else load_defaults(config))
    (declare or env.add_data_flags)(p)
    env.add_eval_flags(p)
    args, explicit = parse_with_smoke(p, argv, smoke)
    check_positive(args, positive)
    if not 0 < args.wandb_timeout < math.inf:
        raise ConfigError(f"--wandb_timeout must be a positive number of seconds, got {args.wandb_timeout}")
    env.check_eval_flags(args)
    return args, explicit


def run_experiment(args: Any, env: Environment, model_config: ModelConfig, train_config: TrainConfig,
                   build_stages: Callable[[], list[Windows]], seeds: list[int],
                   runs_dir: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one model per seed on ``env``; returns and writes {"runs": {seed: metrics}, ...}.

    ``build_stages()`` gives the training stages (a curriculum: several); the env's protocol
    (``env.evaluate(model, args, split)``) evaluates on its test seeds after training and on its validation
    seeds every ``--eval_every`` steps, where ``env.selection_score`` picks the best checkpoint.

    Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 alone writes files and logs.
    Nothing in the run directory is written before the flags, the data and any checkpoint to resume
    from have been checked.
    """
    model_config.validate()
    train_config.validate()
    env.check_eval_flags(args)
    device = resolve_device(train_config.device)
    if getattr(args, "eval_memory_noise", "none") != "none" and model_config.model_mode in BC_MODES:
        raise ConfigError(f"--eval_memory_noise replaces memory tokens and the hidden-state cache, which "
                          f"--model_mode {model_config.model_mode} does not have")
    root = Path(runs_dir or args.runs_dir or "runs") / env.name / (args.ckpt_folder or model_config.model_mode)
    if args.resume not in (None, "latest") and len(seeds) > 1:
        raise ConfigError("--resume PATH needs a single seed (--seed S, or --start_seed = --end_seed); "
                          "use --resume latest")
    device = distributed.setup(device)
    try:
        run = Experiment(args, env, model_config, train_config, root, device)
        stages = build_stages()
        results: dict[str, Any] = {"env": env.name, "text": args.text, "model_config": asdict(model_config),
                                   "train_config": asdict(train_config), "runs": {}}
        for seed in seeds:
            results["runs"][str(seed)] = run.seed(seed, stages)
        results["mean"] = mean_metrics([r["metrics"] for r in results["runs"].values()])
        if run.main:
            write_text(root / "results.json", json.dumps(results, indent=2),
                       "every seed's results.json in its seed_<S> folder is intact")
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return results


class Experiment:
    """The steps of one seed's run, in order: :meth:`trainer` (model, resume, encoder), :meth:`logger`,
    training, :meth:`evaluate` (last and best on validation), :meth:`write`."""

    def __init__(self, args: Any, env: Environment, model_config: ModelConfig, train_config: TrainConfig,
                 root: Path, device: Any):
        self.args, self.env, self.model_config, self.train_config = args, env, model_config, train_config
        self.root, self.device, self.main = root, device, distributed.is_main()
        self.precision = resolve_precision(train_config.precision, device)
        self.noise = getattr(args, "eval_memory_noise", "none")
        self.record = run_record(env, device)
        if self.main:
            print(describe_precision(train_config.precision, device), flush=True)

    def test(self, model: RATE) -> dict[str, Any]:
        """The env's protocol on its test seeds, in the training precision (each rank plays its share)."""
        with autocast(self.device, self.precision):  # the env applies --eval_memory_noise to its test rollouts
            return self.env.evaluate(model, self.args, "test")

    def validate(self, model: RATE) -> tuple[dict[str, float], float]:
        with autocast(self.device, self.precision):
            metrics = self.env.evaluate(model, self.args, "validation")
        return scalars(metrics), self.env.selection_score(metrics)

    def seed(self, seed: int, stages: list[Windows]) -> dict[str, Any]:
        """Train (or resume) and evaluate the run of ``seed``; its results.json entry."""
        run_dir = self.root / f"seed_{seed}"
        with self.hold(run_dir):
            trainer, resume = self.trainer(seed, run_dir, stages)
            resumed_from = trainer.step  # train_seconds below covers only the steps after it
            logger = self.logger(seed, run_dir, trainer, resume)
            t0 = time.time()
            try:
                trainer.fit(progress=self.main, logger=logger)
                train_s, t0 = time.time() - t0, time.time()
                metrics = self.test(trainer.model)
                best = self.best_on_validation(trainer, resume, metrics)
                eval_s = time.time() - t0
                if logger is not None:
                    logger.log({f"eval/{k}": v for k, v in scalars(metrics).items()}, trainer.step)
                    if best is not None:
                        logger.log({f"eval_best/{k}": v for k, v in scalars(best["metrics"]).items()}, trainer.step)
            finally:
                if logger is not None:
                    logger.close()
            result = {"metrics": metrics, "best_on_validation": best, "eval_memory_noise": self.noise,
                      "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
                      "optimizer_steps": trainer.step, "resumed_from_step": resumed_from}
            if self.main:
                self.write(seed, run_dir, result, train_s, eval_s)
        return result

    @contextlib.contextmanager
    def hold(self, run_dir: Path) -> Iterator[None]:
        """``run_dir`` held by this run for its whole life (rank 0 holds it for every rank): a second run on
        the same folder (the same env, --ckpt_folder and seed started twice) is refused before it touches a
        file. The lock is the kernel's and ends with the process, even killed. Folders made here are removed
        again if the run ends before writing into them (a refused --resume)."""
        with contextlib.ExitStack() as stack:
            busy = False
            if self.main:
                made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]
                try:
                    run_dir.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise write_failure(run_dir, e, "nothing was written") from None
                stack.callback(_remove_empty, made)
                try:
                    stack.enter_context(hold_folder(run_dir, wait=False))
                except FolderBusy:
                    busy = True
                else:  # temporary files of a killed process: none is being written, the folder is ours
                    remove_temporary(run_dir)
                    remove_temporary(run_dir / "checkpoints")
            if distributed.any_rank(busy):
                raise ConfigError(f"{run_dir} is in use by another run that is still going (the same env, "
                                  "--ckpt_folder and seed started twice?); wait for it to end, or pick another "
                                  "--ckpt_folder or --seed")
            yield

    def trainer(self, seed: int, run_dir: Path, stages: list[Windows]) -> tuple[Trainer, Path | None]:
        """The seed's model and trainer, resumed from ``--resume`` (checked before anything in run_dir is
        touched), or fresh with an older run's checkpoints set aside; the encoder prepared."""
        args, tc = self.args, TrainConfig(**{**asdict(self.train_config), "seed": seed})
        ckpt_io.seed_everything(seed)
        model = RATE(self.model_config).to(self.device)
        last = run_dir / "checkpoints" / "last.pt"
        resume = (last if last.exists() else None) if args.resume == "latest" else args.resume and Path(args.resume)
        prepare_encoder(model, tc, None if resume else stages[0])  # a resumed run's checkpoint holds its statistics
        if distributed.rank() > 0:  # own dropout stream per rank; DDP copies rank 0's initial weights
            ckpt_io.seed_everything(seed + 1_000_003 * distributed.rank())
        run_config = {"env": self.env.name, "model": asdict(self.model_config), "train": asdict(tc),
                      "args": _plain(args), "text": args.text, "precision": self.precision, **self.record}
        trainer = Trainer(model, tc, run_dir, run_config, stages,
                          validate=self.validate if tc.eval_every else None)
        if resume is not None:
            trainer.load(resume)
        elif self.main:  # a fresh run never overwrites an older run's checkpoints
            for old in (last, last.with_name("best.pt")):
                if old.exists():
                    old.replace(old.with_name(f"{old.stem}.replaced_{time.strftime('%Y%m%d-%H%M%S')}.pt"))
        if tc.freeze_encoder:  # after loading: the cache holds the encoder the run trains with
            key = weights_key(model.enc.obs)  # what encode_frames computes with
            trainer.stages = [embedded(s, model.enc.encode_frames, progress=self.main, device=self.device, key=key)
                              for s in stages]
        return trainer, resume

    def logger(self, seed: int, run_dir: Path, trainer: Trainer, resume: Path | None) -> RunLogger | None:
        """Rank 0's logger (metrics.jsonl, W&B unless --no_wandb), after writing config.json."""
        if not self.main:
            return None
        write_text(run_dir / "config.json", json.dumps(trainer.run_config, indent=2), "the checkpoints are unaffected")
        return RunLogger(run_dir, trainer.run_config, project=f"RATE-{self.env.name}",
                         name=f"{self.root.name}-seed{seed}", use_wandb=not self.args.no_wandb,
                         resume_step=trainer.step if resume else None, wandb_timeout=self.args.wandb_timeout)

    def best_on_validation(self, trainer: Trainer, resume: Path | None,
                           last_metrics: dict[str, Any]) -> dict[str, Any] | None:
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
                    model = RATE(self.model_config).to(self.device)
                    model.load_state_dict(ckpt["model"])
                    return {"step": step, "score": best_score, "metrics": self.test(model)}
        raise CheckpointError(f"the best-on-validation checkpoint of step {step} is missing (looked for "
                              f"{', '.join(map(str, places))})")

    def write(self, seed: int, run_dir: Path, result: dict[str, Any], train_s: float, eval_s: float) -> None:
        """The seed's results.json and curves.png, and its line on stdout."""
        write_text(run_dir / "results.json", json.dumps(result, indent=2),
                   f"the run's checkpoints and metrics.jsonl are intact; --resume latest --ckpt_folder "
                   f"{self.root.name} evaluates the trained model again")
        _write_curves(run_dir)
        metrics, best, name = result["metrics"], result["best_on_validation"], f"[{self.env.name}] {self.root.name}"
        shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}  # episodes: results.json
        noise = "" if self.noise == "none" else f" (memory noise: {self.noise})"
        print(f"{name} seed {seed}{noise}: {json.dumps(shown)}  (train {train_s:.0f}s, eval {eval_s:.0f}s)", flush=True)
        if best is not None:
            print(f"{name} seed {seed} best on validation (step {best['step']}, score {best['score']:.4g}): "
                  f"{json.dumps(scalars(best['metrics']))}", flush=True)


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


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are empty."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


def _write_curves(run_dir: Path) -> None:
    """``curves.png`` (training loss and validation metrics) in the run folder; a plotting failure only warns,
    a full disk is a WriteError like any other file's."""
    try:
        from RATE_model.tools.plots import write_curves

        write_curves(run_dir)
    except WriteError as e:
        raise WriteError(f"{e}; results.json and the checkpoints are written: python -m RATE_model.tools.plots "
                         f"{run_dir} --out {run_dir / 'curves.png'} draws it again") from None
    except Exception as e:  # noqa: BLE001 (the run's results are written; a figure is not worth a traceback)
        print(f"warning: no curves.png ({type(e).__name__}: {' '.join(str(e).split())})", file=sys.stderr)


def mean_metrics(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over seed runs of every numeric metric they share."""
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)] if runs else []
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}
