"""ViZDoom-Two-Colors evaluation protocol (SPEC §3), and ``ENV``, ViZDoom's :class:`RATE_model.envs.Environment`:
fixed seeds with both pillar colours (even seed: red, odd: green), target return 56.5, sampled actions from a
seeded generator, episodes of ``--eval_max_steps`` steps (the env's timeout, 2100 by default); mean return
overall and per pillar colour, the share of picked-up items that had the pillar's colour (a colour-blind
policy picks about half wrong), and every episode's seed, colour, return, length and pickups.

Any checkpoint (mid-training ones included) is evaluated as the run did it, at one or more target returns, by

    python -m RATE_model.tools.evaluate runs/vizdoom/DT/seed_1/checkpoints/last.pt --eval_max_steps 90 \
        --target_return 56.5,5

Episodes run in worker processes, one per episode of a batch, through ``RATE_model.rollout.play_seeds``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from RATE_model.config import (
    ConfigError,
    add_episode_data_flags,
    add_eval_flags,
    add_target_return_flag,
    check_eval_flags,
    check_positive,
)
from RATE_model.data import episode_files, file_fields, folder_store
from RATE_model.diagnose import store_windows
from RATE_model.envs import Environment
from RATE_model.model import RATE
from RATE_model.pretrain import Frames
from RATE_model.rollout import Episode, play_seeds, sem
from RATE_model.store import EpisodeStore
from RATE_model.vector import GymVectorEnv
from VizDoom.VizDoom_src.expert import DEFAULT_TARGET_HOLD, EXPERTS, Expert
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_data import HOW, follows_pickup, load_episode, vizdoom_dataset
from VizDoom.VizDoom_src.vizdoom_env import (
    BIN_NAMES,
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    N_ACTIONS,
    PICKUP_KEYS,
    TwoColorsEnv,
    is_red,
)

TARGET_RETURN = 56.5
DEFAULT_BATCH = 50  # episodes stepped together (worker processes) when --eval_batch_size is not given
HELD_OUT = Path(__file__).resolve().parents[1] / "VizDoom_data" / "heldout"  # tools.step_loss's default --data_dir
PILLAR_STEPS = 23  # the pillar stands 45 tics: on screen in steps 0..22
SIDE_FIELDS = ("colour_dependent", "action_other_colour")  # per-step fields of the generator's files, for step_loss
PREFERENCE_GROUPS = ("colour_dependent", "colour_dependent_after_pillar", "colour_dependent_action_changed",
                     "colour_dependent_action_repeated", "colour_dependent_after_pickup")


def scenario_of(pillar_tics: int | None) -> ScenarioConfig:
    """The evaluation scenario of ``--eval_pillar_tics`` (None: the reference's 45 tics)."""
    return ScenarioConfig() if pillar_tics is None else ScenarioConfig(pillar_tics=pillar_tics)


class VizDoom(Environment):
    """ViZDoom-Two-Colors: the pillar's colour (seen in the first 23 steps) says which items heal; mean return."""

    name, title, train_script = "vizdoom", "ViZDoom-Two-Colors", "VizDoom/VizDoom_src/train_vizdoom.py"
    package, extra = "vizdoom", "vizdoom"
    test_seed_offset, validation_seed_offset = 1_000_000, 2_000_000  # even: red pillar, odd: green
    validation_episodes, target_return = 10, TARGET_RETURN
    frame_groups = ("colour_dependent", "after_pickup", "red", "green")  # tools.pretrain_encoder --frames

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
                        args.eval_batch_size or DEFAULT_BATCH, self.target(args),
                        scenario=scenario_of(getattr(args, "eval_pillar_tics", None)), split=split,
                        mark_colour=bool(getattr(args, "mark_colour", False)),
                        sample=not getattr(args, "eval_greedy", None), memory_noise=self.memory_noise(args, split))

    def attention_episode(self, seed, length, args):
        """``length`` steps (default: the run's ``--eval_max_steps``), sampled actions; the pillar (the cue) is in
        view from the first step."""
        steps = length or int(args.get("eval_max_steps") or DEFAULT_TIMEOUT)
        env = GymVectorEnv(partial(TwoColorsEnv, timeout=steps, scenario=scenario_of(args.get("eval_pillar_tics")),
                                   mark_colour=bool(args.get("mark_colour"))), [seed], info_keys=PICKUP_KEYS)
        return Episode(env, self.target(args), steps, sample=True, cue_steps=(0,),
                       close=env.close)

    def add_measure_flags(self, parser):
        parser.add_argument("--epsilon", type=float, default=0.0,
                            help="the privileged expert's share of uniformly random actions")
        parser.add_argument("--target_noise", type=float, default=0.0,
                            help="the visible expert's target noise (map units; generate_iter_data.py --target_noise)")
        parser.add_argument("--target_hold", type=int, default=DEFAULT_TARGET_HOLD,
                            help="steps between the visible expert's draws of its target noise")

    def policies(self, args):
        """``visible``: the expert that acts on what the frames show (``--target_noise``, ``--target_hold``: its
        noise in which right-colour item it heads for, as in the generator); ``privileged``: the expert that
        reads the game state (``--epsilon``: its share of random actions); ``random``: uniformly random actions.
        Episodes of the protocol (``--eval_max_steps`` steps, ``--eval_pillar_tics``), draws seeded by the env
        seed. Extras: ``red`` (the pillar's colour), ``colour_dependent`` (steps whose noise-free expert action
        would differ with the other colour) and the pickup counts of ``PICKUP_KEYS``."""
        if not 0.0 <= args.epsilon <= 1.0:
            raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
        if args.target_noise < 0:
            raise ConfigError(f"--target_noise must be >= 0, got {args.target_noise}")
        if args.target_hold < 1:
            raise ConfigError(f"--target_hold must be >= 1, got {args.target_hold}")
        timeout = int(getattr(args, "eval_max_steps", None) or DEFAULT_TIMEOUT)
        scenario = scenario_of(getattr(args, "eval_pillar_tics", None))

        def play(seed, policy):
            env = TwoColorsEnv(timeout=timeout, scenario=scenario, privileged=policy == "privileged",
                               visible=policy == "visible")
            rng = np.random.default_rng(seed)
            expert = None
            if policy in EXPERTS:
                noise = args.target_noise if policy == "visible" else 0.0  # the privileged expert has none
                expert = Expert(policy, args.epsilon, rng, noise, args.target_hold)
            _, info = env.reset(seed=seed)
            total, steps, dependent, done = 0.0, 0, 0, False
            while not done:
                if expert is not None:
                    a, _, differs = expert.act(info)
                    dependent += differs
                else:
                    a = int(rng.integers(N_ACTIONS))
                _, r, terminated, truncated, info = env.step(a)
                total, steps, done = total + r, steps + 1, terminated or truncated
            env.close()
            return {"return": float(total), "length": steps, "red": bool(info["is_red"]),
                    "colour_dependent": int(dependent), **{k: int(info[k]) for k in PICKUP_KEYS}}

        return {name: partial(play, policy=name) for name in (*EXPERTS, "random")}

    def measure_stats(self, policy, rows, args):
        """The return per pillar colour (± standard error), the share of picked-up items that had the pillar's
        colour (``right_share``; per colour and time bin: ``right_share_<colour>[_<bin>]``, null where nothing
        was picked up) and the share of steps whose expert action depends on the colour."""
        red = np.array([r["red"] for r in rows], bool)
        ret = np.array([r["return"] for r in rows], float)
        pickups = {k: np.array([r[k] for r in rows]) for k in PICKUP_KEYS}
        out: dict[str, Any] = {}
        for name, m in (("_red", red), ("_green", ~red)):
            out[f"return{name}"] = float(ret[m].mean()) if m.any() else None
            out[f"return{name}_sem"] = sem(ret[m])
        good, bad = pickups["good"].sum(), pickups["bad"].sum()
        out["right_share"] = float(good / max(good + bad, 1))
        out.update({k.replace("right_pickups", "right_share"): None if np.isnan(v) else v
                    for k, v in right_shares(pickups, red).items()})
        out["colour_dependent_steps"] = float(sum(r["colour_dependent"] for r in rows) / sum(r["length"] for r in rows))
        return out

    def heldout(self, args, window, episodes, data_dir=None):
        """The first ``episodes`` episode files of ``data_dir`` (default VizDoom/VizDoom_data/heldout: the generator
        run with another --seed than the training data's) in the run's consecutive windows, their per-step
        ``colour_dependent`` (and, where recorded, ``action_other_colour``) beside the store's fields."""
        data_dir = Path(data_dir or HELD_OUT)
        files = episode_files(data_dir)[:episodes]
        if not files:
            raise ConfigError(f"no episodes in {data_dir}: run python3 VizDoom/get_data/generate_iter_data.py "
                              f"--seed 1 --n_episodes {episodes} --out_dir {data_dir}")
        side = [file_fields(f, SIDE_FIELDS) for f in files]
        if not all("colour_dependent" in s for s in side):
            raise ConfigError(f"episodes of {data_dir} have no colour_dependent field: regenerate the folder with "
                              "the current generate_iter_data.py")
        data = vizdoom_dataset(data_dir, window, len(files), progress=False)
        store = data.store
        extra = {k: np.concatenate([s[k] for s in side]) for k in SIDE_FIELDS if all(k in s for s in side)}
        if any(len(v) != store.n_steps for v in extra.values()):
            raise ConfigError(f"the colour fields of the episodes of {data_dir} do not match their steps: "
                              "regenerate the folder with the current generate_iter_data.py")
        return data.with_store(EpisodeStore({**store.fields, **extra}, store.offsets, store.path), data.obs_transform)

    def step_groups(self, data, table, actions):
        """:func:`colour_groups` of the held-out windows (their ``colour_dependent`` steps and rewards)."""
        return colour_groups(store_windows(data, table, "colour_dependent"), table[:, 1], actions,
                             store_windows(data, table, "reward"))

    def counterfactual(self, data, table):
        """The expert's action had the pillar the other colour, where the files record it."""
        if "action_other_colour" not in data.store.fields:
            return None
        return store_windows(data, table, "action_other_colour"), PREFERENCE_GROUPS

    def step_summary(self, groups):
        """``gap_colour_dependent_minus_other``: about ln 2 for a model that ignores the colour, about 0 for one
        that uses it."""
        dep, other = groups["colour_dependent"]["loss"], groups["other"]["loss"]
        return {"gap_colour_dependent_minus_other": None if dep is None or other is None else dep - other}

    def add_data_flags(self, parser):
        from VizDoom.get_data.generate_iter_data import DATA_DIR

        add_episode_data_flags(parser, "ViZDoom-Two-Colors", DATA_DIR, "generate_iter_data.py")

    def frames(self, args, data_dir=None, episodes=None):
        """The episode store of ``--data_dir`` (its first ``--max_episodes`` episodes, as training reads them), or of
        the first ``episodes`` of ``data_dir`` (e.g. VizDoom/VizDoom_data/heldout): single frames, each with the
        pillar's colour beside it (condition 1: red), which a sequence model has from memory. Groups, from the
        files' ``colour_dependent`` field and the rewards: ``colour_dependent`` (the noise-free expert would act
        differently had the pillar the other colour), ``after_pickup`` (those of them right after a right item was
        picked up: where the expert chooses its next item), ``red`` and ``green`` (the pillar); counterfactual
        actions: the files' ``action_other_colour`` (a file without it: its own actions, never compared)."""
        check_positive(args, ("max_episodes",))
        folder = Path(data_dir or args.data_dir)
        store = folder_store(folder, load_episode, HOW.format(folder), episodes if data_dir else args.max_episodes,
                             desc="ViZDoom episode store")
        files = episode_files(folder)[:store.n_episodes]
        side = [file_fields(f, (*SIDE_FIELDS, "is_red")) for f in files]  # the store keeps obs, action, reward
        missing = next((f for f, fields in zip(files, side, strict=True) if "colour_dependent" not in fields), None)
        if missing is not None:
            raise ConfigError(f"{missing} has no colour_dependent field: regenerate it with generate_iter_data.py")
        every = np.arange(store.n_steps)[None]
        action, reward = store.take("action", every)[0], store.take("reward", every)[0]
        red = np.concatenate([s["is_red"] for s in side]).astype(bool)
        dependent = np.concatenate([s["colour_dependent"] for s in side]).astype(bool)
        other = None
        if any("action_other_colour" in s for s in side):
            other = np.concatenate([s.get("action_other_colour", action[a:b])
                                    for s, a, b in zip(side, store.offsets[:-1], store.offsets[1:], strict=True)])
        if any(len(x) != store.n_steps for x in (red, dependent, action if other is None else other)):
            raise ConfigError(f"the colour fields of the episodes of {folder} do not match their steps: regenerate "
                              "them with the current generate_iter_data.py")
        after = follows_pickup(reward)
        after[store.offsets[:-1]] = False  # an episode's first step follows nothing
        return Frames(store, N_ACTIONS, condition=red.astype(np.int64), n_conditions=2, other_action=other,
                      groups={"colour_dependent": dependent, "after_pickup": dependent & after, "red": red,
                              "green": ~red})


