"""Generate the ViZDoom-Two-Colors training data with a scripted expert (no download, no A2C checkpoint).

    python3 VizDoom/get_data/generate_iter_data.py --n_episodes 5000 --n_steps 90
    python3 VizDoom/get_data/generate_iter_data.py --expert privileged --epsilon 0.1 --out_dir DIR  # the old data

``--expert visible`` (default) acts only on what the agent sees and has seen, with no action noise;
``--expert privileged`` reads every item's position from the engine (``VizDoom_src/expert.py``).
Each episode is ``<out_dir>/episode_<index>.npz`` with the reference fields: obs uint8 [T, 3, 64, 112],
action int64 [T] (0..4), reward float32 [T], done bool [T], is_red bool [T], and two fields for the diagnosis:
action_other_colour int64 [T] (the expert's noise-free action had the pillar been the other colour) and
colour_dependent bool [T] (that action differs from the noise-free one taken). Episode ``index`` depends
only on (--seed, index) and even indices show the red pillar, odd ones the green, so the colours are
balanced. A rerun skips the files already written (resume after Ctrl-C); ``meta.json`` records the
settings, and a rerun with other settings into the same folder is refused. The same function backs
``VizDoom/VizDoom_notebooks/generate_iter_data.ipynb``.

``--format minari --dataset_id rate/vizdoom/two-colors-v0`` writes the episodes as a local Minari dataset instead
(``both``: as well): frames exact (no JPEG), the env spec ``rate/ViZDoomTwoColors-v0`` with the episode limit, so
``Minari/train_minari.py`` evaluates in it; an episode that reaches ``--n_steps`` is truncated, a shorter one
terminated (the player died).
"""

from __future__ import annotations

import argparse
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from RATE_model.collect import collect_episodes, episode_path
from RATE_model.config import OneLineErrorParser
from RATE_model.minari_data import add_export_flags, env_spec, export_frames, minari_episode, run_generator
from VizDoom.VizDoom_src.expert import DEFAULT_TARGET_HOLD, EXPERTS, expert_episode
from VizDoom.VizDoom_src.scenario import DEFAULT, ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_env import GYM_ID, MAX_TIMEOUT, N_ACTIONS, OBS_SHAPE, TwoColorsEnv

DATA_DIR = Path(__file__).resolve().parent.parent / "VizDoom_data" / "iterative_data"
# recorded in meta.json: a changed expert must not extend an old folder
EXPERT_VERSIONS = {"privileged": "nearest_item_v1", "visible": "visible_v1"}
DEFAULT_EPSILON = {"visible": 0.0, "privileged": 0.1}

__all__ = ["DATA_DIR", "collect", "episode_path", "episode_seeds", "main"]

_ENV: dict[tuple[int, int, str, bool], TwoColorsEnv] = {}  # one engine per worker process and setting


def episode_seeds(seed: int, index: int) -> tuple[int, int]:
    """(environment seed, action-noise seed) of episode ``index``; the env seed's parity is the index's
    (even: red pillar)."""
    env_seed, noise_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(env_seed % 2**30) * 2 + index % 2, int(noise_seed)


