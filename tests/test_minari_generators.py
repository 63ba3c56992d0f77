"""The data generators' ``--format both``: the Minari dataset holds the generator's own episodes exactly, ends them
as each generator documents, and recovers its env."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from RATE_model.collect import episode_path


@pytest.fixture
def minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    module = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return module


def assert_same(ep: Any, obs: np.ndarray, action: np.ndarray, reward: np.ndarray) -> None:
    """The Minari episode's observations (but the final one), actions and rewards are exactly these."""
    assert len(ep.observations) == len(obs) + 1
    assert np.array_equal(ep.observations[:-1], obs) and ep.observations.dtype == obs.dtype
    assert np.array_equal(ep.actions, action) and np.array_equal(ep.rewards, reward)
    assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()


def test_minigrid_memory(tmp_path, minari):
    pytest.importorskip("minigrid")
    from MinigridMemory.get_data import collect_traj
    from MinigridMemory.MinigridMemory_src.minigrid_env import GYM_ID

    own = tmp_path / "own"
    stats = collect_traj.main(["--n_episodes", "2", "--size", "7", "--workers", "1", "--out_dir", str(own),
                               "--format", "both", "--dataset_id", "test/minigrid-v0"])
    assert stats["minari_dataset"] == "test/minigrid-v0" and stats["retries"] == 0
    ds = minari.load_dataset("test/minigrid-v0")
    assert ds.total_episodes == 2
    for i, ep in enumerate(ds.iterate_episodes()):
        f = np.load(episode_path(own, i))
        assert_same(ep, f["obs"], f["action"], f["reward"])
        assert ep.terminations[-1] and not ep.truncations[-1]  # only successes are written
        assert np.array_equal(ep.observations[-1], ep.observations[-2])  # the final observation is not kept
    env = ds.recover_environment()
    assert env.spec.id == GYM_ID and env.spec.kwargs == {"size": 7, "timeout": 245}
    assert env.observation_space == ds.observation_space
    first, _ = env.reset(seed=collect_traj.episode_seeds(0, 0, 0)[0])
    assert np.array_equal(first, ds[0].observations[0])  # the recovered env replays episode 0's start
    # --format minari: the episodes are made in a temporary folder, removed once the dataset is written
    collect_traj.main(["--n_episodes", "2", "--size", "7", "--workers", "1", "--format", "minari",
                       "--dataset_id", "test/minigrid-v1"])
    assert not (tmp_path / "minari" / ".rate-episodes" / "test__minigrid-v1").exists()
    assert np.array_equal(minari.load_dataset("test/minigrid-v1")[1].observations, ds[1].observations)
    with pytest.raises(SystemExit) as e:  # a bad combination: one line, before anything is collected
        collect_traj.main(["--n_episodes", "2", "--size", "7", "--format", "minari", "--out_dir", str(tmp_path / "x")])
    assert e.value.code == 2 and not (tmp_path / "x").exists()


def test_memory_maze(tmp_path, minari):
    pytest.importorskip("memory_maze")
    from MemoryMaze.get_data import collect_data
    from MemoryMaze.MemoryMaze_src.memory_maze_env import GYM_ID

    own = tmp_path / "own"
    collect_data.main(["--n_episodes", "2", "--max_steps", "6", "--workers", "1", "--out_dir", str(own),
                       "--format", "both", "--dataset_id", "test/memory-maze-v0"])
    ds = minari.load_dataset("test/memory-maze-v0")
    assert ds.total_episodes == 2
    for i, ep in enumerate(ds.iterate_episodes()):
        f = np.load(episode_path(own, i))
        assert_same(ep, f["obs"].transpose(0, 3, 1, 2), f["action"].argmax(1), f["reward"])
        assert ep.truncations[-1] and not ep.terminations[-1]  # the task only ends at its step limit
    env = ds.recover_environment()
    try:
        assert env.spec.id == GYM_ID and env.spec.kwargs == {"max_steps": 6} and not env.unwrapped.privileged
        assert env.observation_space == ds.observation_space
        first, _ = env.reset(seed=collect_data.episode_seeds(0, 0)[0])
        assert np.array_equal(first, ds[0].observations[0])  # the agent's camera is the oracle's
    finally:
        env.close()


