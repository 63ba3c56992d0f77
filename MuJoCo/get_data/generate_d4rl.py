"""Generate D4RL-style MuJoCo datasets locally with stable-baselines3 SAC, following D4RL's recipe.

    python3 MuJoCo/get_data/generate_d4rl.py --env hopper --dataset medium
    python3 MuJoCo/get_data/generate_d4rl.py --env hopper --dataset medium-expert --expert_steps 1000000

One SAC run per (env, seed), in ``<out_dir>/sac/<env>_seed<seed>/``, trained on gymnasium's v5 env:

* **medium**: training stops at the first evaluation (``--eval_episodes`` stochastic episodes every
  ``--eval_every`` steps) whose mean return reaches ``--medium_return`` (default about the return of
  D4RL's medium-v2 behaviour: hopper 1500, halfcheetah 4500, walker2d 3000), or at ``--steps``, taking
  the best evaluated policy then; the dataset is ``--transitions`` steps of that policy (actions
  sampled, as SAC acts).
* **medium-replay**: that run's replay buffer up to the medium policy (every transition SAC saw).
* **expert**: the same run trained on to ``--expert_steps`` (D4RL: a fully trained policy, ~1M
  steps, ~4 h per env on one core), then ``--transitions`` steps of it.
* **medium-expert**: the medium and expert datasets concatenated.

Each dataset is ``<out_dir>/<env>-<dataset>-v5.hdf5`` in D4RL's layout (observations, next_observations,
actions, rewards, terminals, timeouts float32/bool; ``metadata/*``), read by the same loader as D4RL's
files, plus ``<env>-<dataset>-v5.json``: the request, the behaviour policy, its mean return over every
episode it played (medium-replay: over the file's episodes; medium-expert: over both parts' episodes)
and normalised score, and the cost (SAC steps and seconds). The run is seeded and resumable: it saves
the model and the filled part of the replay buffer at every evaluation, and a rerun continues from there
(Ctrl-C is safe); a finished dataset is kept, and a request with other settings for it is refused.

``--format minari --dataset_id mujoco-rate/hopper/medium-v0`` writes the dataset as a local Minari dataset
instead (``both``: as well; ``minari`` alone makes the SAC run and the hdf5 file in a temporary folder beside it,
removed once the export is written): every complete episode with its final observation
(``next_observations``), terminations and truncations (``terminals`` / ``timeouts``), and the env spec of
gymnasium's v5 env, so Minari recovers it for evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from MuJoCo.MuJoCo_src.mujoco_data import DATA_DIR, split_d4rl
from MuJoCo.MuJoCo_src.mujoco_env import (
    DIMS,
    ENVS,
    GYM_IDS,
    KINDS,
    MAX_STEPS,
    make_env,
    normalised_score,
    quiet_old_gym,
)
from RATE_model.config import OneLineErrorParser
from RATE_model.files import atomic_write, replacing, write_text
from RATE_model.minari_data import add_export_flags, env_spec, export, minari_episode, run_generator

MEDIUM_RETURN = {"halfcheetah": 4500.0, "walker2d": 3000.0, "hopper": 1500.0}
FIELDS = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")
SUFFIX = "-v5"  # collected on gymnasium's v5 envs (D4RL's files say -v2)


def dataset_path(out_dir: Path, name: str) -> Path:
    """Where the generator writes dataset ``name`` (e.g. ``hopper-medium``)."""
    return Path(out_dir) / f"{name}{SUFFIX}.hdf5"


# ------------------------------------------------------------------------------------------ D4RL files
def write_d4rl(path: Path, data: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """``data`` (FIELDS) as a D4RL-layout hdf5 file with ``metadata/<key>`` scalars, and the metadata as
    ``<path>.json`` beside it; both written atomically (a killed run leaves no partial file)."""
    import h5py

    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        for k in FIELDS:
            f.create_dataset(k, data=data[k], compression="gzip" if data[k].ndim > 1 else None)
        for k, v in metadata.items():
            if isinstance(v, (bool, int, float, str)):  # scalars; the JSON file holds everything
                f[f"metadata/{k}"] = v
    write_text(path.with_suffix(".json"), json.dumps(metadata, indent=2))


def transitions_of(episodes: list[dict[str, np.ndarray]], limit: int | None = None) -> dict[str, np.ndarray]:
    """Episodes (FIELDS each) concatenated, cut to ``limit`` rows; the last row is marked a timeout when
    the cut (or the end of the data) falls inside an episode."""
    data = {k: np.concatenate([ep[k] for ep in episodes])[:limit] for k in FIELDS}
    if not (data["terminals"][-1] or data["timeouts"][-1]):
        data["timeouts"][-1] = True
    return data


# ------------------------------------------------------------------------------------------ the SAC run
class SacRun:
    """One seeded SAC run on ``env``, saved in ``folder`` at every evaluation: ``model.zip``, ``buffer.npz``
    (the filled part of the replay buffer), ``state.json`` (steps, evaluations, chosen policies) and
    ``medium.zip`` / ``expert.zip`` once chosen."""

    def __init__(self, env: str, folder: Path, seed: int, settings: dict[str, Any], max_episode_steps: int | None,
                 buffer_size: int):
        from stable_baselines3 import SAC

        self.env, self.folder, self.seed = env, Path(folder), seed
        self.max_episode_steps = max_episode_steps
        self.folder.mkdir(parents=True, exist_ok=True)
        state_file = self.folder / "state.json"
        self.state: dict[str, Any] = {"settings": settings, "steps": 0, "evals": [], "medium": None,
                                      "train_seconds": 0.0}
        if state_file.exists():
            saved = json.loads(state_file.read_text())
            if saved["settings"] != settings:
                raise ValueError(f"{self.folder} holds a SAC run made with other settings ({saved['settings']}); "
                                 "delete it or pass another --out_dir / --seed")
            self.state = saved
        train_env = make_env(env, max_episode_steps)
        if self.state["steps"]:
            self.model = SAC.load(self.folder / "model.zip", env=train_env, device="cpu")
            self._load_buffer()
        else:
            self.model = SAC("MlpPolicy", train_env, seed=seed, device="cpu", verbose=0,
                             buffer_size=buffer_size)

    # -- saving
    def _save(self) -> None:
        rb, n = self.model.replay_buffer, self.model.num_timesteps
        with atomic_write(self.folder / "buffer.npz") as f:
            np.savez(f, **{k: getattr(rb, k)[:n] for k in ("observations", "next_observations", "actions", "rewards",
                                                            "dones", "timeouts")})
        with atomic_write(self.folder / "model.zip") as f:
            self.model.save(f)
        write_text(self.folder / "state.json", json.dumps(self.state, indent=1))  # last: it marks the save done

    def _load_buffer(self) -> None:
        rb, n = self.model.replay_buffer, self.state["steps"]
        with np.load(self.folder / "buffer.npz") as f:
            for k in f.files:
                getattr(rb, k)[:n] = f[k]
        rb.pos, rb.full = n, False

    # -- training
    def evaluate(self, episodes: int) -> tuple[float, float]:
        """Mean and std of the return of ``episodes`` episodes with sampled actions (as the data is collected)."""
        returns = play(self.model, self.env, episodes * MAX_STEPS, deterministic=False,
                       seed=10_000 + 1_000 * len(self.state["evals"]), max_episode_steps=self.max_episode_steps,
                       n_envs=episodes, one_each=True)[1]
        return float(np.mean(returns)), float(np.std(returns))

    def train_to(self, steps: int, every: int, episodes: int, stop_return: float | None, desc: str) -> None:
        """Train until ``steps`` SAC steps, or until an evaluation reaches ``stop_return``; evaluate and
        save every ``every`` steps."""
        if steps > self.model.buffer_size:  # the saved buffer must hold every transition (medium-replay)
            raise ValueError(f"{self.folder} was started for at most {self.model.buffer_size} SAC steps; "
                             f"{steps} need a new run (delete it or pass another --out_dir / --seed)")
        bar = tqdm(total=steps, initial=self.state["steps"], desc=desc, unit="step", disable=None)
        while self.state["steps"] < steps:
            chunk = min(every - self.state["steps"] % every, steps - self.state["steps"])
            t0 = time.time()
            self.model.learn(chunk, reset_num_timesteps=False, progress_bar=False)
            self.state["train_seconds"] += time.time() - t0
            self.state["steps"] = int(self.model.num_timesteps)
            mean, std = self.evaluate(episodes)
            if mean > max((e[1] for e in self.state["evals"]), default=-np.inf):
                self.model.save(self.folder / "best.zip")
            self.state["evals"].append([self.state["steps"], mean, std])
            bar.update(chunk)
            bar.set_postfix(eval_return=f"{mean:.0f}")
            self._save()
            if stop_return is not None and mean >= stop_return:
                break
        bar.close()

    def choose_medium(self) -> dict[str, Any]:
        """The medium policy, saved as ``medium.zip`` (its replay prefix is medium-replay): the best
        evaluation, which is the first to reach the target when one did (training stops there)."""
        if self.state["medium"] is None:
            step, mean, _ = max(self.state["evals"], key=lambda e: e[1])
            shutil.copyfile(self.folder / "best.zip", self.folder / "medium.zip")
            self.state["medium"] = {"step": int(step), "eval_return": mean,
                                    "reached_target": mean >= self.state["settings"]["medium_return"]}
            self._save()
        return self.state["medium"]

    def replay(self, steps: int) -> dict[str, np.ndarray]:
        """The replay buffer's first ``steps`` transitions in D4RL's fields (terminals = dones & ~timeouts)."""
        rb = self.model.replay_buffer
        dones, timeouts = rb.dones[:steps, 0] > 0.5, rb.timeouts[:steps, 0] > 0.5
        ep = {"observations": rb.observations[:steps, 0].astype(np.float32),
              "next_observations": rb.next_observations[:steps, 0].astype(np.float32),
              "actions": self.model.policy.unscale_action(rb.actions[:steps, 0]).astype(np.float32),
              "rewards": rb.rewards[:steps, 0].astype(np.float32),
              "terminals": dones & ~timeouts, "timeouts": dones & timeouts}
        return transitions_of([ep])


def play(model: Any, env: str, transitions: int, deterministic: bool, seed: int, max_episode_steps: int | None,
         n_envs: int = 10, one_each: bool = False,
         progress: str | None = None) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Episodes of ``model`` on ``n_envs`` envs stepped together (one batched policy call per step) until
    the finished episodes hold ``transitions`` steps; with ``one_each``, exactly one episode per env (an
    unbiased evaluation: stopping at the first n finished episodes would favour short ones). Returns the
    episodes (FIELDS) and their returns. Env ``i`` is seeded ``seed + i`` at its first reset."""
    envs = [make_env(env, max_episode_steps) for _ in range(n_envs)]
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    open_eps: list[dict[str, list]] = [{k: [] for k in FIELDS} for _ in envs]
    done_eps: list[dict[str, np.ndarray]] = []
    live = list(range(n_envs))
    count = 0
    bar = tqdm(total=transitions, desc=progress, unit="step", disable=None if progress else True, leave=False)
    while live and count < transitions:
        actions, _ = model.predict(np.stack([obs[i] for i in live]), deterministic=deterministic)
        for i, action in zip(list(live), actions, strict=True):
            nxt, r, term, trunc, _ = envs[i].step(action)
            for k, v in zip(FIELDS, (obs[i], nxt, action, r, term, trunc and not term), strict=True):
                open_eps[i][k].append(v)
            obs[i] = nxt
            if term or trunc:
                done_eps.append({k: np.asarray(v, bool if k in ("terminals", "timeouts") else np.float32)
                                 for k, v in open_eps[i].items()})
                count += len(open_eps[i]["rewards"])
                bar.update(len(open_eps[i]["rewards"]))
                open_eps[i] = {k: [] for k in FIELDS}
                if one_each:
                    live.remove(i)
                else:
                    obs[i] = envs[i].reset()[0]
    bar.close()
    for e in envs:
        e.close()
    return done_eps, [float(ep["rewards"].sum()) for ep in done_eps]


