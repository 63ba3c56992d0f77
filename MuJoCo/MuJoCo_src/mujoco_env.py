"""The MuJoCo tasks of the paper README: its ``--env_id`` table, gymnasium's v5 environments that stand
in for D4RL's v2 ones, and D4RL's score normalisation.

D4RL's datasets were collected on gym's ``*-v2`` envs (mujoco-py, MuJoCo 2.1), which do not install
here; gymnasium's ``*-v5`` envs have the same observation and action spaces, frame skip and 1000-step
limit. Differences: Hopper/Walker2d-v5 give no healthy reward on the terminal step, and Walker2d-v5 has
foot friction 1.9 on both feet (v2: 0.9 / 1.9), so returns are close to, not strictly comparable with,
scores measured on v2.
"""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import mujoco
import numpy as np

ENVS = ("halfcheetah", "walker2d", "hopper")
KINDS = ("medium", "medium-replay", "expert", "medium-expert")
# the paper README's --env_id table (0..11), in its order
DATASETS = ("halfcheetah-medium", "halfcheetah-medium-replay", "halfcheetah-expert",
            "walker2d-medium", "walker2d-medium-replay", "walker2d-expert",
            "hopper-medium", "hopper-medium-replay", "hopper-expert",
            "halfcheetah-medium-expert", "walker2d-medium-expert", "hopper-medium-expert")
GYM_IDS = {"halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "hopper": "Hopper-v5"}
DIMS = {"halfcheetah": (17, 6), "walker2d": (17, 6), "hopper": (11, 3)}  # (state_dim, act_dim)
MAX_STEPS = 1000  # the envs' time limit
# D4RL's reference returns (random, expert) for the normalised score (d4rl/infos.py)
REF_SCORES = {"halfcheetah": (-280.178953, 12135.0), "walker2d": (1.629008, 4592.3), "hopper": (-20.272305, 3234.3)}
# initial return-to-go of the evaluation (SPEC §3, Decision Transformer's targets)
TARGET_RETURNS = {"halfcheetah": (6000.0, 12000.0), "walker2d": (5000.0,), "hopper": (3600.0,)}
RTG_SCALE = 1 / 1000  # returns-to-go are fed to the model divided by 1000


def split_name(name: str) -> tuple[str, str]:
    """``"hopper-medium-replay"`` -> ``("hopper", "medium-replay")``."""
    env, _, kind = name.partition("-")
    if env not in ENVS or kind not in KINDS:
        raise ValueError(f"unknown MuJoCo dataset {name!r}; known: {', '.join(DATASETS)}")
    return env, kind


def dataset_of(env_id: int) -> str:
    """The dataset of the paper README's ``--env_id`` (0..11)."""
    if not 0 <= env_id < len(DATASETS):
        raise ValueError(f"--env_id must be 0..{len(DATASETS) - 1}, got {env_id}")
    return DATASETS[env_id]


def normalised_score(env: str, returns: np.ndarray | float) -> np.ndarray | float:
    """D4RL's normalised score: 100 · (return − random) / (expert − random)."""
    low, high = REF_SCORES[env]
    return 100.0 * (np.asarray(returns, np.float64) - low) / (high - low)


def make_env(env: str, max_episode_steps: int | None = None) -> gym.Env:
    """gymnasium's v5 env of ``env`` (``max_episode_steps``: a shorter time limit, for tiny test data)."""
    if env not in GYM_IDS:
        raise ValueError(f"unknown MuJoCo env {env!r}; known: {', '.join(ENVS)}")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    mujoco.set_mju_user_warning(_mujoco_warning)
    return gym.make(GYM_IDS[env], **kwargs)


def _mujoco_warning(text: str) -> None:
    """MuJoCo's warnings as Python warnings (by default it appends them to MUJOCO_LOG.TXT in the working
    folder), without the deprecation of ``settotalmass`` that gymnasium's own model files trigger."""
    if "settotalmass" not in text:
        warnings.warn(f"MuJoCo: {text.strip()}", stacklevel=2)


def quiet_old_gym() -> None:
    """Hide the old ``gym`` (installed for memory-maze) from stable-baselines3, which imports it if present
    and so prints gym's NumPy-2 warning. For command-line entry points only (the process never needs gym)."""
    sys.modules.setdefault("gym", None)  # type: ignore[arg-type]
