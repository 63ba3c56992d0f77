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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from RATE_model.config import ConfigError, check_eval_flags
from RATE_model.rollout import split_seeds

if TYPE_CHECKING:
    from RATE_model.data import Windows
    from RATE_model.model import RATE
    from RATE_model.pretrain import Frames
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
    target_return: float | None = None  # the protocol's return-to-go when --target_return is not given
    start_method: str = "fork"  # worker processes of tools.measure ("forkserver": a simulator a forked child can't use)
    frame_groups: tuple[str, ...] = ()  # the groups of steps frames() names (tools.pretrain_encoder --frames)

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
        """ConfigError for evaluation flags that cannot work (here: the shared budget flags below 1, and
        several --target_return values where the protocol takes one); an env that checks more calls this too."""
        check_eval_flags(args)
        targets = getattr(args, "target_return", None)
        if not self.several_targets and isinstance(targets, (list, tuple)) and len(targets) > 1:
            raise ConfigError(f"--target_return takes one value in training on {self.name}, got "
                              f"{','.join(map(str, targets))} (python -m RATE_model.tools.evaluate CKPT "
                              "--target_return A,B plays several)")

    def target(self, args: Any) -> float:
        """The one return-to-go a run evaluates with: its ``--target_return`` (a one-value list; older runs
        recorded a number), else :meth:`default_target`. ``args``: a namespace or a dict of recorded flags."""
        t = args.get("target_return") if isinstance(args, dict) else getattr(args, "target_return", None)
        if isinstance(t, (list, tuple)):
            t = t[0] if t else None
        return self.default_target(args) if t is None else float(t)

    def default_target(self, args: Any) -> float:
        """The protocol's return-to-go (an env whose target depends on the run, e.g. the game, overrides this)."""
        if self.target_return is None:
            raise EnvError(f"{self.name} has no default --target_return")
        return float(self.target_return)

    def memory_noise(self, args: Any, split: str) -> str:
        """The memory ablation (``--eval_memory_noise``) the split's rollouts apply: the run's setting on the test
        seeds, never on the validation seeds (a checkpoint is chosen on the intact model); pass it to
        ``rollout(..., memory_noise=...)``."""
        return (getattr(args, "eval_memory_noise", None) or "none") if split == "test" else "none"

    def evaluate(self, model: RATE, args: Any, split: str = "test") -> dict[str, Any]:
        """The protocol's metrics of ``model`` on the split's seeds (numbers, plus lists such as ``episodes``)."""
        raise NotImplementedError

    def selection_score(self, metrics: dict[str, Any]) -> float:
        """The number best-on-validation maximises, from :meth:`evaluate`'s validation metrics: here the mean
        return."""
        return float(metrics["return"])

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

    def counterfactual(self, data: Windows, table: np.ndarray) -> tuple[np.ndarray, Sequence[str]] | None:
        """Where the held-out data records what the expert would have done had the cue been the other value:
        those actions [n, T] over the windows ``table`` and the names of the :meth:`step_groups` at which
        ``tools.step_loss`` reports the model's preference for the data's action over them
        (:func:`RATE_model.diagnose.preference`); None where the data has none."""
        return None

    def step_summary(self, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Numbers ``tools.step_loss`` adds to a checkpoint's line, from its per-group results ``groups``
        ({name: {loss, accuracy, steps}}), e.g. the loss gap between two groups."""
        return {}

    # --- scripted policies (tools.measure) ---------------------------------------------------------------
    def add_measure_flags(self, parser: argparse.ArgumentParser) -> None:
        """The flags :meth:`policies` reads beyond the evaluation flags (a game, a task, a grid size, an expert's
        epsilon), each with a default; ``tools.measure`` declares them next to :meth:`add_eval_flags`."""

    def policies(self, args: Any) -> dict[str, Callable[[int], dict[str, Any]]]:
        """Named scripted policies (experts, oracles, random) that ``tools.measure`` plays on the protocol.

        ``args``: the env's flags (the evaluation and measure flags over the train script's defaults). Each
        policy is a function of one env seed (one of :meth:`seeds`) that plays one episode of the protocol's
        setting on it and returns at least ``{"return": float, "length": int}``; numeric extras (``"success"``,
        a count, a bool) are allowed and ``tools.measure`` averages them. A policy depends only on ``args`` and
        the seed (its random draws are seeded from it), so the numbers do not depend on the worker processes.
        The functions may be closures: each worker process calls ``policies(args)`` itself.
        Raises ConfigError, naming the flag, for measure flags that cannot work (before any episode)."""
        return {}

    def measure_stats(self, policy: str, rows: list[dict[str, Any]], args: Any) -> dict[str, Any]:
        """Statistics ``tools.measure`` adds to a policy's line beyond the means of its episodes' numbers, from its
        episodes ``rows`` (what :meth:`policies` returned, in seed order), e.g. a return per cue value."""
        return {}

    # --- training data (the train script and tools.pretrain_encoder) -------------------------------------
    def add_data_flags(self, parser: argparse.ArgumentParser) -> None:
        """The train script's data flags (which episodes it reads, and how it cuts them), declared once for the
        train script and for ``tools.pretrain_encoder``, which reads the same episodes; their defaults are the
        train script's (config.yaml, laid over them by each command)."""

    def frames(self, args: Any, data_dir: Path | None = None, episodes: int | None = None) -> Frames:
        """The training data's episodes (``args``: the data flags of :meth:`add_data_flags`), or the first
        ``episodes`` episodes of the folder ``data_dir`` (held-out ones), as single-frame behaviour cloning reads
        them (:class:`RATE_model.pretrain.Frames`; their ``groups`` are named in :attr:`frame_groups`):
        ``tools.pretrain_encoder``'s data. ConfigError, naming the flag, for a data flag that cannot work."""
        raise EnvError(f"{self.name} has no image frames to pretrain an encoder on")

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


def flag_dests(*declare: Callable[[argparse.ArgumentParser], None]) -> list[str]:
    """The ``dest`` of every flag the ``declare`` functions (e.g. ``env.add_data_flags``) add to a parser."""
    p = argparse.ArgumentParser(add_help=False)
    for add in declare:
        add(p)
    return [a.dest for a in p._actions]


def set_train_defaults(parser: argparse.ArgumentParser, env: Environment,
                       *declare: Callable[[argparse.ArgumentParser], None]) -> dict[str, Any]:
    """Give the flags of ``declare`` in ``parser`` the env's train-script defaults (a tool that takes the train
    script's flags defaults to what the train script does); returns all of those defaults."""
    defaults = train_defaults(env)
    parser.set_defaults(**{d: defaults[d] for d in flag_dests(*declare) if d in defaults})
    return defaults


def train_defaults(env: Environment) -> dict[str, Any]:
    """The env's train-script defaults: the ``config.yaml`` beside its evaluation module (empty if none)."""
    import sys

    from RATE_model.cli import load_defaults

    file = getattr(sys.modules.get(type(env).__module__), "__file__", None)
    path = Path(file).parent / "config.yaml" if file else None
    return load_defaults(path) if path is not None and path.is_file() else {}
