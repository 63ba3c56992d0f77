"""Generate Atari training data in the DQN-replay layout with scripted RAM policies (no download, no RL).

    python3 Atari/get_data/collect_replay.py --game Pong --transitions 500000 --epsilon 0.05

Writes ``<out_dir>/<Game>/1/replay_logs/`` checkpoints 0..C-1 (``--checkpoints``, default 50, the
number Decision Transformer's sampler draws from), each holding whole episodes of at least
transitions / C transitions, in the files dopamine writes (see ``Atari_src/atari_data.py``): single
84×84 frames after frame-skip 4 with max-pooling, sticky actions p = 0.25 as in the published data,
3 zero transitions before every episode, rewards not clipped. The policy is the game's scripted
controller (``Atari_src/expert.py``) with probability ``--epsilon`` of a uniform random action.

Checkpoint ``c`` depends only on (--game, --seed, c); checkpoints run in parallel processes; a rerun
skips the finished ones (resume after Ctrl-C) and refuses a folder made with other settings
(``meta.json``). Prints one JSON line: transitions, episodes, mean return, speed.

``--format minari --dataset_id rate/atari/breakout-v0`` writes the episodes as a local Minari dataset instead
(``both``: as well): the checkpoints' episodes in order, as ``Atari_src/atari_data.py`` reads them (padding
dropped), each step's observation the 4-frame stack the model sees, uint8 [4, 84, 84] (oldest first; the first
frame repeated before an episode's start), exact (no JPEG; ~28 KB a step, 4x the checkpoints' frames). The env
spec ``rate/AtariReplay-v0`` (``game``; the ``--max_episode_steps`` limit) is the env the data was played in
(sticky actions 0.25, no FIRE at reset) seen through that stack; the DQN evaluation protocol's env is
``Atari_src/atari_env.make_env(game)``. The checkpoints mark only an episode's end, so: an episode that
reaches the step limit (``--max_episode_steps``, or the emulator's frame cap: 27 000 steps, Pong 16 250) is
truncated, a shorter one terminated (game over); a game over on the very last allowed step counts as truncated.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from Atari.Atari_src.atari_data import (
    FRAME,
    PAD,
    Checkpoint,
    buffer_of_episodes,
    element_file,
    replay_logs,
    write_checkpoint,
)
from Atari.Atari_src.atari_env import (
    FRAME_SKIP,
    FRAME_STACK,
    GAMES,
    GYM_ID,
    MAX_FRAMES,
    MAX_STEPS,
    N_ACTIONS,
    ROM_FRAME_LIMIT,
    check_game,
    make_env,
)
from Atari.Atari_src.expert import make_policy, play_episode
from RATE_model.collect import collect_episodes
from RATE_model.config import OneLineErrorParser
from RATE_model.data import stacked
from RATE_model.minari_data import add_export_flags, env_spec, export_frames, minari_episode, run_generator

DATA_DIR = Path(__file__).resolve().parent.parent / "Atari_data"
RUN = 1  # the run folder the reference loader reads (<root>/<Game>/1/replay_logs)
POLICY = "ram_scripted_v1"  # recorded in meta.json: a changed policy must not extend an old folder

_ENV: dict[str, Any] = {}  # one emulator per worker process and game
def checkpoint_seeds(seed: int, game: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, GAMES.index(game), index])


def collect_checkpoint(index: int, game: str, size: int, epsilon: float, seed: int,
                       max_episode_steps: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Checkpoint ``index``: whole episodes until the buffer holds >= ``size`` transitions."""
    if game not in _ENV:
        _ENV[game] = make_env(game, data=True)
    env, policy = _ENV[game], make_policy(game)
    ss = checkpoint_seeds(seed, game, index)
    rng = np.random.default_rng(ss)
    episodes, count = [], 0
    while count < size:
        env_seed = int(ss.spawn(1)[0].generate_state(1)[0])  # a fresh child per episode
        episodes.append(play_episode(env, policy, epsilon, env_seed, rng, max_episode_steps))
        count += PAD + len(episodes[-1]["reward"])
    returns = [float(ep["reward"].sum()) for ep in episodes]
    return buffer_of_episodes(episodes), {"episodes": len(episodes), "return_sum": sum(returns)}


def observation_file(logs: Path, index: int) -> Path:
    """Written last of a checkpoint's files: its existence marks the checkpoint done."""
    return element_file(logs, "observation", index)


def save_checkpoint(logs: Path, index: int, arrays: dict[str, np.ndarray]) -> None:
    write_checkpoint(logs, index, **arrays)


