"""MuJoCo / D4RL data: the D4RL hdf5 reader (episode ends at terminals | timeouts, the 1000-step rule without
timeouts, the dropped trailing episode), the reference's pickle reader, one-line DataErrors for bad files, the
--env_id table, file names and where datasets are looked up (data folder precedence, --dataset_file), D4RL's
normalised score, the episode store with its state statistics, and Decision Transformer's windows with padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

from MuJoCo import train_rate_mujoco_ca as train  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_data import (  # noqa: E402
    DATA_DIR,
    candidates,
    d4rl_filename,
    data_folder,
    find_dataset,
    mujoco_dataset,
    mujoco_store,
    read_d4rl,
    read_dataset,
    read_reference_pickle,
    split_d4rl,
    state_stats,
)
from MuJoCo.MuJoCo_src.mujoco_env import (  # noqa: E402
    DATASETS,
    DIMS,
    REF_SCORES,
    TARGET_RETURNS,
    dataset_of,
    normalised_score,
    split_name,
)
from RATE_model.config import ConfigError  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from tests.mujoco_helpers import (  # noqa: E402
    PAPER_TABLE,
    ROOT,
    assert_same_episodes,
    d4rl_arrays,
    one_line,
    one_thread,  # noqa: F401 (module-wide fixture)
    write_d4rl_file,
    write_h5,
    write_pickle,
)


# ------------------------------------------------------------------------------------------ D4RL files
def test_d4rl_episodes_end_at_terminals_or_timeouts_and_the_trailing_one_is_dropped(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    want = write_d4rl_file(path, [5, 7, 3, 4], ["terminal", "timeout", "timeout", "terminal"], tail=6)
    got = read_d4rl(path, "hopper")
    assert [len(ep["reward"]) for ep in got] == [5, 7, 3, 4]  # the 6 unfinished steps are dropped
    assert_same_episodes(got, want)
    # split_d4rl gives any extra field, cut the same way
    split = split_d4rl(path, ("observations", "terminals", "timeouts", "next_observations"))
    assert [ep["terminals"].tolist() for ep in split][:2] == [[False] * 4 + [True], [False] * 7]
    assert split[1]["timeouts"][-1] and set(split[0]) == {"observations", "terminals", "timeouts",
                                                          "next_observations"}


def test_without_timeouts_an_episode_lasts_at_most_1000_steps(tmp_path):
    data, _ = d4rl_arrays([2500], ["timeout"])
    data["timeouts"][:] = False  # no ends at all: 2 x 1000 steps, the last 500 dropped
    got = read_d4rl(write_h5(tmp_path / "a.hdf5", data, skip=("timeouts",)), "hopper")
    assert [len(ep["reward"]) for ep in got] == [1000, 1000]
    np.testing.assert_array_equal(got[1]["obs"], data["observations"][1000:2000])
    data["terminals"][299] = True  # a terminal restarts the count
    got = read_d4rl(write_h5(tmp_path / "b.hdf5", data, skip=("timeouts",)), "hopper")
    assert [len(ep["reward"]) for ep in got] == [300, 1000, 1000]
    np.testing.assert_array_equal(got[2]["reward"], data["rewards"][1300:2300])


def test_a_file_without_a_complete_episode_is_a_data_error(tmp_path):
    data, _ = d4rl_arrays([5], ["terminal"])
    data["terminals"][:] = False
    path = write_h5(tmp_path / "open.hdf5", data)
    with pytest.raises(DataError, match=r"open\.hdf5 holds no complete episode") as e:
        read_d4rl(path, "hopper")
    one_line(e)


def test_reference_pickle_gives_the_same_episodes_as_the_hdf5(tmp_path):
    h5 = tmp_path / "hopper_medium_replay-v2.hdf5"
    want = write_d4rl_file(h5, [4, 9, 6], ["terminal", "timeout", "terminal"], tail=3)
    fields = ("observations", "next_observations", "actions", "rewards", "terminals")
    pkl = write_pickle(tmp_path / "hopper-medium-replay-v2.pkl", split_d4rl(h5, fields))
    assert_same_episodes(read_reference_pickle(pkl, "hopper"), want)
    assert_same_episodes(read_dataset(pkl, "hopper"), read_dataset(h5, "hopper"))  # dispatch by suffix


def test_malformed_pickles_are_one_line_errors_naming_the_file(tmp_path):
    _, eps = d4rl_arrays([4, 5], ["terminal"] * 2)
    good = [{"observations": e["obs"], "actions": e["action"], "rewards": e["reward"]} for e in eps]
    cases = [
        ({"observations": eps[0]["obs"]}, r"must hold a non-empty list of trajectory dicts, found dict"),
        ([], r"must hold a non-empty list"),
        ([good[0], {k: v for k, v in good[1].items() if k != "rewards"}], r"trajectory 1 lacks \['rewards'\]"),
        ([good[0], "not a dict"], r"trajectory 1 lacks \['a dict'\]"),
        ([good[0], {**good[1], "observations": np.zeros((5, 17), np.float32)}],
         r"trajectory 1: observations has shape \(5, 17\), expected \(5, 11\)"),
        ([{**good[0], "actions": good[0]["actions"][:3]}], r"trajectory 0: actions has shape \(3, 3\), expected"),
    ]
    for i, (obj, message) in enumerate(cases):
        path = write_pickle(tmp_path / f"bad{i}.pkl", obj)
        with pytest.raises(DataError, match=message) as e:
            read_reference_pickle(path, "hopper")
        assert str(path) in one_line(e)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x05not a pickle")
    with pytest.raises(DataError, match=r"garbage\.pkl is corrupt or unreadable") as e:
        read_dataset(garbage, "hopper")
    one_line(e)


def test_bad_hdf5_files_are_one_line_errors_naming_file_and_field(tmp_path):
    def error_of(data, skip=(), env="hopper"):
        path = write_h5(tmp_path / "x.hdf5", data, skip)
        with pytest.raises(DataError) as e:
            read_d4rl(path, env)
        text = one_line(e)
        assert str(path) in text
        return text

    data, _ = d4rl_arrays([6, 6], ["terminal", "timeout"])
    nan_obs = {**data, "observations": data["observations"].copy()}
    nan_obs["observations"][7, 2] = np.nan
    assert "observations holds NaN or inf (first at index (7, 2))" in error_of(nan_obs)
    nan_reward = {**data, "rewards": data["rewards"].copy()}
    nan_reward["rewards"][3] = np.inf
    assert "rewards holds NaN or inf (first at index (3,))" in error_of(nan_reward)
    assert "observations has shape (12, 11), expected (12, 17)" in error_of(data, env="walker2d")
    short = {**data, "actions": data["actions"][:-1]}
    assert "actions has shape (11, 3), expected (12, 3)" in error_of(short)
    assert "lacks datasets ['terminals']" in error_of(data, skip=("terminals",))

    big, _ = d4rl_arrays([400, 400], ["terminal", "timeout"])
    path = write_h5(tmp_path / "cut.hdf5", big)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.hdf5 is corrupt or unreadable") as e:
        read_d4rl(path, "hopper")
    one_line(e)
    (tmp_path / "foreign.hdf5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"foreign\.hdf5 is corrupt or unreadable") as e:
        read_dataset(tmp_path / "foreign.hdf5", "hopper")
    with pytest.raises(DataError, match=r"missing\.hdf5 does not exist") as e:
        read_dataset(tmp_path / "missing.hdf5", "hopper")
    one_line(e)



# ------------------------------------------------------------------------------------------ names
def test_env_id_table_is_the_paper_readmes():
    assert list(DATASETS) == PAPER_TABLE
    assert [dataset_of(i) for i in range(12)] == PAPER_TABLE
    assert split_name("hopper-medium-replay") == ("hopper", "medium-replay")
    assert split_name("walker2d-medium-expert") == ("walker2d", "medium-expert")
    with pytest.raises(ValueError, match="--env_id must be 0..11, got 12"):
        dataset_of(12)
    with pytest.raises(ValueError, match="unknown MuJoCo dataset 'hopper-random'"):
        split_name("hopper-random")
    assert DIMS == {"halfcheetah": (17, 6), "walker2d": (17, 6), "hopper": (11, 3)}
    assert TARGET_RETURNS == {"halfcheetah": (6000.0, 12000.0), "walker2d": (5000.0,), "hopper": (3600.0,)}


def test_d4rl_file_names_and_lookup_order(tmp_path):
    names = [d4rl_filename(n) for n in DATASETS]
    assert names == ["halfcheetah_medium-v2.hdf5", "halfcheetah_medium_replay-v2.hdf5", "halfcheetah_expert-v2.hdf5",
                     "walker2d_medium-v2.hdf5", "walker2d_medium_replay-v2.hdf5", "walker2d_expert-v2.hdf5",
                     "hopper_medium-v2.hdf5", "hopper_medium_replay-v2.hdf5", "hopper_expert-v2.hdf5",
                     "halfcheetah_medium_expert-v2.hdf5", "walker2d_medium_expert-v2.hdf5",
                     "hopper_medium_expert-v2.hdf5"]
    want = [tmp_path / "hopper-medium-replay-v2.pkl", tmp_path / "hopper_medium_replay-v2.hdf5",
            tmp_path / "hopper-medium-replay-v5.hdf5"]
    assert candidates(tmp_path, "hopper-medium-replay") == want
    assert find_dataset(tmp_path, "hopper-medium-replay") is None
    for p in want:
        p.touch()
    (tmp_path / "hopper-medium-v2.pkl").touch()  # another dataset's file is never taken
    for p in want:  # the first existing one wins
        assert find_dataset(tmp_path, "hopper-medium-replay") == p
        p.unlink()
    (tmp_path / "hopper_medium_replay-v2.hdf5").mkdir()  # a folder is not a file
    assert find_dataset(tmp_path, "hopper-medium-replay") is None


def test_normalised_score_uses_d4rls_reference_returns():
    assert REF_SCORES == {"halfcheetah": (-280.178953, 12135.0), "walker2d": (1.629008, 4592.3),
                          "hopper": (-20.272305, 3234.3)}
    for env, (low, high) in REF_SCORES.items():
        assert normalised_score(env, low) == pytest.approx(0.0, abs=1e-9)
        assert normalised_score(env, high) == pytest.approx(100.0)
    # by hand: 100 * (1500 + 20.272305) / (3234.3 + 20.272305) = 152027.2305 / 3254.572305 = 46.71189...
    assert normalised_score("hopper", 1500.0) == pytest.approx(46.711892, abs=1e-5)
    assert normalised_score("halfcheetah", 6000.0) == pytest.approx(100 * 6280.178953 / 12415.178953)
    np.testing.assert_allclose(normalised_score("walker2d", np.array([1.629008, 2296.964504])), [0.0, 50.0])



# ------------------------------------------------------------------------------------------ data folder
def test_data_folder_comes_from_the_flag_then_wandb_config_then_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_folder(None) == DATA_DIR == ROOT / "MuJoCo" / "MuJoCo_data"
    (tmp_path / "wandb_config.yaml").write_text("wandb_api: x\nmujoco:\n  data_dir_prefix: '/mnt/d4rl/'\n")
    assert data_folder(None) == Path("/mnt/d4rl/")
    assert data_folder(tmp_path / "mine") == tmp_path / "mine"
    args, _ = train.parse_args(["--env_id", "7", "--data_dir_prefix", str(tmp_path / "mine")])
    assert args.data_dir == tmp_path / "mine"
    # the configured folder is where the train script looks
    (tmp_path / "wandb_config.yaml").write_text(f"mujoco:\n  data_dir_prefix: {tmp_path / 'configured'}\n")
    (tmp_path / "configured").mkdir()
    write_d4rl_file(tmp_path / "configured" / "hopper_medium_replay-v2.hdf5", [4])
    args, _ = train.parse_args(["--env_id", "7"])
    assert train.dataset_source(args, "hopper-medium-replay") == (
        tmp_path / "configured" / "hopper_medium_replay-v2.hdf5", tmp_path / "configured")
    (tmp_path / "wandb_config.yaml").write_text("mujoco: [1, 2]\n")
    with pytest.raises(ConfigError, match="wandb_config.yaml"):
        data_folder(None)


def test_unparsable_wandb_config_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wandb_config.yaml").write_text("mujoco: [\n")
    with pytest.raises(ConfigError, match="wandb_config.yaml"):
        data_folder(None)


def test_dataset_file_flag_is_read_instead_of_the_lookup(tmp_path):
    pkl = write_pickle(tmp_path / "mine.pkl", [{"observations": np.zeros((3, 11), np.float32),
                                                "actions": np.zeros((3, 3), np.float32),
                                                "rewards": np.ones(3, np.float32)}])
    args, _ = train.parse_args(["--env_id", "6", "--data_dir", str(tmp_path / "nowhere"), "--dataset_file", str(pkl)])
    assert train.dataset_source(args, "hopper-medium") == (pkl, tmp_path)
    args, _ = train.parse_args(["--env_id", "6", "--dataset_file", str(tmp_path / "gone.hdf5")])
    with pytest.raises(DataError, match=r"--dataset_file .*gone\.hdf5 does not exist"):
        train.dataset_source(args, "hopper-medium")



# ------------------------------------------------------------------------------------------ store and windows
def test_state_stats_are_the_mean_and_std_of_every_step_read_in_chunks(tmp_path):
    path = tmp_path / "walker2d_medium-v2.hdf5"
    eps = write_d4rl_file(path, [13, 40, 7, 21], tail=5, state_dim=17, act_dim=6)
    store = mujoco_store(path, "walker2d", tmp_path / "store")
    assert store.n_steps == 81 and store.lengths.tolist() == [13, 40, 7, 21]
    all_obs = np.concatenate([e["obs"] for e in eps]).astype(np.float64)
    for chunk in (7, 81, 1 << 18):
        mean, std = state_stats(store, chunk=chunk)
        assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (17,)
        np.testing.assert_allclose(mean, all_obs.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std, all_obs.std(0) + 1e-6, rtol=1e-5, atol=1e-6)
    # a constant state dimension gets std 1e-6 (no division by zero)
    const = tmp_path / "const.hdf5"
    data, _ = d4rl_arrays([10, 10], ["terminal"] * 2)
    data["observations"][:, 4] = 3.0
    store = mujoco_store(write_h5(const, data), "hopper", tmp_path / "store_const")
    mean, std = state_stats(store, chunk=3)
    assert mean[4] == pytest.approx(3.0) and std[4] == pytest.approx(1e-6, rel=1e-3)


def test_store_is_reused_and_rebuilt_when_the_file_changes(tmp_path, capsys):
    path = tmp_path / "hopper_expert-v2.hdf5"
    write_d4rl_file(path, [5, 6])
    a = mujoco_store(path, "hopper", tmp_path / "store")
    stamp = (a.path / "meta.json").stat().st_mtime_ns
    b = mujoco_store(path, "hopper", tmp_path / "store")
    assert (b.path / "meta.json").stat().st_mtime_ns == stamp and b.lengths.tolist() == [5, 6]
    write_d4rl_file(path, [5, 6, 9], seed=1)
    c = mujoco_store(path, "hopper", tmp_path / "store")
    assert c.lengths.tolist() == [5, 6, 9] and "rebuilding" in capsys.readouterr().err
    np.testing.assert_allclose(c.episode(2)["rtg"], np.cumsum(c.episode(2)["reward"][::-1])[::-1], rtol=1e-5,
                               atol=1e-5)


def test_windows_keep_padded_tails_with_scaled_returns_to_go(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    eps = write_d4rl_file(path, [3, 10, 30], tail=2)
    store = mujoco_store(path, "hopper", tmp_path / "store")
    data = mujoco_dataset(store, window=8, n_windows=50)
    assert len(data) == 50
    w = data[np.array([[1, 6], [0, 0], [2, 4]])]
    assert w["obs"].shape == (3, 8, 11) and w["action"].shape == (3, 8, 3) and w["rtg"].shape == (3, 8, 1)
    assert w["action"].dtype == torch.float32
    assert w["valid"].tolist() == [[True] * 4 + [False] * 4, [True] * 3 + [False] * 5, [True] * 8]
    pad = ~w["valid"]
    assert (w["action"][pad] == -10).all() and (w["rtg"][pad] == 0).all()
    ep1 = eps[1]
    np.testing.assert_array_equal(w["obs"][0, :4].numpy(), ep1["obs"][6:])
    np.testing.assert_array_equal(w["obs"][0, 4:].numpy(), np.repeat(ep1["obs"][-1:], 4, 0))  # last state repeated
    np.testing.assert_array_equal(w["action"][0, :4].numpy(), ep1["action"][6:])
    suffix = np.cumsum(ep1["reward"][::-1])[::-1] / 1000
    np.testing.assert_allclose(w["rtg"][0, :4, 0].numpy(), suffix[6:], rtol=1e-5, atol=1e-7)
    ep2 = eps[2]
    np.testing.assert_allclose(w["rtg"][2, :, 0].numpy(), (np.cumsum(ep2["reward"][::-1])[::-1] / 1000)[4:12],
                               rtol=1e-5, atol=1e-7)


def test_window_starts_are_drawn_in_proportion_to_episode_length(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [10, 30, 60])
    store = mujoco_store(path, "hopper", tmp_path / "store")
    covering = mujoco_dataset(store, window=20, n_windows=20_000).epoch_windows(3, 0)  # the default draw
    share = np.bincount(covering[:, 0], minlength=3) / len(covering)
    np.testing.assert_allclose(share, np.array([29, 49, 79]) / 157, atol=0.02)  # ∝ length + window - 1
    assert (covering[covering[:, 0] == 2, 1] == 0).mean() == pytest.approx(20 / 79, abs=0.03)
    assert train.parse_args(["--env_id", "6"])[0].window_starts == "covering"
    data = mujoco_dataset(store, window=20, n_windows=20_000, starts="uniform")  # Decision Transformer's
    keys = data.epoch_windows(3, 0)
    assert keys.shape == (20_000, 2)
    np.testing.assert_array_equal(keys, data.epoch_windows(3, 0))  # a pure function of (seed, epoch)
    assert not np.array_equal(keys, data.epoch_windows(3, 1))
    share = np.bincount(keys[:, 0], minlength=3) / len(keys)
    np.testing.assert_allclose(share, [0.1, 0.3, 0.6], atol=0.02)
    assert (keys[:, 1] < store.lengths[keys[:, 0]]).all() and (keys[:, 1] >= 0).all()
    starts = keys[keys[:, 0] == 2, 1]
    counts = np.bincount(starts, minlength=60)
    assert counts.min() > 0 and counts.max() < 2.2 * counts.mean()  # every start, roughly uniform
    assert (starts > 60 - 20).mean() == pytest.approx(19 / 60, abs=0.04)  # windows past the end are kept

