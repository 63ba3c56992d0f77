"""POPGym's 48 tasks as the rest of the project sees them (SPEC §4, POPGym).

Every observation becomes one flat float32 vector of *components*: a Discrete space is one component,
a Tuple of Discretes or a MultiDiscrete one per entry, a Box one per number. ``obs_nvec`` gives each
component's number of categories (0 for a real number), which the model's encoder one-hot encodes
(``RATE_model.encoders``, env ``popgym``). Actions are one integer (a MultiDiscrete ``[x, y]`` of sizes
``[X, Y]`` flattened to ``x·Y + y``) or, for the Pendulum tasks, a float vector in the env's units.

:class:`PopgymVecEnv` steps a batch of episodes in this process (POPGym steps in microseconds, worker
processes would cost more than they save); a finished episode keeps its last observation.

:class:`FlatPopgym` (gymnasium id ``rate/POPGymFlat-v0``, ``task``) is a task's env in these flat spaces, for
Minari datasets whose spaces are not popgym's own (``stored_spaces``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

FAMILIES = ("Autoencode", "Battleship", "Concentration", "CountRecall", "HigherLower", "LabyrinthEscape",
            "LabyrinthExplore", "MineSweeper", "MultiarmedBandit", "NoisyPositionOnlyCartPole",
            "NoisyPositionOnlyPendulum", "PositionOnlyCartPole", "PositionOnlyPendulum", "RepeatFirst",
            "RepeatPrevious", "VelocityOnlyCartPole")
LEVELS = ("Easy", "Medium", "Hard")
REACTIVE = ("NoisyPositionOnlyCartPole", "NoisyPositionOnlyPendulum", "PositionOnlyCartPole",
            "PositionOnlyPendulum", "VelocityOnlyCartPole")  # the paper's 15 "reactive" tasks; the rest: memory
ARGMAX_FAMILIES = ("Battleship", "MineSweeper")  # evaluated with argmax actions, the others sampled


def task_id(family: str, level: str) -> str:
    """The gymnasium id POPGym registers (``VelocityOnlyCartpole`` is spelt with a lowercase p there)."""
    name = "VelocityOnlyCartpole" if family == "VelocityOnlyCartPole" else family
    return f"popgym-{name}{level}-v0"


TASKS = tuple(task_id(f, lv) for f in FAMILIES for lv in LEVELS)


def parse_task(task: str) -> tuple[str, str]:
    """(family, level) of a task id, a ValueError naming the known ids for anything else."""
    for f in FAMILIES:
        for lv in LEVELS:
            if task == task_id(f, lv):
                return f, lv
    raise ValueError(f"unknown POPGym task {task!r}; known: popgym-<Family><Easy|Medium|Hard>-v0 with Family one "
                     f"of {', '.join(FAMILIES)} (e.g. popgym-RepeatFirstEasy-v0)")


def family_of(task: str) -> str:
    return parse_task(task)[0]


def make(task: str) -> Any:
    """The gymnasium env of ``task`` (popgym imported here: it is an optional extra)."""
    parse_task(task)
    try:
        import gymnasium as gym
        import popgym  # noqa: F401  (registers the ids)
    except ImportError as e:
        raise ImportError(f"POPGym needs the popgym extra: pip install -e '.[popgym]' ({e})") from None
    return gym.make(task, disable_env_checker=True)


@dataclass(frozen=True)
class TaskSpec:
    """What the model and the data need to know about a task's spaces."""

    obs_nvec: tuple[int, ...]  # per observation component: categories, or 0 for a real number
    n_actions: int  # discrete: number of (flattened) actions; continuous: action dimension
    discrete: bool
    action_nvec: tuple[int, ...] = ()  # MultiDiscrete action sizes (flattened row-major), else ()
    action_high: float = 1.0  # continuous actions lie in [-high, high]

    @property
    def obs_dim(self) -> int:
        return len(self.obs_nvec)

    def env_kwargs(self) -> dict[str, Any]:
        """The ``ModelConfig.env_kwargs`` of the ``popgym`` encoders."""
        return {"obs_nvec": list(self.obs_nvec), "n_actions": self.n_actions, "discrete": self.discrete,
                "action_high": self.action_high}


def _nvec(space: Any) -> tuple[int, ...]:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, spaces.MultiDiscrete):
        return tuple(int(n) for n in np.ravel(space.nvec))
    if isinstance(space, spaces.Tuple):
        return tuple(n for s in space.spaces for n in _nvec(s))
    if isinstance(space, spaces.Box):
        return (0,) * int(np.prod(space.shape))
    raise ValueError(f"unsupported POPGym observation space {space}")


