"""The environment interface: what the library needs of an environment, and the registry that finds one by name.

Every env folder declares one :class:`Environment` instance (``ENV`` in its evaluation module) and names it in
``pyproject.toml`` under the entry-point group ``rate_rl.envs``::

    [project.entry-points."rate_rl.envs"]
    tmaze = "TMaze_new.TMaze_new_src.tmaze_eval:ENV"

The train script, ``run_experiment`` and the tools (``python -m RATE_model.tools.<name>``) reach the env only
through this object, found with :func:`get`; a test or a notebook can :func:`register` its own. Adding an
environment is one folder that implements it (docs/adding_an_env.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from RATE_model.config import check_eval_flags
from RATE_model.rollout import split_seeds

if TYPE_CHECKING:
    from RATE_model.data import Windows
    from RATE_model.model import RATE
    from RATE_model.rollout import Episode

ENTRY_POINTS = "rate_rl.envs"
TEST_SEED_OFFSET = 1_000_000  # evaluation env seeds i = 0, 1, ... are OFFSET + i: never a training seed index
VALIDATION_SEED_OFFSET = 2_000_000  # validation (evaluation during training); never a test episode


class EnvError(ValueError):
    """An environment that is unknown or cannot be loaded here (reported on one line)."""


class Environment:
    """One environment as the library sees it. Subclasses set the class attributes and implement
    :meth:`evaluate` and :meth:`selection_score`; the rest is optional and the tools that need it say so.

    ``args`` is everywhere the run's flags: the parsed namespace in a train script, the checkpoint's
    recorded flags (with the evaluation flags given on the command line over them) in the tools.
    """

    name: str = ""  # the registry key, runs/<name>/..., the checkpoint's "env"
    title: str = ""  # for help texts and tables
    package: str | None = None  # the distribution the simulator comes from (run records, install hints)
    extra: str | None = None  # pip extra that installs it
    train_script: str = ""  # the command that trains on it, relative to the repository root
    test_seed_offset: int = TEST_SEED_OFFSET
    validation_seed_offset: int = VALIDATION_SEED_OFFSET
    validation_episodes: int = 10  # per evaluation setting, when --val_episodes is not given
    several_targets: bool = False  # evaluate() plays every --target_return value at once (else one per call)

    # --- evaluation protocol ---------------------------------------------------------------------------
    def seeds(self, n: int, split: str = "test") -> list[int]:
        """The ``n`` fixed env seeds of an evaluation split (``test`` or ``validation``): one rule for every env."""
        return split_seeds(n, split, self.test_seed_offset, self.validation_seed_offset)

    def episodes(self, args: Any, split: str) -> int:
        """Evaluation episodes of the split: ``--eval_episodes`` for test, ``--val_episodes`` (default: the
        env's ``validation_episodes``) for validation."""
        if split == "test":
            return int(args.eval_episodes)
        return int(getattr(args, "val_episodes", None) or self.validation_episodes)

    def add_eval_flags(self, parser: argparse.ArgumentParser) -> None:
        """The flags :meth:`evaluate` reads beyond the shared ones, declared once for the train script and for
        ``tools.evaluate`` (which lays them over a checkpoint's recorded flags)."""

    def check_eval_flags(self, args: Any) -> None:
        """ConfigError for evaluation flags that cannot work (here: the shared budget flags below 1; an env
        that checks more calls this too)."""
        check_eval_flags(args)

    def evaluate(self, model: RATE, args: Any, split: str = "test") -> dict[str, Any]:
        """The protocol's metrics of ``model`` on the split's seeds (numbers, plus lists such as ``episodes``)."""
        raise NotImplementedError

    def selection_score(self, metrics: dict[str, Any]) -> float:
        """The number best-on-validation maximises, from :meth:`evaluate`'s validation metrics."""
        raise NotImplementedError

    # --- inspection tools ------------------------------------------------------------------------------
    def attention_episode(self, seed: int, length: int | None, args: dict[str, Any]) -> Episode:
        """One protocol episode for ``tools.attention``: env seed ``seed``, ``length`` (a corridor, a grid size or
        steps; None: the run's setting); its ``cue_steps`` mark the observations a memory must keep."""
        raise EnvError(f"{self.name} has no attention episode")

    def heldout(self, args: Any, window: int, episodes: int, data_dir: Path | None = None) -> Windows:
        """``episodes`` episodes of the expert that training never saw (other seeds, or the files of
        ``data_dir``), cut into windows of ``window`` steps as in training: ``tools.step_loss``'s data."""
        raise EnvError(f"{self.name} defines no held-out episodes for step_loss")

    def step_groups(self, data: Windows, table: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Named boolean masks [n, T] over the windows ``table`` of ``data`` (their data ``actions`` [n, T]):
        the steps split by what the expert's action depends on (e.g. a cue seen long before), for
        ``tools.step_loss``."""
        return {}

    def policies(self) -> dict[str, Callable[..., Any]]:
        """Named scripted policies (experts, oracles, random) that ``tools.measure`` plays on the protocol."""
        return {}

    def __repr__(self) -> str:
        return f"<Environment {self.name}>"


_REGISTRY: dict[str, Environment] = {}


def register(env: Environment) -> Environment:
    """Make ``env`` findable by :func:`get` under ``env.name`` (replacing one of that name); returns it."""
    if not env.name:
        raise EnvError(f"{type(env).__name__} has no name")
    _REGISTRY[env.name] = env
    return env


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def names() -> list[str]:
    """Every environment name known: the registered ones and those the installed packages declare."""
    return sorted({*_REGISTRY, *_entry_points()})


def get(name: str) -> Environment:
    """The environment registered as ``name`` (loading its module through the entry point on first use).
    EnvError, one line, for an unknown name or a simulator that is not installed."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_points()
    if name not in eps:
        raise EnvError(f"unknown environment {name!r}; known: {', '.join(names()) or 'none'}")
    try:
        env = eps[name].load()
    except ImportError as e:
        raise EnvError(f"environment {name}: its simulator or module is not installed ({e})") from None
    if not isinstance(env, Environment):
        raise EnvError(f"entry point {eps[name].value} is not an Environment")
    return register(env)
