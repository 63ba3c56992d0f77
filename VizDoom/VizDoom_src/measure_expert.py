"""Measure the scripted expert and a uniformly random policy on the evaluation protocol's seeds: mean return
overall and per pillar colour (± standard error), episode length, and env steps per second per process.

    python3 VizDoom/VizDoom_src/measure_expert.py --episodes 100 --timeout 2100
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from functools import partial
from typing import Any

import numpy as np

from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, unit_floats
from RATE_model.experiment import run_main
from RATE_model.rollout import sem
from VizDoom.VizDoom_src.expert import expert_action
from VizDoom.VizDoom_src.vizdoom_env import DEFAULT_TIMEOUT, MAX_TIMEOUT, N_ACTIONS, TwoColorsEnv
from VizDoom.VizDoom_src.vizdoom_eval import eval_seeds


def swap_colours(state: dict[str, Any]) -> dict[str, Any]:
    """The privileged state as it would read with the other pillar colour (every item's role swapped)."""
    role = {"Heal": "Hurt", "Hurt": "Heal"}
    return {**state, "items": {k[:-4] + role[k[-4:]]: v for k, v in state["items"].items()}}


def play(seed: int, policy: str, epsilon: float, timeout: int) -> tuple[bool, float, int, float, int, int, int]:
    """One episode: (is_red, return, length, seconds, right-colour pickups, wrong-colour pickups, steps in
    which the noise-free expert would act differently with the other pillar colour)."""
    env = TwoColorsEnv(timeout=timeout, privileged=policy == "expert")
    rng = np.random.default_rng(seed)
    t0 = time.time()
    _, info = env.reset(seed=seed)
    total, steps, colour_steps, done = 0.0, 0, 0, False
    while not done:
        if policy == "expert":
            red, state, plain = bool(info["is_red"]), info["state"], np.random.default_rng(0)
            colour_steps += expert_action(state, red, plain) != expert_action(swap_colours(state), not red, plain)
            a = expert_action(state, red, rng, epsilon)
        else:
            a = int(rng.integers(N_ACTIONS))
        _, r, terminated, truncated, info = env.step(a)
        total, steps, done = total + r, steps + 1, terminated or truncated
    env.close()
    return bool(info["is_red"]), total, steps, time.time() - t0, int(info["good"]), int(info["bad"]), colour_steps


def measure(policy: str, episodes: int, timeout: int, epsilon: float = 0.0, workers: int = 2) -> dict[str, float]:
    with mp.get_context("fork").Pool(workers) as pool:
        out = pool.map(partial(play, policy=policy, epsilon=epsilon, timeout=timeout), eval_seeds(episodes))
    red = np.array([o[0] for o in out])
    ret, length, secs, good, bad, colour = (np.array([o[i] for o in out], float) for i in (1, 2, 3, 4, 5, 6))
    return {"policy": policy, "epsilon": epsilon, "episodes": episodes, "timeout": timeout,
            "return": round(ret.mean(), 2), "return_sem": round(sem(ret), 2),
            "return_red": round(ret[red].mean(), 2), "return_red_sem": round(sem(ret[red]), 2),
            "return_green": round(ret[~red].mean(), 2), "return_green_sem": round(sem(ret[~red]), 2),
            "length": round(length.mean(), 1), "right_pickups": round(good.sum() / max(good.sum() + bad.sum(), 1), 3),
            "colour_dependent_steps": round(colour.sum() / length.sum(), 3),
            "steps_per_s_per_process": round(length.sum() / secs.sum(), 1)}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--episodes", type=int, default=100, help="protocol seeds (colours alternate)")
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="steps per episode")
    p.add_argument("--epsilons", type=unit_floats, default=[0.0, 0.1], help="expert noise levels, e.g. 0,0.1")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "timeout", "workers"))
    if args.timeout > MAX_TIMEOUT:
        raise ConfigError(f"--timeout must be <= {MAX_TIMEOUT} (the engine's own episode limit), got {args.timeout}")
    runs = [("expert", eps) for eps in args.epsilons] + [("random", 0.0)]
    out = []
    for policy, eps in runs:
        out.append(measure(policy, args.episodes, args.timeout, eps, args.workers))
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    run_main(main)
