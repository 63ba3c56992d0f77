"""Make POPGym training data: episodes of the history-only experts (POPGym_src/experts.py), one ``.npz``
per episode in the paper's layout, ``<out_dir>/popgym-<Task>-v0/train_data_{i}.npz`` (obs, action, reward,
done; see POPGym_src/popgym_data.py).

    python3 POPGym/get_data/gen_popgym_data.py                                # 48 tasks × 3 000 episodes
    python3 POPGym/get_data/gen_popgym_data.py --tasks easy --n_episodes 1000  # the 16 Easy tasks
    python3 POPGym/get_data/gen_popgym_data.py --tasks RepeatFirst,popgym-CountRecallHard-v0

Episode i is played on env seed ``seed_offset + i`` (evaluation seeds start at 1 000 000, so they never
meet a training episode) with the expert's randomness seeded by the same number. Resumable: episodes whose
file exists are skipped, and every file is written whole (temporary name, then renamed), so an interrupted
run leaves no half-written episode. Work is spread over ``--workers`` processes (default: every core);
``<task folder>/summary.json`` holds the mean return of all its episodes.

``--format minari --dataset_id rate/popgym`` writes each task's episodes as a local Minari dataset instead
(``both``: as well); ``--dataset_id`` is the prefix of their ids, one per task: ``rate/popgym/RepeatFirstEasy-v0``
for ``popgym-RepeatFirstEasy-v0``. Spaces are those of the stored episodes: observations the flat components
(``MultiDiscrete`` when every one is a category, else popgym's ``Box``), actions one integer (a ``MultiDiscrete``
flattened) or the Pendulum's ``Box``. The env spec is popgym's own id where its spaces are these (the CartPole,
Pendulum, Concentration, CountRecall and Labyrinth tasks), else ``rate/POPGymFlat-v0`` (``task``): popgym's env
in the stored spaces. Each episode file is replayed (its actions on its seed) to read how it ended: terminated or
truncated as the env itself reports it (e.g. a CartPole that falls terminates, one that lasts its length is
truncated), and its final observation; a file that does not replay (another ``--seed_offset``) is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from POPGym.POPGym_src.experts import make_expert
from POPGym.POPGym_src.popgym_data import task_files
from POPGym.POPGym_src.popgym_env import (
    FAMILIES,
    FLAT_GYM_ID,
    LEVELS,
    TASKS,
    env_action,
    flat_action,
    flat_obs,
    make,
    parse_task,
    spec_of,
    stored_spaces,
)
from RATE_model.collect import save_episode
from RATE_model.config import ConfigError, OneLineErrorParser
from RATE_model.data import DataError, load_npz
from RATE_model.files import write_text
from RATE_model.minari_data import (
    add_export_flags,
    check_export_flags,
    collect_and_export,
    dataset_dir,
    env_spec,
    export,
    minari_episode,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "POPGym_data"
CHUNK = 25  # episodes per job handed to a worker


def select_tasks(text: str) -> list[str]:
    """``all``, a level (``easy``), family names or task ids, comma-separated, in the order of TASKS."""
    chosen: set[str] = set()
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word.lower() == "all":
            chosen.update(TASKS)
        elif word.capitalize() in LEVELS:
            chosen.update(t for t in TASKS if parse_task(t)[1] == word.capitalize())
        elif word in FAMILIES:
            chosen.update(t for t in TASKS if parse_task(t)[0] == word)
        else:
            try:
                parse_task(word)
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"{word!r}: not all, easy/medium/hard, a family or a task id "
                                                 f"({e})") from None
            chosen.add(word)
    if not chosen:
        raise argparse.ArgumentTypeError("no tasks given")
    return [t for t in TASKS if t in chosen]


def play_episode(task: str, seed: int, env: Any = None) -> dict[str, np.ndarray]:
    """One expert episode on env seed ``seed``: obs [T, D] float32, action [T] int64 or [T, A] float32,
    reward [T] float32, done [T] bool (True at the last step)."""
    env = env if env is not None else make(task)
    spec = spec_of(env)
    expert = make_expert(task, np.random.default_rng([seed, 1]))  # not default_rng(seed): the env's own stream
    obs, _ = env.reset(seed=seed)
    expert.reset(obs)
    rows: dict[str, list[Any]] = {"obs": [], "action": [], "reward": [], "done": []}
    done = False
    while not done:
        action = expert.act()
        rows["obs"].append(flat_obs(obs))
        rows["action"].append(flat_action(spec, action))
        obs, reward, terminated, truncated, _ = env.step(action)
        done = bool(terminated or truncated)
        rows["reward"].append(float(reward))
        rows["done"].append(done)
        if not done:
            expert.observe(obs)
    return {"obs": np.stack(rows["obs"]).astype(np.float32), "action": np.stack(rows["action"]),
            "reward": np.asarray(rows["reward"], np.float32), "done": np.asarray(rows["done"], bool)}


def _job(args: tuple[str, str, list[int], int]) -> list[float]:
    """A worker's share: episodes ``indices`` of ``task`` written into ``folder``; returns their returns."""
    task, folder, indices, seed_offset = args
    env = make(task)
    returns = []
    for i in indices:
        ep = play_episode(task, seed_offset + i, env)
        save_episode(Path(folder) / f"train_data_{i}.npz", ep, compressed=False)
        returns.append(float(ep["reward"].sum()))
    env.close()
    return returns


