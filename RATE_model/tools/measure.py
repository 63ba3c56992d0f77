"""Play an environment's scripted policies (experts, oracles, random) on its evaluation protocol's seeds.

    python -m RATE_model.tools.measure --env NAME [--policies A,B] [--episodes N] [--split test|validation]
        [--workers W] [<the env's evaluation and measure flags, e.g. --game Pong --epsilon 0.1>] [--out FILE.jsonl]

Each policy (:meth:`RATE_model.envs.Environment.policies`) plays one episode on each of the split's fixed env
seeds (``ENV.seeds(N, split)``, the seeds models are evaluated on), in ``--workers`` processes (default: every
core; 1: in this process). The env's flags start from its train script's defaults (its config.yaml), so an
unchanged command plays the protocol's setting. Prints one JSON line per policy: ``env``, ``policy``,
``split``, ``episodes``, mean ``return`` and its standard error ``return_sem``, mean ``length``, the mean of
every numeric extra the policy reports (e.g. ``success``), the env's own statistics (``ENV.measure_stats``,
e.g. ViZDoom's return per colour), ``steps_per_s`` (env steps per second per process: each episode timed in
its worker, with the set-up the policy does per episode, e.g. building the simulator) and ``flags`` (the env's
flags it ran with); ``--out`` writes them with their episodes (``per_episode``).
``--help`` after ``--env NAME`` lists that env's flags.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from RATE_model import envs
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.envs import Environment, flag_dests, set_train_defaults, train_defaults
from RATE_model.rollout import sem

PROG = "python -m RATE_model.tools.measure"
SPLITS = ("test", "validation")
# evaluation flags a line does not record: the protocol's budget and the model's settings, not how a policy plays
UNRECORDED = ("eval_episodes", "eval_batch_size", "target_return", "eval_greedy")


def parser(env: Environment | None = None, env_flag: bool = True, help: bool = True) -> OneLineErrorParser:
    """The command's flags; with ``env``, its evaluation and measure flags too, their defaults the train
    script's. ``env_flag`` False: no ``--env`` (:func:`env_args`)."""
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False, add_help=help)
    if env_flag:
        p.add_argument("--env", help=f"the environment: {', '.join(envs.names()) or 'none known'}")
    p.add_argument("--policies", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated policy names (default: every policy of the env)")
    p.add_argument("--episodes", type=int, help="env seeds per policy (default: the protocol's, --eval_episodes "
                                                "for test, the validation count for validation)")
    p.add_argument("--split", choices=SPLITS, default="test", help="whose seeds: test (default) or validation")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes (default: every core; 1: in this process)")
    p.add_argument("--out", type=Path, help="also write every line with its episodes here (JSON lines)")
    if env is not None:
        env.add_eval_flags(p)
        g = p.add_argument_group(f"{env.title or env.name} policies")
        env.add_measure_flags(g)
        set_train_defaults(p, env, env.add_eval_flags, env.add_measure_flags)
    return p


def finish_args(env: Environment, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` as the policies read them: the train script's other defaults added, the flags checked, the
    episode count resolved and ``args.policies`` the chosen names (ConfigError, one line, for an unknown one)."""
    for k, v in train_defaults(env).items():
        if not hasattr(args, k):
            setattr(args, k, v)
    if type(env).policies is Environment.policies:
        raise ConfigError(f"{env.name} defines no policies to measure")
    check_positive(args, ("episodes", "workers"))
    env.check_eval_flags(args)
    if args.episodes is None:
        args.episodes = env.episodes(args, args.split)
    known = list(env.policies(args))  # also checks the measure flags
    chosen = args.policies or known
    bad = [x for x in chosen if x not in known]
    if bad:
        raise ConfigError(f"unknown policy {bad[0]!r} for {env.name}; known: {', '.join(known)}")
    args.policies = chosen
    return args


def env_args(env: Environment, argv: Sequence[str] = (), **flags: Any) -> argparse.Namespace:
    """The env's flags as :func:`main` would parse ``argv`` (without ``--env``), with ``flags`` set over them:
    for a script that measures several settings in one run."""
    args = parser(env, env_flag=False).parse_args(list(argv))
    for k, v in flags.items():
        setattr(args, k, v)
    return finish_args(env, args)


_POLICY: Callable[[int], dict[str, Any]] | None = None


def _init_worker(env: Environment, policy: str, args: argparse.Namespace) -> None:
    """A worker's start: one thread for OpenCV, Ctrl-C left to the main process, the policy built here."""
    global _POLICY
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _POLICY = env.policies(args)[policy]


def _episode(seed: int) -> dict[str, Any]:
    assert _POLICY is not None
    t0 = time.perf_counter()
    out = dict(_POLICY(seed))
    return {"seed": int(seed), **out, "seconds": time.perf_counter() - t0}


def play(env: Environment, policy: str, args: argparse.Namespace, seeds: Sequence[int], workers: int = 1,
         progress: bool = True) -> list[dict[str, Any]]:
    """One episode of ``policy`` per seed, in seed order: the policy's dict with ``seed`` and ``seconds``.
    ``workers`` processes (the env's ``start_method``; 1: in this process)."""
    global _POLICY
    bar = tqdm(total=len(seeds), desc=f"{env.name} {policy}", disable=None if progress else True, leave=False)
    rows: list[dict[str, Any]] = []
    try:
        if workers <= 1 or len(seeds) <= 1:
            _POLICY = env.policies(args)[policy]
            for seed in seeds:
                rows.append(_episode(seed))
                bar.update()
        else:
            ctx = mp.get_context(env.start_method)
            with ctx.Pool(min(workers, len(seeds)), initializer=_init_worker, initargs=(env, policy, args)) as pool:
                for row in pool.imap(_episode, list(seeds)):
                    rows.append(row)
                    bar.update()
    finally:
        bar.close()
        _POLICY = None
    return rows


def _number(v: Any) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating))


def summary(env: Environment, policy: str, rows: list[dict[str, Any]], split: str = "test",
            flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON line of :func:`play`'s rows: means (and the return's SEM), every numeric extra's mean, speed."""
    ret = np.array([r["return"] for r in rows], np.float64)
    length = np.array([r["length"] for r in rows], np.float64)
    out: dict[str, Any] = {"env": env.name, "policy": policy, "split": split, "episodes": len(rows),
                           "return": float(ret.mean()), "return_sem": sem(ret), "length": float(length.mean())}
    for k in rows[0]:
        if k not in ("seed", "seconds", "return", "length") and all(_number(r.get(k)) for r in rows):
            out[k] = float(np.mean([float(r[k]) for r in rows]))
    seconds = sum(r["seconds"] for r in rows)
    out["steps_per_s"] = float(length.sum() / seconds) if seconds > 0 else None
    if flags is not None:
        out["flags"] = flags
    return out


def recorded_flags(env: Environment, args: argparse.Namespace) -> dict[str, Any]:
    """The env's flags a line records: its evaluation and measure flags that are set (but :data:`UNRECORDED`)."""
    out = {}
    for d in flag_dests(env.add_eval_flags, env.add_measure_flags):
        v = getattr(args, d, None)
        if v is not None and d not in UNRECORDED:
            out[d] = str(v) if isinstance(v, Path) else v
    return out


def measure(env: Environment, policy: str, args: argparse.Namespace,
            progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``policy`` on ``args.episodes`` seeds of ``args.split`` in ``args.workers`` processes: (its JSON line,
    the per-episode rows)."""
    rows = play(env, policy, args, env.seeds(args.episodes, args.split), args.workers, progress)
    line = summary(env, policy, rows, args.split, recorded_flags(env, args))
    return {**line, **env.measure_stats(policy, rows, args)}, rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    first, _ = parser(help=False).parse_known_args(argv)  # the env says which flags apply
    env = envs.get(first.env) if first.env else None  # EnvError, one line, naming the known ones
    args = parser(env).parse_args(argv)
    if env is None:
        raise ConfigError(f"--env is required; known: {', '.join(envs.names()) or 'none'}")
    finish_args(env, args)
    short, full = [], []
    for policy in args.policies:
        line, rows = measure(env, policy, args)
        short.append(line)
        full.append({**line, "per_episode": rows})
        print(json.dumps(line), flush=True)
    if args.out:
        write_json_lines(args.out, full)
    return short


if __name__ == "__main__":
    run_main(main)
