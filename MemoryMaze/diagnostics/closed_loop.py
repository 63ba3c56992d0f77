"""Where does a Memory Maze policy lose targets in closed loop: finding the current target, or reaching it once
seen? A model checkpoint (or the visible oracle) plays the first protocol mazes in one process while the
simulator's segmentation says when the current target is on screen.

    python3 MemoryMaze/diagnostics/closed_loop.py runs/memory_maze/RATE/seed_1/checkpoints/last.pt --episodes 4
    python3 MemoryMaze/diagnostics/closed_loop.py --oracle --episodes 4      # the data's policy, ε 0.1

Per episode and in total: return; the share of steps with the current target on screen (>= 3 of its pixels
inside the colour border); its sightings (steps where it comes into view) and how many of them are followed by
reaching it within 30 steps; distinct maze cells visited; steps without moving; the action shares; for each
newly assigned target, how many steps before it was last on screen (null: never; in total: the share seen
before, and seen within the last 90 steps, the window the models train on). A policy that sees its target
rarely fails at finding it (where remembered targets and layout pay); one that sees it but does
not reach it fails at the visual approach. Prints one JSON line per episode and one for all (``--out``: also
written to a file, one JSON line each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from MemoryMaze.MemoryMaze_src.expert import VisibleOracle, current_target
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV, TARGET_RETURN
from MemoryMaze.MemoryMaze_src.memory_maze_env import MAX_STEPS, N_ACTIONS, MemoryMazeEnv
from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.rollout import rollout

IN_VIEW_PIXELS = 3  # as the visible oracle's check against the segmentation (RESULTS_memory_maze.md)
REACH_STEPS = 30  # a sighting counts as reached when a reward follows within this many steps


class Recorder:
    """One privileged episode as the rollout engine's one-env ``VectorEnv``; records the agent's position,
    whether the current target is on screen and the reward at every step."""

    num_envs = 1

    def __init__(self, seed: int, max_steps: int):
        self.env, self.seed = MemoryMazeEnv(max_steps=max_steps, privileged=True), seed
        self.pos: list[np.ndarray] = []
        self.in_view: list[bool] = []
        self.rewards: list[float] = []
        self.actions: list[int] = []
        self.state: dict[str, np.ndarray] = {}
        self.current = -1  # index of the current target
        self.last_seen: dict[int, int] = {}  # target index -> last step it was on screen
        self.since_seen: list[int | None] = []  # per new target: steps since it was last on screen (None: never)

    def _record(self, info: dict[str, Any]) -> None:
        self.state = info["state"]
        self.pos.append(np.array(self.state["agent_pos"], float))

    def reset(self) -> np.ndarray:
        obs, info = self.env.reset(seed=self.seed)
        self._record(info)
        self.current = current_target(self.state)
        return obs[None].astype(np.float32) / 255

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        a = int(np.asarray(actions).reshape(-1)[0])
        obs, r, terminated, truncated, info = self.env.step(a)
        self._record(info)
        t, pixels, cur = len(self.rewards), self.env.target_pixels(), current_target(self.state)
        self.last_seen.update({int(i): t for i in np.flatnonzero(pixels >= IN_VIEW_PIXELS)})
        if cur != self.current:  # a target was reached and the next one assigned
            self.since_seen.append(t - self.last_seen[cur] if cur in self.last_seen else None)
            self.current = cur
        self.in_view.append(bool(pixels[cur] >= IN_VIEW_PIXELS))
        self.rewards.append(float(r))
        self.actions.append(a)
        return obs[None].astype(np.float32) / 255, np.array([r], float), np.array([terminated or truncated]), {}

    def close(self) -> None:
        self.env.close()

    def stats(self) -> dict[str, Any]:
        v, rew, pos = np.array(self.in_view, bool), np.array(self.rewards), np.array(self.pos)
        sightings = np.flatnonzero(v & ~np.r_[False, v[:-1]])
        moved = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        return {"seed": self.seed, "return": float(rew.sum()), "target_in_view": float(v.mean()),
                "sightings": len(sightings),
                "reached_after_sighting": int(sum(rew[s:s + REACH_STEPS].sum() > 0 for s in sightings)),
                "cells_visited": len({(int(x), int(y)) for x, y in pos}), "still": float((moved < 0.01).mean()),
                "since_seen_at_assignment": self.since_seen,
                "actions": (np.bincount(self.actions, minlength=N_ACTIONS) / max(len(self.actions), 1)).tolist()}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over episodes; sightings and reaches summed, with the share reached."""
    sightings = sum(r["sightings"] for r in rows)
    reached = sum(r["reached_after_sighting"] for r in rows)
    since = np.array([np.inf if x is None else x for r in rows for x in r["since_seen_at_assignment"]], float)
    seen = since[np.isfinite(since)]
    return {"episodes": len(rows), "return": float(np.mean([r["return"] for r in rows])),
            "target_in_view": float(np.mean([r["target_in_view"] for r in rows])), "sightings": sightings,
            "reached_after_sighting": reached, "reached_share": reached / sightings if sightings else None,
            "cells_visited": float(np.mean([r["cells_visited"] for r in rows])),
            "still": float(np.mean([r["still"] for r in rows])), "assigned": len(since),
            "seen_before_assignment": float(len(seen) / len(since)) if len(since) else None,
            "seen_within_90_steps": float((seen <= 90).sum() / len(since)) if len(since) else None,
            "median_steps_since_seen": float(np.median(seen)) if len(seen) else None,
            "actions": np.mean([r["actions"] for r in rows], 0).round(3).tolist()}


