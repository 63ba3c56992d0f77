"""Two small Minari datasets from gymnasium's classic-control envs, for trying Minari/train_minari.py on data that
none of our environments makes: a discrete and a continuous-action one, each played by a simple controller that
reads only the observation, with action noise.

    python3 Minari/get_data/make_examples.py             # rate-examples/cartpole/controller-v0, .../mountaincar/...
    python3 Minari/train_minari.py --minari_dataset rate-examples/cartpole/controller-v0

* ``rate-examples/cartpole/controller-v0`` (CartPole-v1, 200-step limit): push towards where the pole falls
  (sign of angle + 0.5 · angular velocity + 0.02 · cart velocity), a random action with probability ``--noise``.
* ``rate-examples/mountaincar/controller-v0`` (MountainCarContinuous-v0): push along the velocity (full force),
  a uniform random force with probability ``--noise``.

Written with ``RATE_model.minari_data.write_dataset`` (no jax needed); an existing dataset is kept. Prints one JSON
line per dataset: episodes, steps, mean return ± SEM.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from RATE_model.minari_data import dataset_dir, env_spec, minari_episode, write_dataset
from RATE_model.rollout import sem


def cartpole(obs: np.ndarray, rng: np.random.Generator) -> int:
    return int(obs[2] + 0.5 * obs[3] + 0.02 * obs[1] > 0)


def mountaincar(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([1.0 if obs[1] >= 0 else -1.0], np.float32)


EXAMPLES: dict[str, tuple[str, dict[str, Any], Callable[[np.ndarray, np.random.Generator], Any]]] = {
    "rate-examples/cartpole/controller-v0": ("CartPole-v1", {"max_episode_steps": 200}, cartpole),
    "rate-examples/mountaincar/controller-v0": ("MountainCarContinuous-v0", {}, mountaincar),
}


def episodes(env: gym.Env, policy: Callable, n: int, noise: float, seed: int,
             returns: list[float]) -> Iterator[dict[str, np.ndarray]]:
    """``n`` episodes of ``policy`` with probability ``noise`` of a random action, env seeds seed, seed + 1, ..."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        seen, actions, rewards = [obs], [], []
        while True:
            action = env.action_space.sample() if rng.random() < noise else policy(obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            seen.append(obs)
            actions.append(action)
            rewards.append(reward)
            if terminated or truncated:
                break
        returns.append(float(np.sum(rewards)))
        yield minari_episode(np.asarray(seen[:-1]), np.asarray(actions), np.asarray(rewards), terminated, truncated,
                             final_obs=seen[-1])


def make(dataset_id: str, n_episodes: int, noise: float, seed: int) -> dict[str, Any]:
    gym_id, limits, policy = EXAMPLES[dataset_id]
    if dataset_dir(dataset_id).exists():
        return {"dataset": dataset_id, "kept": str(dataset_dir(dataset_id))}
    spec = env_spec(gym_id, **limits)
    returns: list[float] = []
    with gym.make(spec) as env:
        write_dataset(dataset_id, episodes(env, policy, n_episodes, noise, seed, returns), env.observation_space,
                      env.action_space, env=spec, algorithm_name=f"{policy.__name__} controller, noise {noise}",
                      description=f"{gym_id}: {n_episodes} episodes of the controller in Minari/get_data/"
                                  f"make_examples.py, a random action with probability {noise}, env seeds "
                                  f"{seed}..{seed + n_episodes - 1}")
    r = np.asarray(returns)
    return {"dataset": dataset_id, "episodes": len(r), "return": float(r.mean()), "return_sem": sem(r)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n_episodes", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.2, help="probability of a random action per step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n_episodes < 1 or not 0 <= args.noise <= 1:
        p.error("--n_episodes must be >= 1 and --noise in [0, 1]")
    rows = [make(d, args.n_episodes, args.noise, args.seed) for d in EXAMPLES]
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
