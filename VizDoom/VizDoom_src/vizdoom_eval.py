"""ViZDoom-Two-Colors evaluation protocol (SPEC §3), and ``ENV``, ViZDoom's :class:`RATE_model.envs.Environment`:
fixed seeds with both pillar colours (even seed: red, odd: green), target return 56.5, sampled actions from a
seeded generator, episodes of ``--eval_max_steps`` steps (the env's timeout, 2100 by default); mean return
overall and per pillar colour, the share of picked-up items that had the pillar's colour (a colour-blind
policy picks about half wrong), and every episode's seed, colour, return, length and pickups.

Any checkpoint (mid-training ones included) is evaluated as the run did it, at one or more target returns, by

    python -m RATE_model.tools.evaluate runs/vizdoom/DT/seed_1/checkpoints/last.pt --eval_max_steps 90 \
        --target_return 56.5,5

Episodes run in worker processes (``gymnasium.vector.AsyncVectorEnv``, one per episode of a batch) and
step together through the shared rollout engine, which encodes every frame once. Under torchrun each
rank plays a contiguous slice of the seeds and the results are gathered.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.config import ConfigError, add_eval_flags, add_target_return_flag, check_eval_flags
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.rollout import Episode, rollout, sem
from RATE_model.vector import GymVectorEnv
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_env import BIN_NAMES, DEFAULT_TIMEOUT, MAX_TIMEOUT, PICKUP_KEYS, TwoColorsEnv, is_red

TARGET_RETURN = 56.5
DEFAULT_BATCH = 50  # episodes stepped together (worker processes) when --eval_batch_size is not given


def one_target(value: float | Sequence[float] | None) -> float:
    """The target return of a run's ``--target_return`` (a one-value list; None: the protocol's 56.5)."""
    if value is None:
        return TARGET_RETURN
    return float(value[0]) if isinstance(value, (list, tuple)) else float(value)


def check_one_target(args: Any) -> None:
    """ConfigError unless the run has at most one ``--target_return``: training evaluates one target
    (``tools.evaluate``, which plays several in turn, checks with :meth:`VizDoom.check_eval_flags` alone)."""
    targets = getattr(args, "target_return", None)
    if isinstance(targets, (list, tuple)) and len(targets) > 1:
        raise ConfigError(f"--target_return takes one value in training, got {','.join(map(str, targets))} "
                          "(python -m RATE_model.tools.evaluate CKPT --target_return A,B plays several)")


def scenario_of(pillar_tics: int | None) -> ScenarioConfig:
    """The evaluation scenario of ``--eval_pillar_tics`` (None: the reference's 45 tics)."""
    return ScenarioConfig() if pillar_tics is None else ScenarioConfig(pillar_tics=pillar_tics)


class VizDoom(Environment):
    """ViZDoom-Two-Colors: the pillar's colour (seen in the first 23 steps) says which items heal; mean return."""

    name, title, train_script = "vizdoom", "ViZDoom-Two-Colors", "VizDoom/VizDoom_src/train_vizdoom.py"
    package, extra = "vizdoom", "vizdoom"
    test_seed_offset, validation_seed_offset = 1_000_000, 2_000_000  # even: red pillar, odd: green
    validation_episodes = 10

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("ViZDoom-Two-Colors evaluation")
        add_eval_flags(g, max_steps=MAX_TIMEOUT, episodes="fixed evaluation episodes (colours alternate)",
                       batch="episodes stepped together (one worker process each)")
        add_target_return_flag(g, str(TARGET_RETURN), several=False)
        g.add_argument("--eval_pillar_tics", type=int, help="tics the pillar stands at evaluation (reference: 45)")
        g.add_argument("--eval_greedy", action="store_true", default=None,
                       help="diagnosis: the most likely action at every step instead of sampled ones (the protocol's)")

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        check_eval_flags(args, MAX_TIMEOUT, "the engine's own episode limit")
        try:
            scenario_of(getattr(args, "eval_pillar_tics", None))
        except ValueError as e:
            raise ConfigError(f"--eval_pillar_tics: {e}") from None

    def evaluate(self, model, args, split="test"):
        """The protocol on the split's seeds with the run's flags; ``args.mark_colour`` (recorded by the train
        script from the data's meta.json): the frames show the pillar's colour in a corner."""
        return evaluate(model, self.episodes(args, split), args.eval_max_steps or DEFAULT_TIMEOUT,
                        args.eval_batch_size or DEFAULT_BATCH, one_target(args.target_return),
                        scenario=scenario_of(getattr(args, "eval_pillar_tics", None)), split=split,
                        mark_colour=bool(getattr(args, "mark_colour", False)),
                        sample=not getattr(args, "eval_greedy", None))

    def selection_score(self, metrics):
        """The mean return."""
        return float(metrics["return"])

    def attention_episode(self, seed, length, args):
        """``length`` steps (default: the run's ``--eval_max_steps``), sampled actions; the pillar (the cue) is in
        view from the first step."""
        steps = length or int(args.get("eval_max_steps") or DEFAULT_TIMEOUT)
        env = GymVectorEnv(partial(TwoColorsEnv, timeout=steps, scenario=scenario_of(args.get("eval_pillar_tics")),
                                   mark_colour=bool(args.get("mark_colour"))), [seed], info_keys=PICKUP_KEYS)
        return Episode(env, one_target(args.get("target_return")), steps, sample=True, cue_steps=(0,),
                       close=env.close)


ENV = VizDoom()


def evaluate(model: RATE, n_episodes: int = 100, max_steps: int = DEFAULT_TIMEOUT, batch_size: int = DEFAULT_BATCH,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             scenario: ScenarioConfig | None = None, split: str = "test", mark_colour: bool = False,
             sample: bool = True) -> dict[str, Any]:
    """{"return", "return_sem", "return_red", "return_green", "length", "right_pickups_red",
    "right_pickups_green" (share of the items picked up that were of the pillar's colour), the same per time
    bin ("right_pickups_red_0_90", "..._90_500", "..._500_"), "episodes": [...]}
    over ``n_episodes`` fixed seeds of the ``split`` (``ENV.seeds``), episodes of ``max_steps`` steps (the env's
    timeout), at most ``batch_size`` worker processes at a time.
    ``scenario`` changes the rules (the benchmarks use a floor that does not hurt, so every episode runs to
    the timeout). ``mark_colour``: frames show the pillar's colour in a corner (for data made that way).
    ``sample`` False: the most likely action at every step (a diagnosis; the protocol samples)."""
    seeds = distributed.shard(ENV.seeds(n_episodes, split))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    returns, lengths = [np.zeros(0)], [np.zeros(0)]
    counts: dict[str, list[np.ndarray]] = {k: [np.zeros(0)] for k in PICKUP_KEYS}
    show = progress and distributed.is_main()
    for i in tqdm(range(0, len(seeds), batch_size), desc="ViZDoom eval batches", disable=not show, leave=False):
        with GymVectorEnv(partial(TwoColorsEnv, timeout=max_steps, scenario=scenario, mark_colour=mark_colour),
                          seeds[i:i + batch_size], info_keys=PICKUP_KEYS) as env:
            res = rollout(model, env, target_return, max_steps=max_steps, sample=sample, generator=gen,
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
