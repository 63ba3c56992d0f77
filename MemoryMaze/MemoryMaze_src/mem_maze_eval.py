"""Memory Maze 9×9 evaluation protocol (SPEC §3) and ``ENV``, Memory Maze's
:class:`RATE_model.envs.Environment`: fixed seeds (one maze each), target return 18.1, sampled actions from a
seeded generator, 1 000-step episodes; mean return (targets reached) ± standard error and every episode's
seed and return. A checkpoint on the protocol mazes at several target returns:

    python -m RATE_model.tools.evaluate runs/memory_maze/RATE/seed_1/checkpoints/last.pt \
        --eval_episodes 30 --target_return 18.1,12

Episodes run in worker processes (``gymnasium.vector.AsyncVectorEnv``, one per episode of a batch) and
step together through the shared rollout engine, which encodes every frame once. Under torchrun each
rank plays a contiguous slice of the seeds and the results are gathered.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, START_METHOD, MemoryMazeEnv
from RATE_model import distributed
from RATE_model.config import ConfigError, add_eval_flags, add_target_return_flag, check_eval_flags
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem
from RATE_model.vector import GymVectorEnv

TARGET_RETURN = 18.1
ENV_BYTES = 1.5 * 2**30  # one simulator process: the package's 88 wall/floor textures (266 MB) compiled and
                         # uploaded to the renderer come to ~1.4 GB (measured), so memory caps the workers


def default_batch_size() -> int:
    """Episodes stepped together when not given: 2 per CPU core (the simulator is CPU-bound, so more
    processes than that only wait), fewer where the available memory would not hold them."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(2 * (os.cpu_count() or 1), int(free // ENV_BYTES)))


def evaluate(model: RATE, n_episodes: int = 100, max_steps: int = MAX_STEPS, batch_size: int | None = None,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             split: str = "test") -> dict[str, Any]:
    """{"return", "return_sem", "return_first_half", "return_second_half", "episodes_n", "episodes":
    [{"seed", "return", "return_first_half", "return_second_half"}, ...]} over ``n_episodes`` fixed mazes of
    the ``split`` (halves of ``max_steps``), at most ``batch_size`` worker processes at a time (default:
    :func:`default_batch_size`)."""
    batch_size = batch_size or default_batch_size()
    seeds = distributed.shard(ENV.seeds(n_episodes, split))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, first = [np.zeros(0)], [np.zeros(0)]
    show = progress and distributed.is_main()
    for i in tqdm(range(0, len(seeds), batch_size), desc="Memory Maze eval batches", disable=not show, leave=False):
        with GymVectorEnv(partial(MemoryMazeEnv, max_steps=max_steps), seeds[i:i + batch_size],
                          info_keys=("targets_first_half",), context=START_METHOD) as env:
            res = rollout(model, env, target_return, max_steps=max_steps, sample=True, generator=gen,
                          progress="Memory Maze eval steps" if show else False)
        returns.append(res.returns)
        first.append(res.infos["targets_first_half"].astype(float))
    parts = distributed.gather((np.asarray(seeds), np.concatenate(returns), np.concatenate(first)))
    seed_all, ret, half = (np.concatenate([p[j] for p in parts]) for j in range(3))
    return {"return": float(ret.mean()), "return_sem": sem(ret), "return_first_half": float(half.mean()),
            "return_second_half": float((ret - half).mean()), "episodes_n": len(ret),
            "episodes": [{"seed": int(s), "return": float(r), "return_first_half": float(h),
                          "return_second_half": float(r - h)} for s, r, h in zip(seed_all, ret, half, strict=True)]}


def target_of(args: Any) -> float:
    """The run's one ``--target_return`` (a list of one value; None: the protocol's 18.1). ``args`` is a
    namespace or a dict of recorded flags; a checkpoint from before the flag took a list records a number."""
    t = args.get("target_return") if isinstance(args, dict) else getattr(args, "target_return", None)
    if isinstance(t, (list, tuple)):
        t = t[0] if t else None
    return TARGET_RETURN if t is None else float(t)


def check_one_target(args: Any) -> None:
    """ConfigError unless the run has at most one ``--target_return``: training evaluates one target
    (``tools.evaluate``, which plays several in turn, checks with :meth:`check_eval_flags` alone)."""
    targets = getattr(args, "target_return", None)
    if isinstance(targets, (list, tuple)) and len(targets) > 1:
        raise ConfigError(f"--target_return takes one value in training, got {','.join(map(str, targets))} "
                          "(python -m RATE_model.tools.evaluate CKPT --target_return A,B plays several)")


class MemoryMaze(Environment):
    """Memory Maze 9×9: reach the targets of the colour on the frame's border, in turn, for 1 000 steps."""

    name, title, package, extra = "memory_maze", "Memory Maze 9×9", "memory-maze", "memory-maze"
    train_script = "MemoryMaze/MemoryMaze_src/train_mem_maze.py"
    test_seed_offset = 1_000_000  # below the training data's maze seeds (>= 2**30)
    validation_seed_offset = 2_000_000  # validation episodes (evaluation during training); never test ones
    validation_episodes = 10

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
                        target_of(args), split=split)

    def selection_score(self, metrics):
        """The mean return."""
        return float(metrics["return"])

    def attention_episode(self, seed, length, args):
        """Maze ``seed``, ``length`` steps (default: the run's evaluation length), sampled actions; the first
        target's colour is on the frame's border from the first step."""
        steps = length or int(args.get("eval_max_steps") or MAX_STEPS)
        env = GymVectorEnv(partial(MemoryMazeEnv, max_steps=steps), [seed], context=START_METHOD)
        return Episode(env, target_of(args), steps, sample=True, cue_steps=(0,), close=env.close)


ENV = MemoryMaze()