def collect_one(index: int, n_steps: int, epsilon: float, seed: int, pillar_tics: int = DEFAULT.pillar_tics,
                expert: str = "visible", mark_colour: bool = False, target_noise: float = 0.0,
                target_hold: int = DEFAULT_TARGET_HOLD) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Expert episode ``index``; stats: red episodes, deaths before ``n_steps``, colour-dependent steps."""
    key = (n_steps, pillar_tics, expert, mark_colour)
    if key not in _ENV:
        _ENV[key] = TwoColorsEnv(timeout=n_steps, privileged=expert == "privileged", visible=expert == "visible",
                                 scenario=ScenarioConfig(pillar_tics=pillar_tics), mark_colour=mark_colour)
    env_seed, noise_seed = episode_seeds(seed, index)
    ep = expert_episode(_ENV[key], env_seed, n_steps, epsilon, noise_seed, target_noise, target_hold)
    return ep, {"red": int(ep["is_red"][0]), "died": int(len(ep["action"]) < n_steps),
                "colour_dependent": int(ep["colour_dependent"].sum())}


def _close_and_exit(*_: Any) -> None:
    for env in _ENV.values():  # the engine processes would outlive a killed worker
        env.close()
    os._exit(143)


def _worker_init() -> None:
    signal.signal(signal.SIGTERM, _close_and_exit)


def collect(out_dir: Path = DATA_DIR, n_episodes: int = 5000, n_steps: int = 90, epsilon: float | None = None,
            seed: int = 0, workers: int | None = None, progress: bool = True,
            pillar_tics: int = DEFAULT.pillar_tics, expert: str = "visible",
            mark_colour: bool = False, target_noise: float = 0.0,
            target_hold: int = DEFAULT_TARGET_HOLD) -> dict[str, Any]:
    """Make sure ``out_dir`` holds episodes 0..n_episodes-1; returns counts and the generation speed.
    ``pillar_tics``: how long the pillar stands (the reference script: 45 tics; the paper's text: 45 steps).
    ``expert``: ``visible`` or ``privileged``; ``epsilon`` (its random-action share) defaults to 0 and 0.1.
    ``mark_colour``: every frame shows the pillar's colour in a corner (a diagnosis; evaluation follows it).
    ``target_noise``, ``target_hold``: the visible expert's noise in which right-colour item it heads for."""
    if expert not in EXPERTS:
        raise ValueError(f"--expert must be one of {', '.join(EXPERTS)}, got {expert!r}")
    epsilon = DEFAULT_EPSILON[expert] if epsilon is None else epsilon
    if not 1 <= n_steps <= MAX_TIMEOUT:
        raise ValueError(f"--n_steps must be in 1..{MAX_TIMEOUT} (the engine's own episode limit), got {n_steps}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon must be in [0, 1], got {epsilon}")
    if target_noise < 0 or target_hold < 1:
        raise ValueError(f"--target_noise must be >= 0 and --target_hold >= 1, got {target_noise}, {target_hold}")
    if target_noise and expert != "visible":
        raise ValueError("--target_noise is a setting of the visible expert (--expert visible)")
    ScenarioConfig(pillar_tics=pillar_tics)  # checks the value
    meta = {"n_steps": n_steps, "epsilon": epsilon, "seed": seed, "expert": EXPERT_VERSIONS[expert]}
    if pillar_tics != DEFAULT.pillar_tics:  # folders of the reference rule keep the meta.json they were written with
        meta["pillar_tics"] = pillar_tics
    if mark_colour:
        meta["mark_colour"] = True
    if target_noise:  # folders without it keep the meta.json they were written with
        meta.update(target_noise=target_noise, target_hold=target_hold)
    job = partial(collect_one, n_steps=n_steps, epsilon=epsilon, seed=seed, pillar_tics=pillar_tics, expert=expert,
                  mark_colour=mark_colour, target_noise=target_noise, target_hold=target_hold)
    return collect_episodes(out_dir, n_episodes, job, meta, workers, progress, "ViZDoom-Two-Colors episodes",
                            worker_init=_worker_init)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--n_episodes", type=int, default=5000, help="episodes to write (the reference: 5000)")
    p.add_argument("--n_steps", type=int, default=90, help="steps per episode (fewer if the player dies)")
    p.add_argument("--expert", choices=EXPERTS, default="visible",
                   help="visible: acts on what the agent sees and has seen (default); privileged: reads the engine")
    p.add_argument("--epsilon", type=float, default=None,
                   help="probability of a random action per step (default: 0 for visible, 0.1 for privileged)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i is a function of (seed, i)")
    p.add_argument("--pillar_tics", type=int, default=DEFAULT.pillar_tics,
                   help="tics the pillar stands (45: the reference script; the paper's text says 45 steps = 90 tics)")
    p.add_argument("--mark_colour", action="store_true",
                   help="diagnosis: every frame shows the pillar's colour in its top-left corner (no memory needed); "
                        "train_vizdoom.py evaluates such data with the same marker")
    p.add_argument("--target_noise", type=float, default=0.0,
                   help="visible expert: a cost in map units, up to which each item's cost is raised at random "
                        "(redrawn every --target_hold steps), so which right-colour item it heads for varies "
                        "(default 0: always the cheapest)")
    p.add_argument("--target_hold", type=int, default=DEFAULT_TARGET_HOLD,
                   help="steps between two draws of --target_noise")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help="output folder")
    add_export_flags(p)
    return p


def _minari_episode(ep: dict[str, np.ndarray], n_steps: int) -> dict[str, np.ndarray]:
    died = len(ep["action"]) < n_steps
    return minari_episode(ep["obs"], ep["action"], ep["reward"], terminated=died, truncated=not died)


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """The episodes of ``folder`` as the Minari dataset ``--dataset_id`` (see the module docstring)."""
    spec = env_spec(GYM_ID, timeout=args.n_steps, mark_colour=args.mark_colour,
                    **({"pillar_tics": args.pillar_tics} if args.pillar_tics != DEFAULT.pillar_tics else {}))
    return export_frames(
        args, folder, partial(_minari_episode, n_steps=args.n_steps), OBS_SHAPE, N_ACTIONS, env=spec,
        algorithm_name=f"RATE scripted {args.expert} expert (VizDoom/VizDoom_src/expert.py)",
        about="ViZDoom-Two-Colors episodes of RATE's generator (VizDoom/get_data/generate_iter_data.py)",
        details="Observations: the screen as uint8 [3, 64, 112].")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_generator(build_parser(), collect, export_minari, argv)


if __name__ == "__main__":
    main()
