"""Memory Maze 9×9 evaluation protocol (SPEC §3) and ``ENV``, Memory Maze's
:class:`RATE_model.envs.Environment`: fixed seeds (one maze each), target return 18.1, sampled actions from a
seeded generator, 1 000-step episodes; mean return (targets reached) ± standard error and every episode's
seed and return. A checkpoint on the protocol mazes at several target returns:

    python -m RATE_model.tools.evaluate runs/memory_maze/RATE/seed_1/checkpoints/last.pt \
        --eval_episodes 30 --target_return 18.1,12

Episodes run in worker processes, one per episode of a batch, through ``RATE_model.rollout.play_seeds``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from MemoryMaze.MemoryMaze_src.expert import ORACLES, VisibleOracle, oracle_action
from MemoryMaze.MemoryMaze_src.mem_maze_data import HOW, PATTERN, episode_files, load_episode, mem_maze_dataset
from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, N_ACTIONS, START_METHOD, MemoryMazeEnv
from RATE_model.config import (
    ConfigError,
    add_episode_data_flags,
    add_eval_flags,
    add_target_return_flag,
    check_eval_flags,
    check_positive,
)
from RATE_model.data import folder_store
from RATE_model.diagnose import store_windows
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.pretrain import Frames
from RATE_model.rollout import Episode, play_seeds, sem
from RATE_model.vector import GymVectorEnv

TARGET_RETURN = 18.1
HELD_OUT = Path(__file__).resolve().parents[1] / "MemoryMaze_data" / "heldout"  # tools.step_loss's default --data_dir
AFTER_TARGET = 30  # steps after a reached target counted as "a new target was just assigned" (step_loss)
ENV_BYTES = 1.5 * 2**30  # one simulator process: the package's 88 wall/floor textures (266 MB) compiled and
                         # uploaded to the renderer come to ~1.4 GB (measured), so memory caps the workers


def default_batch_size() -> int:
    """Episodes stepped together when not given: 2 per CPU core (the simulator is CPU-bound, so more
    processes than that only wait), fewer where the available memory would not hold them."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(2 * (os.cpu_count() or 1), int(free // ENV_BYTES)))


def evaluate(model: RATE, n_episodes: int = 100, max_steps: int = MAX_STEPS, batch_size: int | None = None,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             split: str = "test", memory_noise: str = "none") -> dict[str, Any]:
    """{"return", "return_sem", "return_first_half", "return_second_half", "episodes_n", "episodes":
    [{"seed", "return", "return_first_half", "return_second_half"}, ...]} over ``n_episodes`` fixed mazes of
    the ``split`` (halves of ``max_steps``), at most ``batch_size`` worker processes at a time (default:
    :func:`default_batch_size`)."""
    def make(seeds):
        return GymVectorEnv(partial(MemoryMazeEnv, max_steps=max_steps), seeds, info_keys=("targets_first_half",),
                            context=START_METHOD)

    res = play_seeds(model, make, ENV.seeds(n_episodes, split), target_return, max_steps,
                     batch_size or default_batch_size(), sample_seed=sample_seed, memory_noise=memory_noise,
                     info_keys=("targets_first_half",), desc="Memory Maze" if progress else None)
    seed_all, ret, half = res["seed"], res["return"], res["targets_first_half"].astype(float)
    return {"return": float(ret.mean()), "return_sem": sem(ret), "return_first_half": float(half.mean()),
            "return_second_half": float((ret - half).mean()), "episodes_n": len(ret),
            "episodes": [{"seed": int(s), "return": float(r), "return_first_half": float(h),
                          "return_second_half": float(r - h)} for s, r, h in zip(seed_all, ret, half, strict=True)]}