ENV = VizDoom()


def evaluate(model: RATE, n_episodes: int = 100, max_steps: int = DEFAULT_TIMEOUT, batch_size: int = DEFAULT_BATCH,
             target_return: float = TARGET_RETURN, sample_seed: int = 0, progress: bool = True,
             scenario: ScenarioConfig | None = None, split: str = "test", mark_colour: bool = False,
             sample: bool = True, memory_noise: str = "none") -> dict[str, Any]:
    """{"return", "return_sem", "return_red", "return_green", "length", "right_pickups_red",
    "right_pickups_green" (share of the items picked up that were of the pillar's colour), the same per time
    bin ("right_pickups_red_0_90", "..._90_500", "..._500_"), "episodes": [...]}
    over ``n_episodes`` fixed seeds of the ``split`` (``ENV.seeds``), episodes of ``max_steps`` steps (the env's
    timeout), at most ``batch_size`` worker processes at a time.
    ``scenario`` changes the rules (the benchmarks use a floor that does not hurt, so every episode runs to
    the timeout). ``mark_colour``: frames show the pillar's colour in a corner (for data made that way).
    ``sample`` False: the most likely action at every step (a diagnosis; the protocol samples)."""
    def make(seeds):
        return GymVectorEnv(partial(TwoColorsEnv, timeout=max_steps, scenario=scenario, mark_colour=mark_colour),
                            seeds, info_keys=PICKUP_KEYS)

    res = play_seeds(model, make, ENV.seeds(n_episodes, split), target_return, max_steps, batch_size, sample=sample,
                     sample_seed=sample_seed, memory_noise=memory_noise, info_keys=PICKUP_KEYS,
                     desc="ViZDoom" if progress else None)
    seed_all, ret, length = res["seed"], res["return"], res["length"]
    pickups = {k: res[k] for k in PICKUP_KEYS}
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


