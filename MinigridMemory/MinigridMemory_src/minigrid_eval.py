"""Minigrid-Memory evaluation protocol (SPEC §3), and ``ENV``, Minigrid-Memory's
:class:`RATE_model.envs.Environment`: fixed seeds per grid size, sampled actions from a seeded generator,
target return 0.96; metrics are mean return and success rate per grid size.

Two step limits, two meanings: ``--eval_env_timeout`` is the env's own timeout T (default 5·size², it sets
the reward 1 − 0.9·t/T, so it changes the task); ``--eval_max_steps`` only stops the rollout earlier
(unfinished episodes count as failures with return 0), which bounds evaluation cost on CPU.

Under torchrun each rank plays a contiguous slice of the seeds and the per-episode results are
gathered; the sampled actions then come from per-rank generators, so the numbers are not identical
to a one-process evaluation (the seeds and the protocol are)."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from MinigridMemory.MinigridMemory_src.expert import expert_episode
from MinigridMemory.MinigridMemory_src.minigrid_env import MinigridMemoryVecEnv, check_size, default_timeout
from RATE_model import distributed
from RATE_model.config import ConfigError, add_episode_data_flags, add_eval_flags, check_positive, int_list
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, play_seeds

PROTOCOL_SIZES = (11, 21, 31, 41, 51, 61, 71, 81, 91)
TARGET_RETURN = 0.96
DEFAULT_BATCH = 100  # episodes stepped together when --eval_batch_size is not given


class Minigrid(Environment):
    """Minigrid-Memory: the cue object is seen at the start, the matching one must be touched at the
    junction; success rate per grid size."""

    name, title = "minigrid", "Minigrid-Memory"
    train_script = "MinigridMemory/MinigridMemory_src/train_minigridmemory.py"
    package, extra = "minigrid", "minigrid"
    test_seed_offset, validation_seed_offset = 1_000_000, 2_000_000  # never a training seed index
    validation_episodes = 20  # per grid size

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("Minigrid-Memory evaluation")
        g.add_argument("--eval_sizes", type=int_list, help="grid sizes to evaluate, e.g. 11,31,91")
        add_eval_flags(g, episodes="fixed episodes per grid size", batch="episodes stepped together")
        g.add_argument("--eval_max_steps", type=int,
                       help="rollout cap: stop each evaluation episode after this many steps (unfinished episodes "
                            "count as failures); the task itself is set by --eval_env_timeout")
        g.add_argument("--eval_env_timeout", type=int,
                       help="the env's episode timeout T at evaluation (default 5*size^2, as in the data); it sets "
                            "the reward 1 - 0.9*t/T, so it changes the task")

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        check_positive(args, ("eval_env_timeout",))
        for size in args.eval_sizes:
            try:
                check_size(size)
            except ValueError as e:
                raise ConfigError(f"--eval_sizes: {e}") from None

    def evaluate(self, model, args, split="test"):
        return evaluate(model, args.eval_sizes, self.episodes(args, split), getattr(args, "eval_env_timeout", None),
                        args.eval_max_steps, args.eval_batch_size or DEFAULT_BATCH, split=split,
                        memory_noise=self.memory_noise(args, split))

    def selection_score(self, metrics):
        """The mean success rate over the evaluated grid sizes."""
        return float(np.mean([v for k, v in metrics.items() if k.startswith("success_")]))

    def attention_episode(self, seed, length, args):
        """Grid size ``length`` (default: the run's first evaluation size), its timeout, sampled actions; the
        cue object is in view from the first step."""
        size = length or int((args.get("eval_sizes") or [11])[0])
        T = args.get("eval_env_timeout") or default_timeout(size)
        steps = min(T, args.get("eval_max_steps") or T)
        return Episode(MinigridMemoryVecEnv(size, [seed], timeout=T), TARGET_RETURN, steps, sample=True,
                       cue_steps=(0,))

    def add_data_flags(self, parser):
        from MinigridMemory.get_data.collect_traj import DATA_DIR

        add_episode_data_flags(parser, "Minigrid-Memory", DATA_DIR, "collect_traj.py")

    def add_measure_flags(self, parser):
        parser.add_argument("--size", type=int, default=31, help="grid size of the episodes (odd, >= 7; default 31, "
                                                                "the training size)")
        parser.add_argument("--epsilon", type=float, default=0.0, help="the expert's share of random actions")

    def policies(self, args):
        """``expert``: the scripted expert of the data (``expert.expert_episode``, its noise seeded by the env
        seed) with ``--epsilon`` random actions, on a ``--size`` grid with the protocol's timeout
        (``--eval_env_timeout``) and rollout cap (``--eval_max_steps``: an episode it has not finished by then is
        a failure with return 0, as at evaluation). Extras: ``success``, ``cue_seen``."""
        try:
            size = check_size(int(args.size))
        except ValueError as e:
            raise ConfigError(f"--size: {e}") from None
        if not 0.0 <= args.epsilon <= 1.0:
            raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
        timeout, cap = getattr(args, "eval_env_timeout", None), getattr(args, "eval_max_steps", None)

        def expert(seed):
            ep = expert_episode(size, seed, args.epsilon, timeout, noise_seed=seed)
            length, success, ret = len(ep["action"]), bool(ep["success"]), float(ep["reward"].sum())
            if cap and length > cap:
                length, success, ret = cap, False, 0.0
            return {"return": ret, "length": length, "success": success, "cue_seen": bool(ep["cue_seen"])}

        return {"expert": expert}


ENV = Minigrid()


def evaluate_size(model: RATE, size: int, n_episodes: int = 100, env_timeout: int | None = None,
                  max_steps: int | None = None, batch_size: int = DEFAULT_BATCH, sample_seed: int = 0,
                  split: str = "test", memory_noise: str = "none") -> dict[str, float]:
    """Mean return, success rate and the fraction of unfinished episodes (no object touched before the
    timeout or ``max_steps``) over ``n_episodes`` fixed episodes of the ``split`` (``ENV.seeds``) on a
    size×size grid; the other failures touched the wrong object.

    ``env_timeout`` is the env's T (default 5·size²); ``max_steps`` optionally stops the rollout earlier
    (unfinished episodes count as failures with return 0), which bounds evaluation cost on CPU.
    """
    T = default_timeout(size) if env_timeout is None else env_timeout
    steps = T if max_steps is None else min(T, max_steps)
    res = play_seeds(model, lambda seeds: MinigridMemoryVecEnv(size, seeds, timeout=T), ENV.seeds(n_episodes, split),
                     TARGET_RETURN, steps, batch_size, sample_seed=sample_seed * 1000 + size, memory_noise=memory_noise,
                     info_keys=("success", "touched"))
    return {"return": float(res["return"].mean()), "success": float(res["success"].mean()),
            "unfinished": float((1.0 - res["touched"]).mean())}


def evaluate(model: RATE, sizes: list[int], n_episodes: int = 100, env_timeout: int | None = None,
             max_steps: int | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = True,
             split: str = "test", memory_noise: str = "none") -> dict[str, float]:
    """{"return_<size>": mean return, "success_<size>": success rate, "unfinished_<size>": fraction that
    touched no object in time} for every grid size."""
    out: dict[str, float] = {}
    show = None if progress and distributed.is_main() else True  # None: only on a terminal
    for size in tqdm(sizes, desc="Minigrid-Memory eval", disable=show, leave=False):
        m = evaluate_size(model, size, n_episodes, env_timeout, max_steps, batch_size, split=split,
                          memory_noise=memory_noise)
        out.update({f"{k}_{size}": v for k, v in m.items()})
    return out