def test_atari(tmp_path, minari):
    pytest.importorskip("ale_py")
    from Atari.Atari_src.atari_data import PAD, element_file, replay_logs
    from Atari.Atari_src.atari_env import GYM_ID
    from Atari.get_data import collect_replay

    own = tmp_path / "own"
    collect_replay.main(["--game", "Breakout", "--transitions", "300", "--checkpoints", "2", "--epsilon", "1.0",
                         "--max_episode_steps", "150", "--workers", "1", "--out_dir", str(own), "--format", "both",
                         "--dataset_id", "test/atari-v0"])
    logs = replay_logs(own, "Breakout")
    episodes = []  # the checkpoints' episodes, padding dropped
    for n in range(2):
        arrays = {}
        for name in ("observation", "action", "reward", "terminal"):
            with gzip.open(element_file(logs, name, n)) as f:
                arrays[name] = np.load(f)
        ends = np.flatnonzero(arrays["terminal"]) + 1
        for s, e in zip(np.concatenate([[0], ends[:-1]]) + PAD, ends, strict=True):
            episodes.append({k: arrays[k][s:e] for k in ("observation", "action", "reward")})
    ds = minari.load_dataset("test/atari-v0")
    assert ds.total_episodes == len(episodes)
    ended = set()
    for ep, own_ep in zip(ds.iterate_episodes(), episodes, strict=True):
        frames = own_ep["observation"]
        T = len(frames)
        stacks = np.stack([[frames[max(t - 3 + k, 0)] for k in range(4)] for t in range(T)])
        assert_same(ep, stacks, own_ep["action"], own_ep["reward"])
        assert (ep.terminations[-1], ep.truncations[-1]) == (T < 150, T == 150)
        ended.add(T < 150)
    assert ended == {True, False}  # both ends occur
    env = ds.recover_environment()
    try:
        assert env.spec.id == GYM_ID and env.spec.max_episode_steps == 150
        assert env.observation_space == ds.observation_space and env.action_space == ds.action_space
        obs, _ = env.reset(seed=0)
        assert all(np.array_equal(obs[0], obs[k]) for k in range(4))  # the reset frame repeated
    finally:
        env.close()


def test_popgym(tmp_path, minari, capsys):
    pytest.importorskip("popgym")
    import gymnasium as gym

    from POPGym.get_data import gen_popgym_data as gen
    from POPGym.POPGym_src.popgym_env import FLAT_GYM_ID

    own = tmp_path / "own"
    tasks = ("popgym-BattleshipEasy-v0", "popgym-NoisyPositionOnlyCartPoleMedium-v0")
    argv = ["--tasks", ",".join(tasks), "--n_episodes", "2", "--workers", "1", "--format", "both",
            "--dataset_id", "test/popgym"]
    rows = gen.main([*argv, "--out_dir", str(own)])
    ids = ["test/popgym/BattleshipEasy-v0", "test/popgym/NoisyPositionOnlyCartPoleMedium-v0"]
    assert [r["minari_dataset"] for r in rows] == ids
    ends = {}
    for task, dataset_id in zip(tasks, ids, strict=True):
        ds = minari.load_dataset(dataset_id)
        assert ds.total_episodes == 2
        for i, ep in enumerate(ds.iterate_episodes()):
            f = np.load(own / task / f"train_data_{i}.npz")
            assert_same(ep, f["obs"].astype(ds.observation_space.dtype), f["action"], f["reward"])
            assert ep.terminations[-1] != ep.truncations[-1]
            ends[task, i] = "terminated" if ep.terminations[-1] else "truncated"
        env = ds.recover_environment()
        assert env.observation_space == ds.observation_space and env.action_space == ds.action_space
        first, _ = env.reset(seed=0)
        assert np.array_equal(first, ds[0].observations[0])
        env.close()
    assert isinstance(minari.load_dataset(ids[0]).observation_space, gym.spaces.MultiDiscrete)
    assert minari.load_dataset(ids[0]).env_spec.id == FLAT_GYM_ID  # Battleship's raw spaces differ
    assert minari.load_dataset(ids[1]).env_spec.id == tasks[1]  # the CartPole's are popgym's own
    # Battleship ends when every ship is hit; the CartPole of seed 0 falls, that of seed 1 lasts its 200 steps
    assert ends == {(tasks[0], 0): "terminated", (tasks[0], 1): "terminated", (tasks[1], 0): "terminated",
                    (tasks[1], 1): "truncated"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # a task's dataset exists: refused before anything is collected
        gen.main([*argv, "--out_dir", str(tmp_path / "again")])
    assert e.value.code == 2 and "test/popgym/BattleshipEasy-v0" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
