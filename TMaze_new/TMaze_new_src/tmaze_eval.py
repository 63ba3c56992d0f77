"""T-Maze evaluation protocol (SPEC §3): success rate over fixed seeds at each corridor length, and ``ENV``,
T-Maze's :class:`RATE_model.envs.Environment`.

Test seeds are 0..n-1 (the reported numbers); validation seeds (evaluation during training, best-checkpoint
selection) start at 10^9, far above the test seeds and the training data's noise seeds.

Under torchrun each rank plays a contiguous slice of the seeds and the successes are summed."""

from __future__ import annotations

from functools import partial

import numpy as np
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.config import ConfigError, add_eval_flags, int_list
from RATE_model.data import consecutive, with_returns_to_go
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, play_seeds
from RATE_model.store import EpisodeStore
from TMaze_new.TMaze_new_src.tmaze_data import oracle_episodes
from TMaze_new.TMaze_new_src.tmaze_env import DOWN, RIGHT, UP, TMazeVecEnv

PROTOCOL_LENGTHS = (9, 30, 90, 150, 300, 600, 900, 1200, 2400, 4800, 9600)
TARGET_RETURN = 1.0
HELD_OUT_SEED_OFFSET = 10**8  # step_loss's oracle episodes; training uses 100 000·N + i, i < 2 000·n_per_side


class TMaze(Environment):
    """Passive T-Maze: the cue (goal up or down) is seen at step 0 only; success rate per corridor length."""

    name, title, train_script = "tmaze", "Passive T-Maze", "TMaze_new/TMaze_new_src/train_tmaze.py"
    test_seed_offset, validation_seed_offset = 0, 1_000_000_000
    validation_episodes = 20  # per length

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("T-Maze evaluation")
        g.add_argument("--eval_lengths", type=int_list, help="corridor lengths T to evaluate, e.g. 30,90,270")
        add_eval_flags(g, episodes="episodes per length (half up, half down)", batch=None)

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        if any(T < 3 for T in args.eval_lengths):
            raise ConfigError(f"--eval_lengths must all be >= 3, got {args.eval_lengths}")

    def evaluate(self, model, args, split="test"):
        return evaluate(model, args.eval_lengths, self.episodes(args, split), split=split,
                        memory_noise=self.memory_noise(args, split))

    def selection_score(self, metrics):
        """The mean success rate over the evaluated lengths."""
        return float(np.mean([v for k, v in metrics.items() if k.isdigit()]))

    def heldout(self, args, window, episodes, data_dir=None):
        """Oracle episodes in corridors of the run's longest training length N·K, half up and half down, on
        noise seeds no training set uses."""
        K = int(args.context_length)
        T = int(args.max_n_final) * K
        ep = oracle_episodes(T, max(1, episodes // 2), seed_offset=HELD_OUT_SEED_OFFSET)
        return consecutive(EpisodeStore.from_episodes([with_returns_to_go({"obs": o, "action": a, "reward": r})
                                                       for o, a, r in zip(ep["obs"], ep["action"], ep["reward"],
                                                                          strict=True)]), window)

    def step_groups(self, data, table, actions):
        """``decision``: the turn at the junction, which only the cue at o_0 decides; ``corridor``: the rest."""
        turn = (actions == UP) | (actions == DOWN)
        return {"decision": turn, "corridor": ~turn}

    def attention_episode(self, seed, length, args):
        """Corridor T = ``length`` (default: the training length N·K), goal up for an even seed, down for an
        odd one; the cue is o_0."""
        T = length or int(args.get("max_n_final", 3)) * int(args.get("context_length", 30))
        env = TMazeVecEnv(T, np.array([1 if seed % 2 == 0 else -1]), np.array([seed]))
        return Episode(env, TARGET_RETURN, T, cue_steps=(0,))

    def add_measure_flags(self, parser):
        parser.add_argument("--length", type=int, help="corridor length T of the episodes (default: the training "
                                                       "length N·K)")

    def policies(self, args):
        """``oracle``: right to the junction, then towards the goal the cue showed (success on every seed);
        ``random``: right to the junction, then up or down at random (what a policy without memory achieves:
        success 1/2). Corridor T = ``--length`` (default N·K); goal up on an even seed, down on an odd one;
        every episode takes T − 1 steps."""
        N, K = int(getattr(args, "max_n_final", 3)), int(getattr(args, "context_length", 30))
        T = N * K if getattr(args, "length", None) is None else int(args.length)
        if T < 3:
            raise ConfigError(f"--length must be >= 3, got {T}")

        def play(seed, remember):
            env = TMazeVecEnv(T, np.array([1 if seed % 2 == 0 else -1]), np.array([seed]))
            env.reset()
            rng = np.random.default_rng([seed, 1])
            total, steps, done, success = 0.0, 0, False, False
            while not done:
                a = env.oracle_actions()
                if not remember and a[0] != RIGHT:
                    a = np.array([UP if rng.random() < 0.5 else DOWN])
                _, r, d, info = env.step(a)
                total, steps, done, success = total + float(r[0]), steps + 1, bool(d[0]), bool(info["success"][0])
            return {"return": total, "length": steps, "success": success}

        return {"oracle": partial(play, remember=True), "random": partial(play, remember=False)}


ENV = TMaze()


def eval_seeds(n: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Goal sides and seeds of the split's n episodes; the first half goes up, the second half down."""
    seeds = np.array(ENV.seeds(n, split))
    goals = np.where(np.arange(n) < (n + 1) // 2, 1, -1)
    return goals, seeds


def success_rate(model: RATE, T: int, n_seeds: int = 100, batch_size: int = 100, split: str = "test",
                 memory_noise: str = "none") -> float:
    """Fraction of the ``n_seeds`` fixed episodes of length T that reach the correct goal (argmax policy)."""
    goal = dict(zip(*eval_seeds(n_seeds, split)[::-1], strict=True))  # seed -> goal side

    def make(seeds):
        return TMazeVecEnv(T, np.array([goal[s] for s in seeds]), np.array(seeds))

    res = play_seeds(model, make, list(goal), TARGET_RETURN, T, batch_size, sample=False, memory_noise=memory_noise,
                     info_keys=("success",))
    return float(res["success"].astype(np.float64).sum()) / n_seeds


def evaluate(model: RATE, lengths: list[int], n_seeds: int = 100, progress: bool = True,
             split: str = "test", memory_noise: str = "none") -> dict[str, float]:
    """{str(T): success rate} over the given corridor lengths, on the ``split``'s seeds."""
    out = {}
    show = None if progress and distributed.is_main() else True  # None: only on a terminal
    for T in tqdm(lengths, desc="T-Maze eval", disable=show, leave=False):
        out[str(T)] = success_rate(model, T, n_seeds, split=split, memory_noise=memory_noise)
    return out
