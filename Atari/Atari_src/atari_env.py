"""Atari games through gymnasium + ale-py with the DQN preprocessing (SPEC §4).

``make_env(game)`` is the evaluation env of the DQN protocol: frame-skip 4 with max-pooling of the last
two frames, 84×84 grayscale (OpenCV area resize), up to 30 no-op starts, FIRE at reset, rewards not
clipped, no terminal on life loss, 108 000 frames at most (Pong: 65 000, see ``ROM_FRAME_LIMIT``), 4-frame
stack ``[4, 84, 84]`` uint8.
``make_env(game, data=True)`` is what the data generator plays: single 84×84 frames (the DQN-replay
layout stores single frames and stacks at sampling), sticky actions p = 0.25 as in the published data,
no no-op starts and no FIRE at reset (the scripted policies press FIRE themselves).

The stack starts with the reset frame repeated, the same rule the episode store uses at an episode's
first steps, so the model sees the same stacks at evaluation as in training.
"""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner in every worker

GAMES = ("Breakout", "Qbert", "Seaquest", "Pong")
N_ACTIONS = {"Breakout": 4, "Qbert": 6, "Seaquest": 18, "Pong": 6}  # the games' minimal action sets
FRAME_STACK = 4
FRAME_SKIP = 4
MAX_FRAMES = 108_000  # 30 minutes of play at 60 Hz: the DQN protocol's cap
MAX_STEPS = MAX_FRAMES // FRAME_SKIP  # agent steps
# Pong's ROM resets its score 65 212 frames into an ALE episode (the same frame in every episode, whatever the
# seed, sticky actions or play: its frame counter wrapping); ALE pays the jump of the score difference as one
# reward (+13 to +19 measured in our data) and the game stalls for the rest of the episode. Pong episodes
# therefore end (truncated) before it, in the data and at evaluation.
ROM_FRAME_LIMIT = {"Pong": 65_000}
DATA_STICKY = 0.25  # sticky-action probability of the DQN-replay data (Machado et al. 2018)
FIRE = 1  # action index of FIRE in every minimal action set above


class FireReset(gym.Wrapper):
    """Press FIRE once after every reset (games that wait for it would otherwise idle until the cap)."""

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(FIRE)
        if terminated or truncated:  # cannot happen in these four games; keep the contract anyway
            obs, info = self.env.reset()
        return obs, info


def check_game(game: str) -> str:
    """``game`` if it is one of the four, else ValueError naming them."""
    if game not in GAMES:
        raise ValueError(f"--game must be one of {', '.join(GAMES)}, got {game!r}")
    return game


def make_env(game: str, data: bool = False, sticky: float | None = None, noop_max: int = 30,
             max_frames: int = MAX_FRAMES) -> gym.Env:
    """The preprocessed env of ``game`` (see the module docstring); ``sticky`` overrides the sticky-action
    probability (evaluation default 0, as in Decision Transformer's evaluation; data default 0.25). Episodes
    end (truncated) after ``max_frames`` emulator frames, or the game's ``ROM_FRAME_LIMIT`` if lower."""
    check_game(game)
    sticky = (DATA_STICKY if data else 0.0) if sticky is None else sticky
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=sticky, full_action_space=False,
                   max_num_frames_per_episode=min(max_frames, ROM_FRAME_LIMIT.get(game, max_frames)))
    env = AtariPreprocessing(env, noop_max=0 if data else noop_max, frame_skip=FRAME_SKIP, screen_size=84,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    if data:
        return env
    return FrameStackObservation(FireReset(env), FRAME_STACK, padding_type="reset")


def ram(env: gym.Env) -> np.ndarray:
    """The console's 128 bytes of RAM (what the scripted policies read)."""
    return env.unwrapped.ale.getRAM()


GYM_ID = "rate/AtariReplay-v0"  # the data's env as the model sees it: Minari datasets record it


def replay_env(game: str, sticky: float = DATA_STICKY) -> gym.Env:
    """The env the data is played in (``make_env(game, data=True)``) with the model's 4-frame stack, the reset
    frame repeated first: what ``gym.make(GYM_ID, game=...)`` builds."""
    return FrameStackObservation(make_env(game, data=True, sticky=sticky), FRAME_STACK, padding_type="reset")


gym.register(GYM_ID, entry_point="Atari.Atari_src.atari_env:replay_env")  # a string: the spec serialises to JSON
