"""Measure the scripted experts and a uniformly random policy on the evaluation protocol's seeds: mean return
overall and per pillar colour (± standard error), episode length, the share of picked-up items that had the
pillar's colour, the share of steps whose expert action depends on the colour, and env steps per second.

    python3 VizDoom/diagnostics/measure_expert.py --episodes 100 --timeout 2100
    python3 VizDoom/diagnostics/measure_expert.py --expert visible --json     # one JSON line
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from functools import partial
from typing import Any

import numpy as np

from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, choices, unit_floats
from RATE_model.rollout import sem
from VizDoom.VizDoom_src.expert import DEFAULT_TARGET_HOLD, EXPERTS, Expert
from VizDoom.VizDoom_src.vizdoom_env import DEFAULT_TIMEOUT, MAX_TIMEOUT, N_ACTIONS, PICKUP_KEYS, TwoColorsEnv
from VizDoom.VizDoom_src.vizdoom_eval import ENV, right_shares

POLICIES = (*EXPERTS, "random")


def play(seed: int, policy: str, epsilon: float, timeout: int, target_noise: float = 0.0,
         target_hold: int = DEFAULT_TARGET_HOLD) -> tuple[bool, float, int, float, int, dict]:
    """One episode: (is_red, return, length, seconds, steps in which the expert's noise-free action would
    differ with the other pillar colour, pickup counts of the env's ``PICKUP_KEYS``)."""
    env = TwoColorsEnv(timeout=timeout, privileged=policy == "privileged", visible=policy == "visible")
    rng = np.random.default_rng(seed)
    noise = target_noise if policy == "visible" else 0.0  # the privileged expert has none
    expert = Expert(policy, epsilon, rng, noise, target_hold) if policy in EXPERTS else None
    t0 = time.time()
    _, info = env.reset(seed=seed)
    total, steps, colour_steps, done = 0.0, 0, 0, False
    while not done:
        if expert is not None:
            a, _, dependent = expert.act(info)
            colour_steps += dependent
        else:
            a = int(rng.integers(N_ACTIONS))
        _, r, terminated, truncated, info = env.step(a)
        total, steps, done = total + r, steps + 1, terminated or truncated
    env.close()
    return bool(info["is_red"]), total, steps, time.time() - t0, colour_steps, {k: info[k] for k in PICKUP_KEYS}


def measure(policy: str, episodes: int, timeout: int, epsilon: float = 0.0, workers: int = 2,
            target_noise: float = 0.0, target_hold: int = DEFAULT_TARGET_HOLD) -> dict[str, Any]:
    """Mean return (overall, red, green; ± SEM), length and shares over ``episodes`` protocol seeds
    (``target_noise``, ``target_hold``: the visible expert's, as in the generator)."""
    with mp.get_context("fork").Pool(workers) as pool:
        out = pool.map(partial(play, policy=policy, epsilon=epsilon, timeout=timeout, target_noise=target_noise,
                               target_hold=target_hold), ENV.seeds(episodes))
    red = np.array([o[0] for o in out])
    ret, length, secs, colour = (np.array([o[i] for o in out], float) for i in (1, 2, 3, 4))
    pickups = {k: np.array([o[5][k] for o in out]) for k in PICKUP_KEYS}
    res: dict[str, Any] = {"policy": policy, "epsilon": epsilon, "episodes": episodes, "timeout": timeout}
    if policy == "visible" and target_noise:
        res.update(target_noise=target_noise, target_hold=target_hold)
    for name, m in (("", np.ones_like(red)), ("_red", red), ("_green", ~red)):
        res[f"return{name}"] = round(float(ret[m].mean()), 2) if m.any() else float("nan")
        res[f"return{name}_sem"] = round(sem(ret[m]), 2)
    good, bad = pickups["good"].sum(), pickups["bad"].sum()
    res["right_share"] = round(float(good / max(good + bad, 1)), 3)
    res.update({k.replace("right_pickups", "right_share"): None if np.isnan(v) else round(v, 3)  # JSON null
                for k, v in right_shares(pickups, red).items()})
    res.update({"length": round(float(length.mean()), 1),
                "colour_dependent_steps": round(float(colour.sum() / length.sum()), 3),
                "steps_per_s_per_process": round(float(length.sum() / secs.sum()), 1)})
    return res


def row(m: dict[str, Any]) -> str:
    """One readable line of a measurement."""
    name = m["policy"] + (f" ε={m['epsilon']:g}" if m["policy"] == "privileged" else "") \
        + (f" J={m['target_noise']:g}/{m['target_hold']}" if m.get("target_noise") else "")
    return (f"{name:<18} return {m['return']:6.2f} ± {m['return_sem']:.2f}  red {m['return_red']:6.2f}  "
            f"green {m['return_green']:6.2f}  right share {m['right_share']:.3f}  length {m['length']:7.1f}  "
            f"colour-dependent steps {m['colour_dependent_steps']:.3f}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--expert", type=choices(POLICIES), default=list(POLICIES),
                   help=f"comma-separated policies among {','.join(POLICIES)} (default: all)")
    p.add_argument("--episodes", type=int, default=100, help="protocol seeds (colours alternate)")
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="steps per episode")
    p.add_argument("--epsilons", type=unit_floats, default=[0.0, 0.1],
                   help="the privileged expert's random-action shares, e.g. 0,0.1 (the data of the first results)")
    p.add_argument("--target_noise", type=float, default=0.0,
                   help="the visible expert's target noise (map units; generate_iter_data.py --target_noise)")
    p.add_argument("--target_hold", type=int, default=DEFAULT_TARGET_HOLD, help="steps between its draws")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--json", action="store_true", help="print one JSON line per policy instead of a table")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "timeout", "workers", "target_hold"))
    if args.target_noise < 0:
        raise ConfigError(f"--target_noise must be >= 0, got {args.target_noise}")
    if args.timeout > MAX_TIMEOUT:
        raise ConfigError(f"--timeout must be <= {MAX_TIMEOUT} (the engine's own episode limit), got {args.timeout}")
    runs = [(pol, eps) for pol in args.expert for eps in (args.epsilons if pol == "privileged" else [0.0])]
    out = []
    for policy, eps in runs:
        out.append(measure(policy, args.episodes, args.timeout, eps, args.workers, args.target_noise, args.target_hold))
        print(json.dumps(out[-1]) if args.json else row(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    run_main(main)
