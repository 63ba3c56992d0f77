"""POPGym evaluation protocol (SPEC §3, §4): 100 fixed env seeds per task, target return 1.0, sampled
actions (argmax for Battleship and MineSweeper, the head's output for the Pendulum tasks), every episode
to its natural end. The metric is the mean return (each task's already lies in about [−1, 1]).

Test seeds are 1 000 000 + i and validation seeds 2 000 000 + i; training episodes use seeds below
1 000 000 (``get_data/gen_popgym_data.py``), so the three never meet. ``ENV`` is POPGym's
:class:`RATE_model.envs.Environment`: the protocol of the run's ``--task``."""

from __future__ import annotations

from functools import partial

from POPGym.POPGym_src.popgym_env import ARGMAX_FAMILIES, TASKS, PopgymVecEnv, family_of, make
from RATE_model.config import add_eval_flags
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, play_seeds, sem

TARGET_RETURN = 1.0
EVAL_EPISODES = 100
MAX_STEPS = 2048  # above every task's own episode limit (LabyrinthEscape/Explore: 1 024): episodes end naturally


class POPGym(Environment):
    """One of POPGym's 48 tasks (``--task``); the mean return over fixed seeds."""

    name, title, package, extra = "popgym", "POPGym", "popgym", "popgym"
    train_script = "POPGym/train_popgym.py"
    validation_episodes = 50

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("POPGym evaluation")
        add_eval_flags(g, episodes="fixed test seeds (the protocol: 100)", batch="episodes stepped together")

    def evaluate(self, model, args, split="test"):
        return evaluate(model, args.task, self.episodes(args, split), args.eval_batch_size, split=split,
                        memory_noise=self.memory_noise(args, split))

    def attention_episode(self, seed, length, args):
        """One episode of the run's task on env seed ``seed``, at most ``length`` steps (default: to its end),
        actions as the protocol takes them; every observation may matter, so no cue step is marked."""
        task = args["task"]
        return Episode(PopgymVecEnv(task, [seed]), TARGET_RETURN, length or MAX_STEPS,
                       sample=family_of(task) not in ARGMAX_FAMILIES)

    def add_measure_flags(self, parser):
        parser.add_argument("--task", choices=TASKS, metavar="popgym-<Task>-v0",
                            help="one of POPGym's 48 task ids (default: the train script's)")

    def policies(self, args):
        """``expert``: the task's history-only expert (``get_data/gen_popgym_data.play_episode``, the data's
        policy: it acts on what it has observed, its draws seeded by the env seed), to the episode's end."""
        from POPGym.get_data.gen_popgym_data import play_episode  # the generator's module: only when measuring

        env: list = []  # one env per process, reset with each episode's seed (as the generator does)

        def expert(seed):
            if not env:
                env.append(make(args.task))
            ep = play_episode(args.task, seed, env[0])
            return {"return": float(ep["reward"].sum()), "length": len(ep["reward"])}

        return {"expert": expert}


ENV = POPGym()


def evaluate(model: RATE, task: str, n_episodes: int = EVAL_EPISODES, batch_size: int = 100,
             split: str = "test", sample_seed: int = 0, memory_noise: str = "none") -> dict[str, object]:
    """{"return", "return_sem", "length", "episodes": per-episode returns} over ``n_episodes`` seeds of ``split``."""
    res = play_seeds(model, partial(PopgymVecEnv, task), ENV.seeds(n_episodes, split), TARGET_RETURN, MAX_STEPS,
                     batch_size, sample=family_of(task) not in ARGMAX_FAMILIES, sample_seed=sample_seed,
                     memory_noise=memory_noise)
    r, n = res["return"], res["length"].astype(float)
    return {"return": float(r.mean()), "return_sem": sem(r), "length": float(n.mean()), "episodes": r.tolist()}
