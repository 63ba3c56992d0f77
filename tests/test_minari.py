"""Minari datasets in and out, fully offline: datasets made with Minari's own DataCollector read into the
episode store step for step and trained on by our scripts; our generators' datasets exported and read back by
Minari and by us; clear one-line errors for missing, damaged and unbuildable datasets."""

import json
import warnings

import numpy as np
import pytest
import torch

minari = pytest.importorskip("minari")
gym = pytest.importorskip("gymnasium")
pytest.importorskip("h5py")

from RATE_model.data import DataError  # noqa: E402
from RATE_model.encoders import Bounds, build_encoders, image_padding  # noqa: E402
from RATE_model.minari_data import (  # noqa: E402
    StoredLayout,
    encoder_kwargs,
    layout_of,
    load,
    minari_episode,
    minari_store,
    write_dataset,
)
from tests.helpers import check_attention_tool  # noqa: E402


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def collect(env, dataset_id, n_episodes, seed=0, policy=None):
    """A dataset made by Minari's own DataCollector: ``n_episodes`` episodes with env seeds seed, seed + 1, ..."""
    from minari import DataCollector

    env = DataCollector(env, record_infos=False)
    env.action_space.seed(seed)
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        while True:
            action = env.action_space.sample() if policy is None else policy(obs)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    with warnings.catch_warnings():  # Minari's note that no separate eval env was given
        warnings.simplefilter("ignore", UserWarning)
        dataset = env.create_dataset(dataset_id, algorithm_name="random", author="tests",
                                     author_email="t@example.org", code_permalink="tests/test_minari.py",
                                     description="test data")
    env.close()
    return dataset


