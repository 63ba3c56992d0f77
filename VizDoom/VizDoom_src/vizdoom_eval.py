"""ViZDoom-Two-Colors evaluation protocol (SPEC §3): fixed seeds with both pillar colours, target return
56.5, sampled actions from a seeded generator, episode timeout 2100 steps by default; mean return
overall and per pillar colour, the share of picked-up items that had the pillar's colour (a colour-blind
policy picks about half wrong), and every episode's seed, colour, return, length and pickups.

Also a command: evaluate a checkpoint as it is (mid-training ones included), at one or more target returns:

    python3 VizDoom/VizDoom_src/vizdoom_eval.py runs/vizdoom/DT/seed_1/checkpoints/last.pt --timeout 90 \
        --target_return 56.5,5

Episodes run in worker processes (``gymnasium.vector.AsyncVectorEnv``, one per episode of a batch) and
step together through the shared rollout engine, which encodes every frame once. Under torchrun each
rank plays a contiguous slice of the seeds and the results are gathered.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.attention import load_model
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, float_list
from RATE_model.experiment import run_main
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem, split_seeds
from RATE_model.vector import GymVectorEnv
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_env import BIN_NAMES, DEFAULT_TIMEOUT, MAX_TIMEOUT, PICKUP_KEYS, TwoColorsEnv, is_red

TARGET_RETURN = 56.5
EVAL_SEED_OFFSET = 1_000_000  # even: red pillar, odd: green; never a training seed index
VALIDATION_SEED_OFFSET = 2_000_000  # validation episodes (evaluation during training); never test ones
VALIDATION_EPISODES = 10


def eval_seeds(n: int, split: str = "test") -> list[int]:
    """The fixed seeds of the split (``test`` or ``validation``): consecutive, so the two colours alternate."""
    return split_seeds(n, split, EVAL_SEED_OFFSET, VALIDATION_SEED_OFFSET)


def attention_episode(seed: int, length: int | None, args: dict[str, Any]) -> Episode:
    """One episode for the attention tool: ``length`` steps (default: the run's evaluation timeout),
    sampled actions; the pillar (the cue) is in view from the first step."""
    timeout = length or int(args.get("eval_timeout") or DEFAULT_TIMEOUT)
    scenario = ScenarioConfig(pillar_tics=args["eval_pillar_tics"]) if args.get("eval_pillar_tics") else None
    env = GymVectorEnv(partial(TwoColorsEnv, timeout=timeout, scenario=scenario), [seed], info_keys=PICKUP_KEYS)
    return Episode(env, float(args.get("target_return") or TARGET_RETURN), timeout, sample=True, cue_steps=(0,),
                   close=env.close)


def evaluate(model: RATE, n_episodes: int = 100, timeout: int = DEFAULT_TIMEOUT, batch_size: int = 50,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             scenario: ScenarioConfig | None = None, split: str = "test", mark_colour: bool = False,
             sample: bool = True) -> dict[str, Any]:
    """{"return", "return_sem", "return_red", "return_green", "length", "right_pickups_red",
    "right_pickups_green" (share of the items picked up that were of the pillar's colour), the same per time
    bin ("right_pickups_red_0_90", "..._90_500", "..._500_"), "episodes": [...]}
    over ``n_episodes`` fixed seeds of the ``split``, at most ``batch_size`` worker processes at a time.
    ``scenario`` changes the rules (the benchmarks use a floor that does not hurt, so every episode runs to
    the timeout). ``mark_colour``: frames show the pillar's colour in a corner (for data made that way).
    ``sample`` False: the most likely action at every step (a diagnosis; the protocol samples)."""
    seeds = distributed.shard(eval_seeds(n_episodes, split))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, lengths = [np.zeros(0)], [np.zeros(0)]
    counts: dict[str, list[np.ndarray]] = {k: [np.zeros(0)] for k in PICKUP_KEYS}
    show = progress and distributed.is_main()
    for i in tqdm(range(0, len(seeds), batch_size), desc="ViZDoom eval batches", disable=not show, leave=False):
        with GymVectorEnv(partial(TwoColorsEnv, timeout=timeout, scenario=scenario, mark_colour=mark_colour),
                          seeds[i:i + batch_size], info_keys=PICKUP_KEYS) as env:
            res = rollout(model, env, target_return, max_steps=timeout, sample=sample, generator=gen,
                          progress="ViZDoom eval steps" if show else False)
        returns.append(res.returns)
        lengths.append(res.lengths)
        for k in PICKUP_KEYS:
            counts[k].append(res.infos[k])
    parts = distributed.gather((np.asarray(seeds), *(np.concatenate(x) for x in (returns, lengths)),
                                *(np.concatenate(counts[k]) for k in PICKUP_KEYS)))
    seed_all, ret, length, *picked = (np.concatenate([p[j] for p in parts]) for j in range(3 + len(PICKUP_KEYS)))
    pickups = dict(zip(PICKUP_KEYS, picked, strict=True))
    red = np.array([is_red(s) for s in seed_all], bool)
    out: dict[str, Any] = {"return": float(ret.mean()), "return_sem": sem(ret),
                           "return_red": float(ret[red].mean()) if red.any() else float("nan"),
                           "return_green": float(ret[~red].mean()) if (~red).any() else float("nan"),
                           "return_red_sem": sem(ret[red]), "return_green_sem": sem(ret[~red]),
                           "length": float(length.mean()), "episodes_n": len(ret)}
    out.update(right_shares(pickups, red))
    out["episodes"] = [{"seed": int(s), "is_red": bool(r), "return": round(float(x), 3), "length": int(n),
                        **{k: int(pickups[k][j]) for k in PICKUP_KEYS}}
                       for j, (s, r, x, n) in enumerate(zip(seed_all, red, ret, length, strict=True))]
    return out


def right_shares(pickups: dict[str, np.ndarray], red: np.ndarray) -> dict[str, float]:
    """Does the policy know which colour heals? The share of picked-up items that had the pillar's colour,
    pooled over the episodes of each colour: ``right_pickups_<colour>`` over whole episodes and
    ``right_pickups_<colour>_<bin>`` per time bin (NaN where nothing was picked up). ``pickups``: per-episode
    counts under the env's keys (``good``, ``bad``, ``good_0_90``, ...); ``red``: each episode's colour."""
    out: dict[str, float] = {}
    for name, m in (("red", red), ("green", ~red)):
        for suffix in ("", *(f"_{b}" for b in BIN_NAMES)):
            good, bad = pickups[f"good{suffix}"][m].sum(), pickups[f"bad{suffix}"][m].sum()
            out[f"right_pickups_{name}{suffix}"] = float(good / (good + bad)) if good + bad else float("nan")
    return out


def selection_score(metrics: dict[str, Any]) -> float:
    """What best-on-validation maximises: the mean return."""
    return float(metrics["return"])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """One JSON line per target return: the metrics of ``evaluate`` without the episode list."""
    p = OneLineErrorParser(description="Evaluate a ViZDoom checkpoint on the protocol seeds", allow_abbrev=False)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="steps per episode")
    p.add_argument("--target_return", type=float_list, default=(TARGET_RETURN,), help="e.g. 56.5,5")
    p.add_argument("--batch_size", type=int, default=50, help="episodes stepped together")
    p.add_argument("--mark_colour", action="store_true", help="for a model trained on --mark_colour data")
    p.add_argument("--greedy", action="store_true",
                   help="diagnosis: the most likely action at every step instead of sampled ones (the protocol's)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "timeout", "batch_size"))
    if args.timeout > MAX_TIMEOUT:
        raise ConfigError(f"--timeout must be <= {MAX_TIMEOUT} (the engine's own episode limit), got {args.timeout}")
    model, _ = load_model(args.checkpoint)
    out = []
    for target in args.target_return:
        m = evaluate(model, args.episodes, args.timeout, args.batch_size, target, progress=False,
                     mark_colour=args.mark_colour, sample=not args.greedy)
        m.pop("episodes")
        out.append({"checkpoint": str(args.checkpoint), "timeout": args.timeout, "target_return": target,
                    "actions": "greedy" if args.greedy else "sampled", **m})
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    run_main(main)
