"""History-only experts for every POPGym family (the data of ``get_data/gen_popgym_data.py``).

An expert acts on what the agent sees: the observations of the episode so far and its own past actions,
plus the task's published constants (board size, deck count, episode length: the parameters the task's
class is built with, read from a fresh env before the episode, never from the live one). It never reads
the simulator's hidden state (unrevealed ships and mines, card order, bandit payout probabilities,
the maze map): the Minigrid lesson, where an expert that read the simulator made actions no model
could clone from its observations.

Interface (every family): ``expert = EXPERTS[family](task, rng)``; ``expert.reset(obs)`` at the start
of an episode with the first observation (env format); ``expert.act()`` returns the env-format action for
the latest observation; ``expert.observe(obs)`` gives the next observation after the action was taken.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from POPGym.POPGym_src.experts_control import CONTROL_EXPERTS
from POPGym.POPGym_src.experts_games import GAME_EXPERTS
from POPGym.POPGym_src.popgym_env import FAMILIES, family_of


class Expert(Protocol):
    """A policy over the observation history (see the module docstring)."""

    def reset(self, obs: Any) -> None: ...

    def act(self) -> Any: ...

    def observe(self, obs: Any) -> None: ...


EXPERTS: dict[str, Any] = {**GAME_EXPERTS, **CONTROL_EXPERTS}
assert set(EXPERTS) == set(FAMILIES), f"families without an expert: {set(FAMILIES) - set(EXPERTS)}"


def make_expert(task: str, rng: np.random.Generator) -> Expert:
    """The expert of ``task``'s family (its randomness, where it has any, from ``rng``)."""
    return EXPERTS[family_of(task)](task, rng)