def summarise(folder: Path, n_episodes: int) -> dict[str, Any]:
    """Mean return ± SEM and mean length over the first ``n_episodes`` files of a task folder (written to
    ``summary.json``)."""
    returns, lengths = [], []
    for p in task_files(folder)[:n_episodes]:
        r = load_npz(p, ("reward",))["reward"]
        returns.append(float(r.sum()))
        lengths.append(len(r))
    r = np.asarray(returns)
    out = {"task": folder.name, "episodes": len(r), "return": float(r.mean()) if len(r) else float("nan"),
           "return_sem": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0,
           "mean_length": float(np.mean(lengths)) if lengths else 0.0, "max_length": int(max(lengths, default=0))}
    write_text(folder / "summary.json", json.dumps(out, indent=2))
    return out


def generate(tasks: Sequence[str], n_episodes: int, out_dir: Path, workers: int = 1, seed_offset: int = 0,
             progress: bool = True) -> list[dict[str, Any]]:
    """Episodes 0..n_episodes-1 of every task that are not on disk yet; returns each task's summary."""
    jobs = []
    for task in tasks:
        folder = Path(out_dir) / task
        folder.mkdir(parents=True, exist_ok=True)
        missing = [i for i in range(n_episodes) if not (folder / f"train_data_{i}.npz").exists()]
        jobs += [(task, str(folder), missing[j:j + CHUNK], seed_offset) for j in range(0, len(missing), CHUNK)]
    total = sum(len(j[2]) for j in jobs)
    bar = tqdm(total=total, desc="POPGym episodes", unit="ep", disable=None if progress else True)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            bar.update(len(_job(job)))
    else:
        with get_context("fork").Pool(min(workers, len(jobs))) as pool:
            for returns in pool.imap_unordered(_job, jobs):
                bar.update(len(returns))
    bar.close()
    return [summarise(Path(out_dir) / task, n_episodes) for task in tasks]


def task_dataset_id(prefix: str, task: str) -> str:
    """The Minari id of ``task``'s dataset: ``<prefix>/RepeatFirstEasy-v0`` for ``popgym-RepeatFirstEasy-v0``."""
    return f"{prefix.rstrip('/')}/{task.removeprefix('popgym-')}"


def _task_args(args: argparse.Namespace, task: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "dataset_id": task_dataset_id(args.dataset_id, task)})


def replayed(env: Any, path: Path, seed: int, obs_dtype: Any) -> dict[str, np.ndarray]:
    """Episode file ``path`` as a Minari episode, its end (terminated or truncated, final observation) read from
    a replay of its actions on env seed ``seed``; a DataError where the replay departs from the file."""
    ep = load_npz(path, ("obs", "action", "reward"))
    stored = np.asarray(ep["obs"], np.float32).reshape(len(ep["reward"]), -1)
    spec, (obs, _), ended = spec_of(env), env.reset(seed=seed), (False, False)
    for t, action in enumerate(ep["action"]):
        if any(ended) or not np.array_equal(flat_obs(obs), stored[t]):
            raise DataError(f"{path}: its actions replayed on env seed {seed} depart from it at step {t} (made "
                            "with another --seed_offset?)")
        obs, _, *ended, _ = env.step(env_action(spec, action))
    if not any(ended):
        raise DataError(f"{path}: its actions replayed on env seed {seed} do not end the episode")
    return minari_episode(stored.astype(obs_dtype), ep["action"], ep["reward"], *ended,
                          final_obs=flat_obs(obs).astype(obs_dtype))


