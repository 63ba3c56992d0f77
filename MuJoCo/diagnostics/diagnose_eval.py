"""Does evaluation feed a MuJoCo policy what training fed it, and what does a failing policy do?

    python3 MuJoCo/diagnostics/diagnose_eval.py runs/mujoco/<run>/seed_<s>/checkpoints/last.pt \\
        [--data_dir D] [--episodes 10] [--targets 1500,3600] [--behaviour D/sac/hopper_seed0/medium.zip] [--out f.json]

Three measurements, printed as one JSON object (``--out``: also written to a file):

* ``replay`` — the evaluation path on the data: dataset episodes played back through the rollout engine by
  an env that replays their observations and rewards, the target being each episode's return. The
  return-to-go and observations the engine feeds must equal the training windows' step by step, and the
  model run as in training (segment by segment, :func:`RATE_model.diagnose.head_outputs`) over the actions
  the engine executed must give those actions: the largest difference of each.
* ``teacher_forced`` — the squared error of the model's action against the data's, the data's actions fed
  back, by step of the episode (first step, 1–19, 20–59, 60 on): where along an episode imitation is worst.
* ``closed_loop`` — the test episodes at each target return (decreasing return-to-go): return, length, the
  share of action components at the tanh head's bounds (|a| > 0.99) against the data's share, the share of
  steps whose state leaves the data's range (a coordinate beyond the data's 0.1–99.9 percentiles), and with
  ``--behaviour`` (the SAC policy that wrote the data) the squared error between the model's action and the
  behaviour policy's deterministic action at the same states, by step.
* ``handover`` (``--handover N,...`` with ``--behaviour``) — the test episodes again with the behaviour
  policy acting for the first N steps and the model after: whether a failing policy fails at the start.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from MuJoCo.MuJoCo_src.mujoco_data import data_folder, find_dataset, mujoco_store
from MuJoCo.MuJoCo_src.mujoco_env import (
    MAX_STEPS,
    RTG_SCALE,
    TARGET_RETURNS,
    dataset_of,
    make_env,
    quiet_old_gym,
    split_name,
)
from MuJoCo.MuJoCo_src.mujoco_eval import ENV
from RATE_model.checkpoint import load_model
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive, float_list, int_list
from RATE_model.data import DataError, WindowDataset
from RATE_model.diagnose import head_outputs
from RATE_model.model import RATE
from RATE_model.precision import autocast
from RATE_model.rollout import rollout
from RATE_model.store import EpisodeStore
from RATE_model.vector import GymVectorEnv

BUCKETS = ((0, 1), (1, 20), (20, 60), (60, MAX_STEPS))  # steps of an episode, [lo, hi)
SATURATED = 0.99  # |action| beyond this is at the tanh head's bound


def bucket_name(lo: int, hi: int) -> str:
    return f"step_{lo}" if hi == lo + 1 else f"steps_{lo}_{hi - 1}"


class ReplayEnv:
    """The rollout engine's ``VectorEnv`` over recorded episodes: env i plays back episode i's observations
    and rewards whatever action it is given, and is done after its last step."""

    def __init__(self, episodes: list[dict[str, np.ndarray]]):
        self.episodes, self.num_envs, self.t = episodes, len(episodes), 0

    def _obs(self) -> np.ndarray:
        return np.stack([ep["obs"][min(self.t, len(ep["obs"]) - 1)] for ep in self.episodes]).astype(np.float32)

    def reset(self) -> np.ndarray:
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        reward = np.array([ep["reward"][min(self.t, len(ep["reward"]) - 1)] for ep in self.episodes], np.float64)
        done = np.array([self.t + 1 >= len(ep["reward"]) for ep in self.episodes])
        self.t += 1
        return self._obs(), reward, done, {}


def whole_episodes(store: EpisodeStore, episodes: np.ndarray, multiple: int) -> dict[str, torch.Tensor]:
    """Episodes as training windows from their first step, padded to a common length that is a multiple of
    ``multiple`` (the model's K): obs, action, rtg (scaled as in training), valid."""
    T = int(store.lengths[episodes].max())
    T = -(-T // multiple) * multiple
    data = WindowDataset(store, T, np.stack([episodes, np.zeros_like(episodes)], 1), rtg_scale=RTG_SCALE)
    return data[data.epoch_windows(0, 0)]


def replay(model: RATE, store: EpisodeStore, episodes: np.ndarray) -> dict[str, float]:
    """The ``replay`` measurement (module docstring): largest |difference| of the return-to-go, observation
    and action between the rollout engine and the training computation, over every valid step."""
    K = model.cfg.context_length
    batch = whole_episodes(store, episodes, K)
    valid = batch["valid"]
    eps = [store.episode(int(i)) for i in episodes]
    target = batch["rtg"][:, 0, 0].numpy()  # each episode's return, scaled
    res = rollout(model, ReplayEnv(eps), target, max_steps=valid.shape[1], reward_scale=RTG_SCALE,
                  keep_trajectory=True)
    T = res.trajectory["action"].shape[0]
    fed = {k: torch.as_tensor(np.swapaxes(v, 0, 1)) for k, v in res.trajectory.items()}  # [E, T, ...]
    v = valid[:, :T]
    executed = {**batch, "action": torch.where(valid[..., None], torch.nn.functional.pad(
        fed["action"], (0, 0, 0, valid.shape[1] - T)), batch["action"])}
    recomputed = head_outputs(model, executed)[:, :T]
    return {"episodes": len(episodes), "steps": int(v.sum()),
            "rtg_max_abs_diff": float((fed["rtg"] - batch["rtg"][:, :T, 0])[v].abs().max()),
            "obs_max_abs_diff": float((fed["obs"] - batch["obs"][:, :T])[v].abs().max()),
            "action_max_abs_diff": float((fed["action"] - recomputed)[v].abs().max())}


def teacher_forced(model: RATE, store: EpisodeStore, episodes: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean squared error (over action components) of the model's action against the data's, the data's
    actions teacher-forced, per bucket of episode steps."""
    batch = whole_episodes(store, episodes, model.cfg.context_length)
    err = ((head_outputs(model, batch) - batch["action"]) ** 2).mean(-1)  # NaN at padding
    step = torch.arange(err.shape[1])[None].expand_as(err)
    out = {}
    for lo, hi in BUCKETS:
        m = batch["valid"] & (step >= lo) & (step < hi)
        if m.any():
            out[bucket_name(lo, hi)] = {"mse": float(err[m].mean()), "steps": int(m.sum())}
    return out


def data_ranges(store: EpisodeStore) -> dict[str, np.ndarray]:
    """The data's 0.1 and 99.9 percentiles per state coordinate and its share of saturated action components."""
    obs = store.take("obs", np.arange(store.n_steps)[None])[0]
    act = store.take("action", np.arange(store.n_steps)[None])[0]
    lo, hi = np.percentile(obs, [0.1, 99.9], axis=0)
    return {"lo": lo, "hi": hi, "saturated": float((np.abs(act) > SATURATED).mean())}


def closed_loop(model: RATE, env: str, seeds: list[int], target: float, ranges: dict[str, np.ndarray],
                behaviour: Any = None) -> dict[str, Any]:
    """The ``closed_loop`` measurement (module docstring) of one target return on the test ``seeds``."""
    with GymVectorEnv(partial(make_env, env), seeds, obs_scale=1.0) as venv:
        res = rollout(model, venv, target * RTG_SCALE, max_steps=MAX_STEPS, reward_scale=RTG_SCALE,
                      keep_trajectory=True)
    T = res.trajectory["action"].shape[0]
    live = np.arange(T)[:, None] < res.lengths[None]  # [T, E]
    obs, act = res.trajectory["obs"], res.trajectory["action"]
    outside = ((obs < ranges["lo"]) | (obs > ranges["hi"])).any(-1)
    first_out = [int(np.argmax(outside[:n, e])) if outside[:n, e].any() else None
                 for e, n in enumerate(res.lengths)]
    out = {"target": target, "return": float(res.returns.mean()), "returns": res.returns.round(1).tolist(),
           "lengths": res.lengths.tolist(),
           "saturated_share": float((np.abs(act[live]) > SATURATED).mean()),
           "data_saturated_share": ranges["saturated"],
           "outside_data_share": float(outside[live].mean()), "first_step_outside_data": first_out,
           "first_action": act[0].round(3).tolist()}
    if behaviour is not None:
        with torch.autocast("cpu", enabled=False):  # SB3 hands its outputs to NumPy, which has no bf16
            ref, _ = behaviour.predict(obs.reshape(-1, obs.shape[-1]), deterministic=True)
        err = ((act - ref.reshape(act.shape)) ** 2).mean(-1)
        step = np.arange(T)[:, None].repeat(len(seeds), 1)
        out["behaviour_mse"] = {bucket_name(lo, hi): float(err[live & (step >= lo) & (step < hi)].mean())
                                for lo, hi in BUCKETS if (live & (step >= lo) & (step < hi)).any()}
    return out


def handover(model: RATE, env: str, seeds: list[int], target: float, behaviour: Any, steps: int,
             max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """The test episodes with the behaviour policy acting for their first ``steps`` steps and the model after
    (the model sees the executed actions, as in its data): if a policy that fails every episode succeeds
    once its start is handed over, the start is where it fails."""
    def behaviour_first(t: int, obs: np.ndarray) -> torch.Tensor | None:
        if t >= steps:
            return None
        with torch.autocast("cpu", enabled=False):  # SB3 hands its outputs to NumPy, which has no bf16
            return torch.as_tensor(behaviour.predict(obs, deterministic=True)[0])

    with GymVectorEnv(partial(make_env, env), seeds, obs_scale=1.0) as venv:
        res = rollout(model, venv, target * RTG_SCALE, max_steps=max_steps, reward_scale=RTG_SCALE,
                      override=behaviour_first)
    return {"behaviour_steps": steps, "return": float(res.returns.mean()), "returns": res.returns.round(1).tolist(),
            "lengths": res.lengths.tolist()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data_dir", type=Path, help="the folder holding the run's dataset (default: as training)")
    p.add_argument("--store_dir", type=Path, help="its episode store (default: <data folder>/stores/<dataset>)")
    p.add_argument("--data_episodes", type=int, default=20, help="dataset episodes replayed and teacher-forced")
    p.add_argument("--episodes", type=int, default=10, help="closed-loop test episodes per target")
    p.add_argument("--targets", type=float_list, help="target returns (default: the protocol's)")
    p.add_argument("--behaviour", type=Path, help="the SAC policy that wrote the data (generator's medium.zip)")
    p.add_argument("--handover", type=int_list, default=[],
                   help="with --behaviour: also play the test episodes (first target) with the behaviour policy "
                        "acting for the first N steps, for each N given, e.g. 20,60,150")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="numerics of every forward pass (default: the run's, as its evaluation ran)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    check_positive(args, ("data_episodes", "episodes"))
    if args.handover and not args.behaviour:
        raise ConfigError("--handover needs --behaviour")
    if not args.checkpoint.is_file():
        raise ConfigError(f"checkpoint {args.checkpoint} does not exist")
    model, config = load_model(args.checkpoint)
    run_args = config.get("args") or {}
    precision = args.precision or config.get("precision") or "fp32"
    name = dataset_of(int(run_args.get("env_id") or 0))
    env = split_name(name)[0]
    folder = data_folder(args.data_dir or run_args.get("data_dir"))
    source = find_dataset(folder, name)
    if source is None:
        raise DataError(f"no {name} data in {folder}: pass --data_dir")
    store = mujoco_store(source, env, args.store_dir or folder / "stores" / name)
    behaviour = None
    if args.behaviour:
        from stable_baselines3 import SAC
        if not args.behaviour.is_file():
            raise ConfigError(f"--behaviour {args.behaviour} does not exist")
        behaviour = SAC.load(args.behaviour, device="cpu")
    episodes = np.arange(min(args.data_episodes, store.n_episodes))
    ranges = data_ranges(store)
    targets = args.targets or TARGET_RETURNS[env]
    torch.set_grad_enabled(False)
    with autocast(torch.device("cpu"), precision):
        report = {"checkpoint": str(args.checkpoint), "dataset": name, "precision": precision,
                  "replay": replay(model, store, episodes), "teacher_forced": teacher_forced(model, store, episodes),
                  "closed_loop": [closed_loop(model, env, ENV.seeds(args.episodes), t, ranges, behaviour)
                                  for t in targets]}
        report["handover"] = [handover(model, env, ENV.seeds(args.episodes), targets[0], behaviour, n)
                              for n in args.handover]
    text = json.dumps(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    quiet_old_gym()
    run_main(main)