def spec_of(env: Any) -> TaskSpec:
    """The :class:`TaskSpec` of a made env."""
    from gymnasium import spaces

    a = env.action_space
    if isinstance(a, spaces.Discrete):
        return TaskSpec(_nvec(env.observation_space), int(a.n), True)
    if isinstance(a, spaces.MultiDiscrete):
        nvec = tuple(int(n) for n in np.ravel(a.nvec))
        return TaskSpec(_nvec(env.observation_space), int(np.prod(nvec)), True, nvec)
    if isinstance(a, spaces.Box):
        return TaskSpec(_nvec(env.observation_space), int(np.prod(a.shape)), False,
                        action_high=float(np.max(np.abs(a.high))))
    raise ValueError(f"unsupported POPGym action space {a}")


def task_spec(task: str) -> TaskSpec:
    env = make(task)
    try:
        return spec_of(env)
    finally:
        env.close()


def flat_obs(obs: Any) -> np.ndarray:
    """An env observation (int, tuple of ints, int array or float array) as float32 components [D]."""
    if isinstance(obs, tuple):
        return np.concatenate([flat_obs(o) for o in obs])
    return np.asarray(obs, dtype=np.float32).reshape(-1)


def flat_action(spec: TaskSpec, action: Any) -> np.ndarray:
    """An env action as stored in the data: an int (MultiDiscrete flattened row-major) or a float vector."""
    if not spec.discrete:
        return np.asarray(action, np.float32).reshape(spec.n_actions)
    if spec.action_nvec:
        return np.asarray(np.ravel_multi_index(tuple(np.asarray(action, np.int64)), spec.action_nvec), np.int64)
    return np.asarray(int(action), np.int64)


def env_action(spec: TaskSpec, action: Any) -> Any:
    """The inverse of :func:`flat_action`: what ``env.step`` takes."""
    if not spec.discrete:
        return np.clip(np.asarray(action, np.float32).reshape(spec.n_actions), -spec.action_high, spec.action_high)
    if spec.action_nvec:
        return np.array(np.unravel_index(int(action), spec.action_nvec), dtype=np.int64)
    return int(action)


class PopgymVecEnv:
    """``len(seeds)`` episodes of ``task`` stepped together in this process: the rollout engine's VectorEnv.

    Observations [E, D] float32 (:func:`flat_obs`); actions [E] flattened ints or [E, A] floats. A finished
    episode is not stepped again (its observation and zero reward repeat)."""

    def __init__(self, task: str, seeds: list[int]):
        self.task, self.seeds = task, [int(s) for s in seeds]
        self.envs = [make(task) for _ in self.seeds]
        self.spec = spec_of(self.envs[0])
        self.num_envs = len(self.seeds)
        self.done = np.zeros(self.num_envs, dtype=bool)
        self.obs = np.zeros((self.num_envs, self.spec.obs_dim), np.float32)

    def reset(self) -> np.ndarray:
        self.done[:] = False
        for i, (env, seed) in enumerate(zip(self.envs, self.seeds, strict=True)):
            self.obs[i] = flat_obs(env.reset(seed=seed)[0])
        return self.obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        reward = np.zeros(self.num_envs)
        for i, env in enumerate(self.envs):
            if self.done[i]:
                continue
            obs, r, term, trunc, _ = env.step(env_action(self.spec, actions[i]))
            self.obs[i], reward[i], self.done[i] = flat_obs(obs), float(r), bool(term or trunc)
        return self.obs.copy(), reward, self.done.copy(), {}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def stored_spaces(env: Any) -> tuple[gym.Space, gym.Space]:
    """The spaces of the stored episodes of a made env (see the module docstring)."""
    spec = spec_of(env)
    if all(spec.obs_nvec):
        obs = gym.spaces.MultiDiscrete(spec.obs_nvec)
    else:  # a POPGym task with a real component has a Box observation
        raw = env.observation_space
        obs = gym.spaces.Box(np.ravel(raw.low), np.ravel(raw.high), dtype=np.float32)
    return obs, gym.spaces.Discrete(spec.n_actions) if spec.discrete else env.action_space


class FlatPopgym(gym.Wrapper):
    """popgym's env of ``task`` in the stored episodes' spaces: what ``gym.make(FLAT_GYM_ID, task=...)`` builds."""

    def __init__(self, task: str):
        super().__init__(make(task))
        self.task_spec = spec_of(self.env)
        self.observation_space, self.action_space = stored_spaces(self.env)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        return flat_obs(obs).astype(self.observation_space.dtype), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(env_action(self.task_spec, action))
        return flat_obs(obs).astype(self.observation_space.dtype), reward, terminated, truncated, info


FLAT_GYM_ID = "rate/POPGymFlat-v0"
gym.register(FLAT_GYM_ID, entry_point="POPGym.POPGym_src.popgym_env:FlatPopgym")  # a string: serialises to JSON