def export_task(args: argparse.Namespace, folder: Path, task: str) -> Path:
    """The first ``--n_episodes`` episodes of ``task`` in ``folder`` as its Minari dataset."""
    env = make(task)
    try:
        spaces = stored_spaces(env)
        own = spaces == (env.observation_space, env.action_space)
        spec = gym.spec(task) if own else env_spec(FLAT_GYM_ID, task=task)
        files = [Path(folder) / f"train_data_{i}.npz" for i in range(args.n_episodes)]
        return export(_task_args(args, task), list(enumerate(files)),
                      lambda item: replayed(env, item[1], args.seed_offset + item[0], spaces[0].dtype), *spaces,
                      env=spec, algorithm_name=f"RATE history-only expert (POPGym/POPGym_src/experts.py), {task}",
                      description=f"POPGym {task} episodes of RATE's generator (POPGym/get_data/gen_popgym_data.py),"
                                  f" env seeds {args.seed_offset}..{args.seed_offset + args.n_episodes - 1}. "
                                  "Observations: popgym's observation flattened to components; actions: one integer "
                                  "(a MultiDiscrete flattened row-major) or the Pendulum's torque. Each episode's "
                                  "end and final observation come from a replay of its actions.")
    finally:
        env.close()


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """Every task's Minari dataset (``<--dataset_id>/<Task>-v0``); returns their common folder."""
    for task in args.tasks:
        export_task(args, Path(folder) / task, task)
    return dataset_dir(args.dataset_id.rstrip("/"))


def check_flags(args: argparse.Namespace) -> None:
    """:func:`check_export_flags` for the dataset id of every task (``--dataset_id`` is their prefix)."""
    if args.format == "own" or not args.dataset_id:
        check_export_flags(args)
    for task in args.tasks if args.format != "own" else ():
        check_export_flags(_task_args(args, task))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--tasks", type=select_tasks, default=list(TASKS),
                   help="all (default), easy / medium / hard, family names or task ids, comma-separated")
    p.add_argument("--n_episodes", type=int, default=3000, help="episodes per task (the paper: 3 000)")
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help="root folder of the task folders")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    p.add_argument("--seed_offset", type=int, default=0, help="episode i is played on env seed seed_offset + i")
    add_export_flags(p, "the prefix of the Minari dataset ids, one per task: PREFIX/<Task>-v0 (e.g. rate/popgym)")
    args = p.parse_args(argv)
    if args.n_episodes < 1 or args.workers < 1:
        p.error("--n_episodes and --workers must be >= 1")
    if not (0 <= args.seed_offset and args.seed_offset + args.n_episodes <= 1_000_000):
        p.error("--seed_offset + --n_episodes must lie in 0..1 000 000 (evaluation seeds start there)")
    try:
        check_flags(args)
    except ConfigError as e:
        p.error(str(e))

    def collect_into(folder: Path) -> dict[str, Any]:
        return {"rows": generate(args.tasks, args.n_episodes, folder, args.workers, args.seed_offset)}

    try:
        out = collect_and_export(args, collect_into, partial(export_minari, args), check=lambda _: None)
    except (DataError, ConfigError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    rows, exported = out["rows"], "minari_dataset" in out
    for r in rows:
        if exported:
            r["minari_dataset"] = task_dataset_id(args.dataset_id, r["task"])
        print(f"{r['task']:<44} {r['episodes']:>5} episodes  return {r['return']:+.3f} ± {r['return_sem']:.3f}  "
              f"length {r['mean_length']:.0f} (max {r['max_length']})"
              + (f"  Minari {r['minari_dataset']}" if exported else ""))
    return rows


if __name__ == "__main__":
    main()