# ------------------------------------------------------------------------------------------ datasets
@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generate(env: str, dataset: str, out_dir: Path = DATA_DIR, seed: int = 0, steps: int = 1_000_000,
             expert_steps: int = 1_000_000, transitions: int = 1_000_000, medium_return: float | None = None,
             eval_every: int = 5_000, eval_episodes: int = 10, max_episode_steps: int | None = None,
             threads: int = 1) -> dict[str, Any]:
    """Make sure ``<out_dir>/<env>-<dataset>-v5.hdf5`` exists (and what it needs); returns its metadata."""
    if env not in ENVS or dataset not in KINDS:
        raise ValueError(f"--env must be one of {', '.join(ENVS)} and --dataset one of {', '.join(KINDS)}")
    for name, v in (("steps", steps), ("expert_steps", expert_steps), ("transitions", transitions),
                    ("eval_every", eval_every), ("eval_episodes", eval_episodes), ("threads", threads)):
        if v < 1:
            raise ValueError(f"--{name} must be >= 1, got {v}")
    if max_episode_steps is not None and not 1 <= max_episode_steps <= MAX_STEPS:
        raise ValueError(f"--max_episode_steps must be in 1..{MAX_STEPS}, got {max_episode_steps}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    out_dir = Path(out_dir)
    path = dataset_path(out_dir, f"{env}-{dataset}")
    medium_return = MEDIUM_RETURN[env] if medium_return is None else medium_return
    request = {"env": env, "dataset": dataset, "seed": seed, "transitions": transitions,
               "max_episode_steps": max_episode_steps, "medium_return": medium_return}
    if dataset in ("expert", "medium-expert"):
        request["expert_steps"] = expert_steps
    if path.exists():
        return _existing(path, request)
    with torch_threads(threads):  # SAC's; the caller's setting (e.g. a --smoke training) is restored
        if dataset == "medium-expert":
            parts = [generate(env, k, out_dir, seed, steps, expert_steps, transitions, medium_return, eval_every,
                              eval_episodes, max_episode_steps, threads) for k in ("medium", "expert")]
            data = _concat([dataset_path(out_dir, f"{env}-{k}") for k in ("medium", "expert")])
            meta = {**request, "request": request, "transitions": len(data["rewards"]),
                    "parts": [p["dataset"] for p in parts],
                    "episodes": sum(p["episodes"] for p in parts)}
            meta["return_mean"] = sum(p["return_mean"] * p["episodes"] for p in parts) / meta["episodes"]
            write_d4rl(path, data, meta)
            return meta
        settings = {"env": env, "seed": seed, "eval_every": eval_every, "eval_episodes": eval_episodes,
                    "medium_return": medium_return, "max_episode_steps": max_episode_steps,
                    "sb3": "SAC default hyper-parameters"}
        run = SacRun(env, out_dir / "sac" / f"{env}_seed{seed}", seed, settings, max_episode_steps,
                     buffer_size=max(steps, expert_steps))
        if run.state["medium"] is None:
            run.train_to(steps, eval_every, eval_episodes, settings["medium_return"], f"SAC {env} to medium")
        medium = run.choose_medium()
        t0 = time.time()
        if dataset == "medium-replay":
            data = run.replay(medium["step"])
            returns = _returns(data)
            policy = {"policy": f"SAC replay buffer, steps 0..{medium['step']}"}
        else:
            from stable_baselines3 import SAC

            if dataset == "expert":
                run.train_to(expert_steps, eval_every, eval_episodes, None, f"SAC {env} to expert")
                shutil.copyfile(run.folder / "model.zip", run.folder / "expert.zip")
                policy = {"policy": f"SAC after {run.state['steps']} steps", "policy_step": run.state["steps"]}
            else:
                policy = {"policy": f"SAC after {medium['step']} steps (eval return {medium['eval_return']:.1f}, "
                                    f"target {settings['medium_return']:.0f}"
                                    f"{'' if medium['reached_target'] else ', not reached: best evaluation'})",
                          "policy_step": medium["step"]}
            model = SAC.load(run.folder / f"{dataset}.zip", device="cpu")
            episodes, returns = play(model, env, transitions, deterministic=False, seed=seed * 100_003 + 1,
                                     max_episode_steps=max_episode_steps, progress=f"{env}-{dataset} rollouts")
            data = transitions_of(episodes, transitions)
        meta = {**request, "request": request, **policy, "transitions": len(data["rewards"]), "episodes": len(returns),
                "return_mean": float(np.mean(returns)) if returns else float("nan"),
                "return_std": float(np.std(returns)) if returns else float("nan"),
                "normalised_score": float(normalised_score(env, np.mean(returns))) if returns else float("nan"),
                "sac_run_steps": run.state["steps"], "sac_train_seconds": round(run.state["train_seconds"], 1),
                "collect_seconds": round(time.time() - t0, 1), "gym_env": GYM_IDS[env],
                "state_dim": DIMS[env][0], "act_dim": DIMS[env][1]}
        out_dir.mkdir(parents=True, exist_ok=True)
        write_d4rl(path, data, meta)
        return meta


def _returns(data: dict[str, np.ndarray]) -> list[float]:
    """Returns of the complete episodes of a D4RL-layout dataset."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"]) + 1
    return [float(s.sum()) for s in np.split(data["rewards"], ends)[:-1]]


def _concat(paths: list[Path]) -> dict[str, np.ndarray]:
    import h5py

    parts = []
    for p in paths:
        with h5py.File(p, "r") as f:
            parts.append({k: f[k][()] for k in FIELDS})
    return {k: np.concatenate([d[k] for d in parts]) for k in FIELDS}


def _existing(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """The metadata of an existing dataset, which must have been made by the same request."""
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("request") != request:
        raise ValueError(f"{path} exists but was made by another request ({meta.get('request')}, now {request}); "
                         "delete it or pass another --out_dir")
    return meta


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--env", choices=ENVS, required=True)
    p.add_argument("--dataset", choices=KINDS, required=True)
    p.add_argument("--out_dir", type=Path, default=DATA_DIR, help=f"where datasets go (default {DATA_DIR})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1_000_000, help="most SAC steps spent looking for the medium policy")
    p.add_argument("--expert_steps", type=int, default=1_000_000, help="SAC steps of the expert policy")
    p.add_argument("--transitions", type=int, default=1_000_000, help="steps of policy rollouts per dataset (D4RL: 1M)")
    p.add_argument("--medium_return", type=float, help="evaluation return that stops the medium policy's training")
    p.add_argument("--eval_every", type=int, default=5_000, help="SAC steps between evaluations (and saves)")
    p.add_argument("--eval_episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--max_episode_steps", type=int, help=f"shorter time limit than {MAX_STEPS} (tiny test data)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of SAC")
    add_export_flags(p)
    return p


def export_minari(args: argparse.Namespace, folder: Path) -> Path:
    """The complete episodes of the D4RL-layout file made in ``folder`` as the Minari dataset ``--dataset_id``."""
    path = dataset_path(folder, f"{args.env}-{args.dataset}")
    meta = json.loads(path.with_suffix(".json").read_text())
    state_dim, act_dim = DIMS[args.env]

    def episode(ep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return minari_episode(ep["observations"], ep["actions"], ep["rewards"], bool(ep["terminals"][-1]),
                              bool(ep["timeouts"][-1]), final_obs=ep["next_observations"][-1])

    spec = env_spec(GYM_IDS[args.env], args.max_episode_steps or None)  # the v5 env's spaces come with it
    return export(args, split_d4rl(path, FIELDS), episode, None, None, env=spec,
                  algorithm_name=f"SAC (stable-baselines3), {meta.get('policy', args.dataset)}",
                  description=f"{args.env}-{args.dataset}: D4RL's recipe on gymnasium's {GYM_IDS[args.env]}, made by "
                              f"RATE's MuJoCo/get_data/generate_d4rl.py ({state_dim}-d states, {act_dim}-d actions). "
                              f"Generator record: {json.dumps(meta)}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_generator(build_parser(), generate, export_minari, argv)


if __name__ == "__main__":
    quiet_old_gym()
    main()