def assert_store_holds(store, dataset, layout):
    """Every episode of the store is Minari's: the first T observations (in the store's layout), actions,
    rewards, the termination and truncation of its last step, and the return-to-go."""
    episodes = list(dataset.iterate_episodes())
    assert store.n_episodes == len(episodes) and store.n_steps == dataset.total_steps
    for i, ep in enumerate(episodes):
        mine = store.episode(i)
        T = len(ep.rewards)
        assert len(mine["obs"]) == T
        assert np.array_equal(mine["obs"], layout.observation(ep.observations[:T]))
        assert np.array_equal(mine["action"], layout.action(ep.actions))
        assert np.array_equal(mine["reward"], ep.rewards.astype(np.float32))
        assert mine["terminal"][-1] == ep.terminations[-1] and mine["timeout"][-1] == ep.truncations[-1]
        assert not mine["terminal"][:-1].any() and not mine["timeout"][:-1].any()
        np.testing.assert_allclose(mine["rtg"], np.cumsum(ep.rewards[::-1])[::-1], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ MuJoCo (vectors)
def test_a_collected_mujoco_dataset_is_stored_step_for_step_and_trained_on(minari_root, tmp_path):
    pytest.importorskip("mujoco")
    from MuJoCo.train_rate_mujoco_ca import main

    dataset = collect(gym.make("Hopper-v5", max_episode_steps=40), "test/hopper/random-v0", 6)
    ends = [(ep.terminations[-1], ep.truncations[-1]) for ep in dataset.iterate_episodes()]
    assert {(True, False), (False, True)} <= set(map(tuple, np.asarray(ends, bool).tolist()))  # both kinds of end
    out = main(["--minari_dataset", "test/hopper/random-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
                "--data_dir", str(tmp_path / "data"), "--no_wandb"])
    store_dir = tmp_path / "data" / "stores" / "minari" / "test__hopper__random-v0"
    store, _, layout = minari_store("test/hopper/random-v0", store_dir)
    assert_store_holds(store, dataset, layout)
    metrics = out["runs"]["1"]["metrics"]
    assert metrics["episodes_n"] == 2 and np.isfinite(metrics["return_reset_t3600"])
    config = json.loads((tmp_path / "runs" / "mujoco" / "RATE" / "seed_1" / "config.json").read_text())
    assert config["args"]["minari_dataset"] == "test/hopper/random-v0"


def test_the_generic_script_trains_and_evaluates_on_a_collected_vector_dataset(minari_root, tmp_path):
    from Minari.train_minari import main

    dataset = collect(gym.make("CartPole-v1", max_episode_steps=30), "test/cartpole/random-v0", 5)
    out = main(["--minari_dataset", "test/cartpole/random-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
                "--store_dir", str(tmp_path / "store"), "--no_wandb"])
    store, _, layout = minari_store("test/cartpole/random-v0", tmp_path / "store")
    assert_store_holds(store, dataset, layout)
    best = max(float(ep.rewards.sum()) for ep in dataset.iterate_episodes())
    metrics = out["runs"]["1"]["metrics"]
    assert metrics["targets"] == [best] and 1 <= metrics[f"return_t{best:g}"] <= 30  # the recovered env's limit


def test_the_generic_run_records_its_protocol_and_tools_evaluate_reproduces_it(minari_root, tmp_path):
    """The targets and return-to-go scale derived from the data are recorded with the run's flags; ENV rebuilds the
    protocol from them (the env from --minari_dataset), so ``python -m RATE_model.tools.evaluate CKPT`` gives the
    run's metrics exactly. A --rtg_scale below 1 (every default is) is accepted."""
    from Minari.Minari_src.minari_eval import ENV
    from Minari.train_minari import main
    from RATE_model import envs
    from RATE_model.tools import evaluate as tool

    assert envs.get("minari") is ENV and ENV.seeds(2) == [1_000_000, 1_000_001]
    collect(gym.make("CartPole-v1", max_episode_steps=25), "test/cartpole/random-v0", 4)
    out = main(["--minari_dataset", "test/cartpole/random-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
                "--store_dir", str(tmp_path / "store"), "--target_return", "20,40", "--rtg_scale", "0.05",
                "--no_wandb"])
    metrics = out["runs"]["1"]["metrics"]
    assert metrics["targets"] == [20.0, 40.0] and {"return_t20", "return_t40"} <= set(metrics)
    run = tmp_path / "runs" / "minari" / "RATE" / "seed_1"
    recorded = json.loads((run / "config.json").read_text())["args"]
    assert recorded["target_return"] == [20.0, 40.0] and recorded["rtg_scale"] == 0.05
    rows = tool.main([str(run / "checkpoints" / "last.pt"), "--out", str(tmp_path / "eval.jsonl")])
    assert len(rows) == 1 and rows[0]["env"] == "minari"
    check_attention_tool(run / "checkpoints" / "last.pt", tmp_path / "attention", 12)
    full = json.loads((tmp_path / "eval.jsonl").read_text())
    assert {k: full[k] for k in metrics} == metrics
    other = tool.main([str(run / "checkpoints" / "last.pt"), "--target_return", "10", "--eval_episodes", "1"])
    assert other[0]["targets"] == [10.0] and other[0]["episodes_n"] == 1


def test_the_generic_script_trains_and_evaluates_on_a_pixel_dataset_of_ours(minari_root, tmp_path):
    """ViZDoom-Two-Colors collected by Minari's DataCollector through its gymnasium id; recovered for evaluation."""
    pytest.importorskip("vizdoom")
    from Minari.train_minari import main
    from VizDoom.VizDoom_src.vizdoom_env import GYM_ID

    dataset = collect(gym.make(GYM_ID, timeout=12), "test/vizdoom/random-v0", 3)
    assert dataset.env_spec.id == GYM_ID
    out = main(["--minari_dataset", "test/vizdoom/random-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
                "--store_dir", str(tmp_path / "store"), "--eval_max_steps", "12", "--no_wandb"])
    store, _, layout = minari_store("test/vizdoom/random-v0", tmp_path / "store")
    assert layout.image and store.spec("obs") == ((3, 64, 112), np.uint8)
    assert_store_holds(store, dataset, layout)
    metrics = out["runs"]["1"]["metrics"]
    assert metrics["episodes_n"] == 2 and all(0 < e["return"] < 1 for e in metrics["episodes"])  # 12 steps alive


def test_hwc_images_discrete_observations_and_offset_actions_are_laid_out_for_the_model(minari_root, tmp_path):
    """Minari's usual image layout [H, W, C] is stored [C, H, W]; Discrete spaces with a start count from 0; the
    evaluation wrapper gives the env's actions back their offset."""
    rng = np.random.default_rng(0)
    obs_space = gym.spaces.Box(0, 255, (40, 48, 3), np.uint8)
    act_space = gym.spaces.Discrete(3, start=1)
    episodes = []
    for T in (5, 7):
        episodes.append({"observations": rng.integers(0, 256, (T + 1, 40, 48, 3), dtype=np.uint8),
                         "actions": rng.integers(1, 4, T), "rewards": rng.normal(size=T),
                         "terminations": np.eye(T, dtype=bool)[-1], "truncations": np.zeros(T, bool)})
    write_dataset("test/hwc-v0", iter(episodes), obs_space, act_space, algorithm_name="noise")
    store, dataset, layout = minari_store("test/hwc-v0", tmp_path / "store")
    assert layout.hwc and layout.obs_shape == (3, 40, 48) and layout.action_start == 1
    for i, ep in enumerate(episodes):
        mine = store.episode(i)
        assert np.array_equal(mine["obs"], ep["observations"][:-1].transpose(0, 3, 1, 2))
        assert np.array_equal(mine["action"], ep["actions"] - 1)
    model_kw = encoder_kwargs(layout, store)
    enc = build_encoders("minari", 16, **model_kw)
    assert enc.embed_obs(torch.rand(2, 3, 3, 40, 48)).shape == (2, 3, 16)

    discrete = layout_of(gym.spaces.Discrete(5, start=-2), gym.spaces.Box(-2, 2, (2,)))
    assert np.array_equal(discrete.observation(np.array([-2, 2])), [[0.0], [4.0]])
    enc = build_encoders("minari", 8, **encoder_kwargs(discrete, store))
    assert enc.embed_obs(torch.tensor([[[0.0], [4.0]]])).shape == (1, 2, 8)

    class Dummy(gym.Env):
        observation_space, action_space = obs_space, act_space

        def reset(self, seed=None, options=None):
            return np.zeros((40, 48, 3), np.uint8), {}

        def step(self, action):
            self.last = action
            return np.full((40, 48, 3), 7, np.uint8), 0.0, False, False, {}

    env = StoredLayout(Dummy(), layout)
    assert env.reset()[0].shape == (3, 40, 48) and env.observation_space.shape == (3, 40, 48)
    assert env.step(0)[0].shape == (3, 40, 48) and env.unwrapped.last == 1


def test_minari_encoders_map_continuous_actions_to_and_from_the_box():
    to_unit, back = Bounds([0.0, -4.0], [2.0, 4.0], True), Bounds([0.0, -4.0], [2.0, 4.0], False)
    a = torch.tensor([[0.0, -4.0], [2.0, 4.0], [1.0, 0.0]])
    assert torch.allclose(to_unit(a), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    assert torch.allclose(back(to_unit(a)), a)
    enc = build_encoders("minari", 8, obs_shape=[3], discrete=False, n_actions=2, action_low=[0.0, -4.0],
                         action_high=[2.0, 4.0], obs_nvec=[0, 0, 0], obs_mean=[1, 2, 3], obs_std=[1, 1, 1])
    out = enc.head(torch.randn(50, 8) * 10)
    assert (out[:, 0] >= 0).all() and (out[:, 0] <= 2).all() and (out[:, 1].abs() <= 4).all()
    unbounded = build_encoders("minari", 8, obs_shape=[3], discrete=False, n_actions=2,
                               action_low=[-np.inf] * 2, action_high=[np.inf] * 2)
    assert isinstance(unbounded.head, torch.nn.Linear)
    assert image_padding((3, 84, 84)) == 0 and image_padding((3, 7, 7)) == 2
    with pytest.raises(ValueError, match="too small"):
        image_padding((3, 5, 5))


# ------------------------------------------------------------------------------------------ errors
def test_a_missing_dataset_is_one_line_naming_it_and_where_minari_looks(minari_root, tmp_path, capsys):
    from Minari.train_minari import main
    from RATE_model.cli import run_main

    with pytest.raises(DataError, match=r"no Minari dataset 'mujoco/hopper/medium-v0' in .*MINARI_DATASETS_PATH"):
        load("mujoco/hopper/medium-v0")
    with pytest.raises(SystemExit) as e:
        run_main(main, ["--minari_dataset", "mujoco/hopper/medium-v0", "--smoke", "--runs_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "Nothing is downloaded" in err
    assert not (minari_root / "mujoco").exists()  # no download attempt left a folder


def test_a_damaged_dataset_and_an_env_that_cannot_be_built_are_one_line_errors(minari_root, tmp_path):
    from Minari.train_minari import main

    collect(gym.make("CartPole-v1", max_episode_steps=10), "test/cartpole/damaged-v0", 3)
    data = minari_root / "test" / "cartpole" / "damaged-v0" / "data" / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"test/cartpole/damaged-v0.*damaged or unreadable"):
        minari_store("test/cartpole/damaged-v0", tmp_path / "store1")

    collect(gym.make("CartPole-v1", max_episode_steps=10), "test/cartpole/elsewhere-v0", 2)
    meta_file = minari_root / "test" / "cartpole" / "elsewhere-v0" / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    spec = json.loads(meta["env_spec"])
    spec.update(id="Elsewhere-v0", entry_point="no_such_simulator:Env")
    meta["env_spec"] = json.dumps(spec)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"env Elsewhere-v0 cannot be built here"):
        main(["--minari_dataset", "test/cartpole/elsewhere-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
              "--store_dir", str(tmp_path / "store2")])
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_unsupported_spaces_are_named():
    with pytest.raises(DataError, match="Dict"):
        layout_of(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2))
    with pytest.raises(DataError, match="action space"):
        layout_of(gym.spaces.Box(0, 1, (3,)), gym.spaces.MultiBinary(3))


def test_the_mujoco_script_refuses_a_dataset_of_another_env(minari_root, tmp_path):
    from MuJoCo.train_rate_mujoco_ca import main
    from RATE_model.config import ConfigError

    collect(gym.make("CartPole-v1", max_episode_steps=10), "test/cartpole/random-v0", 2)
    with pytest.raises(ConfigError, match="halfcheetah, walker2d, hopper"):
        main(["--minari_dataset", "test/cartpole/random-v0", "--smoke", "--runs_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="drop --env_id"):
        main(["--minari_dataset", "test/hopper/random-v0", "--env_id", "6", "--smoke", "--runs_dir", str(tmp_path)])


# ------------------------------------------------------------------------------------------ writing
def test_write_dataset_streams_exact_pixels_with_metadata_and_never_overwrites(minari_root):
    rng = np.random.default_rng(1)
    space = gym.spaces.Box(0, 255, (3, 64, 112), np.uint8)
    eps = [minari_episode(rng.integers(0, 256, (T, 3, 64, 112), dtype=np.uint8), rng.integers(0, 5, T),
                          rng.random(T), terminated=T == 4, truncated=T != 4) for T in (4, 9)]
    write_dataset("rate/noise/pixels-v0", iter(eps), space, gym.spaces.Discrete(5), algorithm_name="noise",
                  author="A. Author", author_email="a@example.org", code_permalink="https://example.org/rate",
                  description="random pixels")
    dataset = minari.load_dataset("rate/noise/pixels-v0", download=False)
    assert dataset.total_episodes == 2 and dataset.total_steps == 13
    for mine, theirs in zip(eps, dataset.iterate_episodes(), strict=True):
        assert np.array_equal(theirs.observations, mine["observations"])  # lossless: no JPEG
        assert np.array_equal(theirs.actions, mine["actions"]) and np.array_equal(theirs.rewards, mine["rewards"])
        assert np.array_equal(theirs.observations[-1], mine["observations"][-2])  # the final one repeats the last
    assert [bool(e.terminations[-1]) for e in dataset.iterate_episodes()] == [True, False]
    meta = dataset.storage.metadata
    assert meta["algorithm_name"] == "noise" and meta["author"] == {"A. Author"} and meta["jpeg_encoding"] is False
    assert meta["author_email"] == {"a@example.org"} and meta["code_permalink"] == "https://example.org/rate"
    with pytest.raises(DataError, match="already exists"):
        write_dataset("rate/noise/pixels-v0", iter(eps), space, gym.spaces.Discrete(5))

    def broken():
        yield eps[0]
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        write_dataset("rate/noise/broken-v0", broken(), space, gym.spaces.Discrete(5))
    assert not (minari_root / "rate" / "noise" / "broken-v0").exists()  # nothing half-written left behind


def test_our_hopper_medium_exported_to_minari_reads_back_the_same_steps(minari_root, tmp_path):
    """The MuJoCo generator's hopper-medium (tiny SAC budget) with --format both: Minari reads the D4RL file's
    complete episodes, final observations and ends; our store from the Minari copy equals the one from the file."""
    pytest.importorskip("stable_baselines3")
    from MuJoCo.get_data.generate_d4rl import main
    from MuJoCo.MuJoCo_src.mujoco_data import mujoco_store, split_d4rl

    out = tmp_path / "gen"
    main(["--env", "hopper", "--dataset", "medium", "--steps", "300", "--transitions", "600", "--eval_every", "150",
          "--eval_episodes", "2", "--max_episode_steps", "100", "--out_dir", str(out), "--format", "both",
          "--dataset_id", "rate/hopper/medium-v0", "--author", "tests"])
    ours = split_d4rl(out / "hopper-medium-v5.hdf5", ("observations", "next_observations", "actions", "rewards",
                                                       "terminals", "timeouts"))
    dataset = minari.load_dataset("rate/hopper/medium-v0", download=False)
    assert dataset.total_episodes == len(ours) and dataset.env_spec.id == "Hopper-v5"
    assert dataset.env_spec.max_episode_steps == 100 and dataset.storage.metadata["author"] == {"tests"}
    for mine, theirs in zip(ours, dataset.iterate_episodes(), strict=True):
        assert np.array_equal(theirs.observations[:-1], mine["observations"])
        assert np.array_equal(theirs.observations[-1], mine["next_observations"][-1])
        assert np.array_equal(theirs.actions, mine["actions"]) and np.array_equal(theirs.rewards, mine["rewards"])
        assert theirs.terminations[-1] == mine["terminals"][-1] and theirs.truncations[-1] == mine["timeouts"][-1]
    from_file = mujoco_store(out / "hopper-medium-v5.hdf5", "hopper", tmp_path / "s1")
    from_minari, _, _ = minari_store("rate/hopper/medium-v0", tmp_path / "s2")
    for k in ("obs", "action", "reward", "rtg"):
        assert np.array_equal(from_file.in_memory().fields[k], from_minari.in_memory().fields[k]), k
    assert dataset.recover_environment().spec.id == "Hopper-v5"

    # the same steps train the same model: a run on the Minari copy equals a run on the D4RL-layout file
    from MuJoCo.train_rate_mujoco_ca import SMOKE
    from MuJoCo.train_rate_mujoco_ca import main as train

    small = [f"--{k}={v}" for k, v in SMOKE.items()] + ["--seed", "1", "--no_wandb", "--eval_max_steps", "40"]
    a = train([*small, "--env_id", "6", "--dataset_file", str(out / "hopper-medium-v5.hdf5"), "--runs_dir",
               str(tmp_path / "ra"), "--store_dir", str(tmp_path / "sa")])["runs"]["1"]["metrics"]
    b = train([*small, "--minari_dataset", "rate/hopper/medium-v0", "--runs_dir", str(tmp_path / "rb"),
               "--store_dir", str(tmp_path / "sb")])["runs"]["1"]["metrics"]
    assert a["episodes"] == b["episodes"]  # every evaluation episode's return, identical
    losses = [[json.loads(ln) for ln in (r / "mujoco" / "RATE" / "seed_1" / "metrics.jsonl").read_text().splitlines()]
              for r in (tmp_path / "ra", tmp_path / "rb")]
    train_losses = [[row["losses/train_loss"] for row in rows if "losses/train_loss" in row] for rows in losses]
    assert train_losses[0] and train_losses[0] == train_losses[1]


def test_the_vizdoom_generator_exports_exact_pixels_and_minari_alone_leaves_no_own_files(minari_root, tmp_path):
    pytest.importorskip("vizdoom")
    from RATE_model.datafiles import load_npz
    from VizDoom.get_data.generate_iter_data import main
    from VizDoom.VizDoom_src.vizdoom_env import GYM_ID

    args = ["--n_episodes", "3", "--n_steps", "15", "--workers", "1"]
    stats = main([*args, "--out_dir", str(tmp_path / "own"), "--format", "both", "--dataset_id", "rate/vizdoom/t-v0"])
    assert stats["minari_dataset"] == "rate/vizdoom/t-v0"
    dataset = minari.load_dataset("rate/vizdoom/t-v0", download=False)
    assert dataset.env_spec.id == GYM_ID and dataset.env_spec.kwargs == {"timeout": 15, "mark_colour": False}
    for i, theirs in enumerate(dataset.iterate_episodes()):
        mine = load_npz(tmp_path / "own" / f"episode_{i:06d}.npz", ("obs", "action", "reward"))
        assert np.array_equal(theirs.observations[:-1], mine["obs"])  # exact pixels
        assert np.array_equal(theirs.actions, mine["action"]) and np.allclose(theirs.rewards, mine["reward"])
        died = len(mine["action"]) < 15
        assert theirs.terminations[-1] == died and theirs.truncations[-1] == (not died)
    assert dataset.recover_environment().observation_space.shape == (3, 64, 112)

    main([*args, "--out_dir", str(tmp_path / "unused"), "--format", "minari", "--dataset_id", "rate/vizdoom/u-v0"])
    again = minari.load_dataset("rate/vizdoom/u-v0", download=False)
    for a, b in zip(dataset.iterate_episodes(), again.iterate_episodes(), strict=True):
        assert np.array_equal(a.observations, b.observations)  # the same seeds make the same episodes
    assert not (tmp_path / "unused").exists() and not (minari_root / ".rate-episodes" / "rate__vizdoom__u-v0").exists()


def test_export_flags_are_checked_before_collecting(minari_root, tmp_path, capsys):
    pytest.importorskip("vizdoom")
    from VizDoom.get_data.generate_iter_data import main

    for argv, message in ((["--format", "minari"], "needs --dataset_id"),
                          (["--dataset_id", "a/b-v0"], "needs --format minari or both"),
                          (["--format", "both", "--dataset_id", "t/x-v0"], "is not a Minari id")):
        with pytest.raises(SystemExit):
            main(["--n_episodes", "1", "--out_dir", str(tmp_path / "x"), *argv])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_dataset_without_env_spec_evaluates_on_our_mujoco_env_and_is_refused_by_the_generic_script(minari_root,
                                                                                                     tmp_path):
    pytest.importorskip("mujoco")
    from Minari.train_minari import main as generic
    from MuJoCo.train_rate_mujoco_ca import main

    rng = np.random.default_rng(2)
    eps = [minari_episode(rng.normal(size=(T, 11)), rng.uniform(-1, 1, (T, 3)), rng.random(T), False, True)
           for T in (20, 30)]
    write_dataset("test/hopper/nospec-v0", iter(eps), gym.spaces.Box(-np.inf, np.inf, (11,), np.float64),
                  gym.spaces.Box(-1, 1, (3,), np.float32))
    out = main(["--minari_dataset", "test/hopper/nospec-v0", "--smoke", "--runs_dir", str(tmp_path / "runs"),
                "--data_dir", str(tmp_path / "data"), "--no_wandb"])
    assert out["runs"]["1"]["metrics"]["episodes_n"] == 2  # on gymnasium's Hopper-v5
    with pytest.raises(DataError, match="records no env spec"):
        generic(["--minari_dataset", "test/hopper/nospec-v0", "--smoke", "--runs_dir", str(tmp_path / "runs2"),
                 "--store_dir", str(tmp_path / "store")])


def test_readme_minari_lines_run(minari_root, tmp_path):
    """The README's Minari commands, verbatim plus small-budget flags appended (the last value of a flag wins):
    export ViZDoom and hopper-medium, load with Minari, train on them and on a collected mujoco/hopper dataset."""
    pytest.importorskip("vizdoom")
    pytest.importorskip("stable_baselines3")
    import os
    import re
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text()
    pattern = r"^(python3 [^\n]*(?:minari|Minari|dataset_id)[^\n]*)$"
    lines = [ln.split("  #")[0].strip() for ln in re.findall(pattern, text, re.M)]
    small = {"generate_d4rl.py": ["--steps", "300", "--transitions", "600", "--eval_every", "150", "--eval_episodes",
                                  "2", "--max_episode_steps", "100", "--out_dir", str(tmp_path / "mujoco")],
             "generate_iter_data.py": ["--n_episodes", "3", "--n_steps", "15", "--workers", "1"],
             "train_": ["--smoke", "--no_wandb", "--runs_dir", str(tmp_path / "runs")]}
    collect(gym.make("Hopper-v5", max_episode_steps=30), "mujoco/hopper/medium-v0", 3)  # stands in for Minari's
    order = ["generate_d4rl.py", "generate_iter_data.py", "import minari", "train_rate_mujoco_ca.py",
             "train_minari.py --minari_dataset rate/"]
    ran = []
    for key in order:
        line = next(ln for ln in lines if key in ln)
        argv = shlex.split(line)[1:]
        argv += next((v for k, v in small.items() if k in line), [])
        if "train_rate_mujoco_ca.py" in line:
            argv += ["--data_dir", str(tmp_path / "mujoco")]
        out = subprocess.run([sys.executable, *argv], cwd=root, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)})
        assert out.returncode == 0, (line, out.stderr[-2000:])
        ran.append(key)
    assert "rate/hopper/medium-v0" in subprocess.run(
        [sys.executable, "-c", "import minari; print(minari.list_local_datasets())"], capture_output=True, text=True,
        env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}).stdout
    assert len(ran) == len(order)


def test_example_datasets_hold_controller_episodes_with_recoverable_envs(minari_root):
    from Minari.get_data.make_examples import EXAMPLES, main

    rows = main(["--n_episodes", "3", "--noise", "0.1"])
    by_id = {r["dataset"]: r for r in rows}
    assert by_id["rate-examples/cartpole/controller-v0"]["return"] > 150  # a random policy: about 20
    assert by_id["rate-examples/mountaincar/controller-v0"]["return"] > 50  # reaches the flag
    for dataset_id, (gym_id, _, _) in EXAMPLES.items():
        dataset = minari.load_dataset(dataset_id, download=False)
        assert dataset.total_episodes == 3 and dataset.env_spec.id == gym_id
        for ep in dataset.iterate_episodes():
            assert ep.terminations[-1] or ep.truncations[-1]
    assert main(["--n_episodes", "3"])[0]["kept"]  # an existing dataset is kept