def colour_groups(colour_dependent: np.ndarray, starts: np.ndarray, actions: np.ndarray,
                  rewards: np.ndarray) -> dict[str, np.ndarray]:
    """The named step masks [n, T] of windows starting at episode steps ``starts`` [n] with the steps where the
    noise-free expert would act differently had the pillar the other colour (``colour_dependent``), ``actions``
    and ``rewards`` [n, T]: colour-dependent or not, overall, while the pillar is on screen and after it is
    gone, at the steps where the expert's action changes (a new turn: where repeating the last action
    fails), and at the step right after a right item was picked up, where the expert chooses its next item
    and the turn it was making tells nothing about which."""
    T = colour_dependent.shape[1]
    late = (starts[:, None] + np.arange(T)[None]) >= PILLAR_STEPS
    dep = colour_dependent.astype(bool)
    changed = np.zeros_like(dep)
    changed[:, 1:] = actions[:, 1:] != actions[:, :-1]
    after = follows_pickup(rewards)
    return {"colour_dependent": dep, "other": ~dep,
            "colour_dependent_pillar_in_view": dep & ~late, "colour_dependent_after_pillar": dep & late,
            "other_after_pillar": ~dep & late, "colour_dependent_action_changed": dep & changed,
            "colour_dependent_action_repeated": dep & ~changed & (np.arange(T) > 0)[None],
            "other_action_changed": ~dep & changed, "colour_dependent_after_pickup": dep & after}