class MemoryMaze(Environment):
    """Memory Maze 9×9: reach the targets of the colour on the frame's border, in turn, for 1 000 steps."""

    name, title, package, extra = "memory_maze", "Memory Maze 9×9", "memory-maze", "memory-maze"
    train_script = "MemoryMaze/MemoryMaze_src/train_mem_maze.py"
    target_return = TARGET_RETURN  # test seeds 10^6 + i lie below the training data's maze seeds (>= 2^30)
    validation_episodes = 10
    start_method = START_METHOD  # tools.measure's workers: a child forked from a process that rendered deadlocks

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("Memory Maze evaluation")
        add_eval_flags(g, MAX_STEPS, episodes="fixed evaluation mazes",
                       batch="episodes stepped together (one worker process of ~1.4 GB each; default: 2 per core)")
        add_target_return_flag(g, str(TARGET_RETURN), several=False)

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        check_eval_flags(args, MAX_STEPS, "the task's episode length")

    def evaluate(self, model, args, split="test"):
        return evaluate(model, self.episodes(args, split), args.eval_max_steps, args.eval_batch_size,
                        self.target(args), split=split, memory_noise=self.memory_noise(args, split))

    def attention_episode(self, seed, length, args):
        """Maze ``seed``, ``length`` steps (default: the run's evaluation length), sampled actions; the first
        target's colour is on the frame's border from the first step."""
        steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
        env = GymVectorEnv(partial(MemoryMazeEnv, max_steps=steps), [seed], context=START_METHOD)
        return Episode(env, self.target(args), steps, sample=True, cue_steps=(0,), close=env.close)

    def add_measure_flags(self, parser):
        parser.add_argument("--epsilon", type=float, default=0.0, help="the oracles' probability of a random action")

    def policies(self, args):
        """``visible``: the oracle that acts on what its camera has shown it (the data's policy); ``privileged``:
        the oracle that reads the maze and the current target; ``random``: uniformly random actions. Mazes of
        the protocol (``--eval_max_steps`` steps), ``--epsilon`` random actions for the oracles, draws seeded
        by the maze seed. Extras: ``return_first_half``, ``return_second_half`` (targets reached in each half)
        and, for the visible oracle, ``assigned`` and ``assigned_seen`` (targets assigned, and how many of them
        it had seen by then)."""
        if not 0.0 <= args.epsilon <= 1.0:
            raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
        max_steps = int(getattr(args, "eval_max_steps", None) or MAX_STEPS)

        def play(seed, policy):
            env = MemoryMazeEnv(max_steps=max_steps, privileged=policy != "random")
            rng = np.random.default_rng(seed)
            agent = VisibleOracle(args.epsilon) if policy == "visible" else None
            _, info = env.reset(seed=seed)
            rewards, done = [], False
            while not done:
                if agent is not None:
                    a = agent.act(info["state"], rng)
                elif policy == "privileged":
                    a = oracle_action(info["state"], rng, args.epsilon)
                else:
                    a = int(rng.integers(N_ACTIONS))
                _, r, terminated, truncated, info = env.step(a)
                rewards.append(float(r))
                done = terminated or truncated
            env.close()
            half = max_steps // 2
            out = {"return": sum(rewards), "length": len(rewards), "return_first_half": sum(rewards[:half]),
                   "return_second_half": sum(rewards[half:])}
            if agent is not None:
                out.update(assigned=len(agent.seen_at_assignment), assigned_seen=sum(agent.seen_at_assignment))
            return out

        return {name: partial(play, policy=name) for name in (*ORACLES, "random")}

    def measure_stats(self, policy, rows, args):
        """The worst maze's return, the standard error of the second half's gain over the first (a remembered
        layout and remembered targets pay in the second half), and for the visible oracle the share of targets it
        had seen when they were assigned."""
        first, second = (np.array([r[k] for r in rows], float) for k in ("return_first_half", "return_second_half"))
        out = {"return_min": float(min(r["return"] for r in rows)), "second_minus_first_sem": sem(second - first)}
        if policy == "visible":
            out["seen_at_assignment"] = sum(r["assigned_seen"] for r in rows) / max(sum(r["assigned"] for r in rows), 1)
        return out

    def heldout(self, args, window, episodes, data_dir=None):
        """The first ``episodes`` episodes of ``data_dir`` (default MemoryMaze/MemoryMaze_data/heldout: collect_data.py
        with another --seed than the training data's), every window of the reference's rule (inside the first
        500 steps) whatever its rewards; ``segment`` on the result is the run's K, for :meth:`step_groups`."""
        data_dir = Path(data_dir or HELD_OUT)
        if not episode_files(data_dir):
            raise ConfigError(f"no episodes in {data_dir}: run python3 MemoryMaze/get_data/collect_data.py --seed 1 "
                              f"--n_episodes 20 --max_steps 500 --out_dir {data_dir}")
        data = mem_maze_dataset(data_dir, window, episodes, min_window_reward=0, progress=False)
        data.segment = int(getattr(args, "context_length", None) or window)  # K (DT's model runs one K·N context)
        return data

    def step_groups(self, data, table, actions):
        """:func:`maze_groups` of the held-out windows (their rewards; segments of the run's K)."""
        return maze_groups(table[:, 1], actions, store_windows(data, table, "reward"), data.segment)

    def add_data_flags(self, parser):
        from MemoryMaze.get_data.collect_data import DATA_DIR

        g = add_episode_data_flags(parser, "Memory Maze", DATA_DIR, "collect_data.py")
        g.add_argument("--window_min_reward", type=float, help="keep training windows holding at least this reward")
        g.add_argument("--window_stride", type=int,
                       help="steps between training window offsets (default: the window, K·N, as the reference; "
                            "smaller: overlapping windows)")

    def frames(self, args, data_dir=None, episodes=None):
        """The episode store of ``--data_dir`` (its first ``--max_episodes`` episodes; training reads the same), or
        of the first ``episodes`` of ``data_dir``: single frames, every step of each episode's first 500."""
        check_positive(args, ("max_episodes",))
        folder = Path(data_dir or args.data_dir)
        store = folder_store(folder, load_episode, HOW.format(folder), episodes if data_dir else args.max_episodes,
                             desc="Memory Maze episode store", pattern=PATTERN)
        return Frames(store, N_ACTIONS)