def play(policy: Any, seed: int, max_steps: int, target_return: float, sample: bool,
         generator: torch.Generator) -> dict[str, Any]:
    """One episode of ``policy`` (a model, or None for the visible oracle at ε 0.1) on maze ``seed``."""
    env = Recorder(seed, max_steps)
    try:
        if policy is None:
            agent, rng, done = VisibleOracle(0.1), np.random.default_rng(seed), False
            env.reset()
            while not done:
                done = bool(env.step(np.array([agent.act(env.state, rng)]))[2][0])
        else:
            rollout(policy, env, target_return, max_steps, sample=sample, generator=generator)
        return env.stats()
    finally:
        env.close()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("checkpoint", type=Path, nargs="?", help="a model checkpoint (or --oracle)")
    p.add_argument("--oracle", action="store_true", help="the visible oracle at ε 0.1 (the data's policy)")
    p.add_argument("--episodes", type=int, default=4, help="the first N protocol mazes")
    p.add_argument("--max_steps", type=int, default=500)
    p.add_argument("--target_return", type=float, default=TARGET_RETURN)
    p.add_argument("--greedy", action="store_true", help="the most likely action instead of sampled ones")
    p.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "max_steps"))
    if args.max_steps > MAX_STEPS:
        raise ConfigError(f"--max_steps must be <= {MAX_STEPS}, got {args.max_steps}")
    if (args.checkpoint is None) == (not args.oracle):
        raise ConfigError("give a checkpoint or --oracle (one of them)")
    policy = None if args.oracle else load_model(args.checkpoint)[0]
    gen = torch.Generator().manual_seed(0)
    rows = []
    for seed in ENV.seeds(args.episodes):
        rows.append(play(policy, seed, args.max_steps, args.target_return, not args.greedy, gen))
        print(json.dumps(rows[-1]), flush=True)
    total = {"policy": "visible oracle, eps 0.1" if args.oracle else str(args.checkpoint),
             "actions_mode": "greedy" if args.greedy else "sampled", **summary(rows)}
    print(json.dumps(total), flush=True)
    if args.out:
        write_json_lines(args.out, [*rows, total])
    return [*rows, total]


if __name__ == "__main__":
    run_main(main)