def collect(game: str, out_dir: Path = DATA_DIR, transitions: int = 500_000, checkpoints: int = 50,
            epsilon: float = 0.05, seed: int = 0, max_episode_steps: int = MAX_STEPS, workers: int | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Make sure ``<out_dir>/<game>/1/replay_logs`` holds checkpoints 0..checkpoints-1; returns counts,
    the policy's mean return and the speed."""
    check_game(game)
    if transitions < checkpoints:
        raise ValueError(f"--transitions ({transitions}) must be >= --checkpoints ({checkpoints})")
    if checkpoints < 1 or max_episode_steps < 1:
        raise ValueError("--checkpoints and --max_episode_steps must be >= 1")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon must be in [0, 1], got {epsilon}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    logs = replay_logs(out_dir, game, RUN)
    size = -(-transitions // checkpoints)
    meta = {"game": game, "transitions": transitions, "checkpoints": checkpoints, "epsilon": epsilon, "seed": seed,
            "max_episode_steps": max_episode_steps, "sticky": 0.25, "policy": POLICY}
    job = partial(collect_checkpoint, game=game, size=size, epsilon=epsilon, seed=seed,
                  max_episode_steps=max_episode_steps)
    stats = collect_episodes(logs, checkpoints, job, meta, workers, progress, f"{game} checkpoints",
                             path_of=observation_file, save=save_checkpoint)
    stats["checkpoints_written"] = stats.pop("written")
    stats["transitions"] = stats.pop("steps")
    if stats.get("episodes"):
        stats["mean_return"] = round(stats.pop("return_sum") / stats["episodes"], 2)
        stats["transitions_per_s"] = round(stats["transitions"] / stats["seconds"], 1)
    stats.pop("episodes_per_s", None)
    stats["n_actions"] = N_ACTIONS[game]
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--game", required=True, choices=GAMES)
    p.add_argument("--transitions", type=int, default=500_000,
                   help="transitions in all (Decision Transformer trains on 500 000)")
    p.add_argument("--checkpoints", type=int, default=50, help="replay checkpoints the transitions are split into")
    p.add_argument("--epsilon", type=float, default=0.05, help="probability of a uniform random action per step")
    p.add_argument("--max_episode_steps", type=int, default=MAX_STEPS,
                   help=f"cut episodes after this many agent steps (default {MAX_STEPS} = 108 000 frames)")
    p.add_argument("--seed", type=int, default=0, help="base seed; checkpoint c is a function of (game, seed, c)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help="data root (<out_dir>/<Game>/1/replay_logs)")
    add_export_flags(p)
    return p


def step_limit(game: str, max_episode_steps: int) -> int:
    """Agent steps after which an episode is cut (truncated): ``--max_episode_steps`` or the emulator's frame cap."""
    return min(max_episode_steps, -(-min(MAX_FRAMES, ROM_FRAME_LIMIT.get(game, MAX_FRAMES)) // FRAME_SKIP))


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """The episodes of the checkpoints in ``folder`` as the Minari dataset ``--dataset_id`` (see the module
    docstring), streamed: one checkpoint's observation file read once, one episode in memory."""
    logs = replay_logs(folder, args.game, RUN)
    ckpts = [Checkpoint(logs, n, max_index=sys.maxsize) for n in range(args.checkpoints)]
    stream = (ep for c in ckpts for ep, _ in c.read(range(len(c.episodes)), args.game))
    limit = step_limit(args.game, args.max_episode_steps)

    def episode(_: tuple[int, int]) -> dict[str, np.ndarray]:
        ep = next(stream)
        T = len(ep["reward"])
        stacks = ep["obs"][stacked(np.arange(T), 0, FRAME_STACK)]  # oldest first, the first frame repeated
        return minari_episode(stacks, ep["action"].astype(np.int64), ep["reward"], terminated=T < limit,
                              truncated=T >= limit)

    return export_frames(
        args, logs, episode, (FRAME_STACK, *FRAME), N_ACTIONS[args.game],
        items=[(c.n, j) for c in ckpts for j in range(len(c.episodes))],
        env=env_spec(GYM_ID, args.max_episode_steps, game=args.game),
        algorithm_name=f"RATE scripted RAM policy {POLICY} (Atari/Atari_src/expert.py)",
        about=f"Atari {args.game} episodes of RATE's generator (Atari/get_data/collect_replay.py)",
        details="Observations: the last 4 frames (84x84 grey, frame-skip 4 with max-pooling) as uint8 [4, 84, 84]; "
                "actions: the game's minimal set; rewards not clipped.")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_generator(build_parser(), collect, export_minari, argv)


if __name__ == "__main__":
    main()