ENV = MemoryMaze()


def maze_groups(starts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, segment: int) -> dict[str, np.ndarray]:
    """Named step masks [n, T] of windows starting at episode steps ``starts`` [n] with the data's ``actions``
    and ``rewards`` [n, T] (T = N segments of ``segment`` steps): the episode's first window (a new maze, the
    oracle explores) and the later ones (a remembered layout and remembered targets shorten the trips); the
    steps right after a target is reached (a new target is assigned and the oracle chooses where to go:
    explore or head for a remembered target) and the others; the steps where the oracle's action changes (a
    new turn) and those where it repeats; each K-step part of the window (``segment_k``: RATE's segments, the
    same steps of DT's one context; how much context or memory the model has at that step)."""
    n, T = actions.shape
    first_window = np.broadcast_to((starts == 0)[:, None], (n, T))
    since = np.full((n, T), np.inf)
    for t in range(1, T):  # steps since the last reward inside the window (inf: none yet)
        since[:, t] = np.where(rewards[:, t - 1] > 0, 1, since[:, t - 1] + 1)
    just_assigned = since <= AFTER_TARGET
    changed = np.zeros((n, T), bool)
    changed[:, 1:] = actions[:, 1:] != actions[:, :-1]
    groups = {"first_window": first_window, "later_windows": ~first_window,
              "after_target_reached": just_assigned, "other": ~just_assigned,
              "action_changed": changed, "action_repeated": ~changed & (np.arange(T) > 0)[None]}
    for k in range(T // segment):
        groups[f"segment_{k + 1}"] = np.broadcast_to((np.arange(T) // segment == k)[None], (n, T))
    return groups
