"""MuJoCo / D4RL: the D4RL hdf5 reader (episode ends at terminals | timeouts, the 1000-step rule without
timeouts, the dropped trailing episode), the reference's pickle reader, one-line DataErrors for bad files,
where datasets are looked up (file names, data folder precedence, the error without data), the --env_id
table and D4RL's normalised score, state normalisation inside the model (statistics, equivalence, saved
with the weights), Decision Transformer's windows with padding, continuous-action incremental decoding,
the SAC generator -> reader round trip and its resume rules, download_d4rl_datasets.py, evaluate(), and
the README lines (train with --smoke, download) run verbatim."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

import h5py  # noqa: E402

import download_d4rl_datasets as download  # noqa: E402
from MuJoCo import train_rate_mujoco_ca as train  # noqa: E402
from MuJoCo.get_data import generate_d4rl as gen  # noqa: E402
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
    make_env,
    normalised_score,
    split_name,
)
from MuJoCo.MuJoCo_src.mujoco_eval import evaluate  # noqa: E402
from RATE_model import RATE  # noqa: E402
from RATE_model.config import ConfigError  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.rollout import Decoder, rollout  # noqa: E402
from RATE_model.vector import GymVectorEnv  # noqa: E402
from tests.helpers import MODES, run_segments, tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The MuJoCo lines of the paper README, verbatim.
DOWNLOAD_LINE = "python download_d4rl_datasets.py"
TRAIN_LINE = ("python3 MuJoCo/train_rate_mujoco_ca.py --env_id 0 --number_of_segments 3 --segment_length 20 "
              "--num_mem_tokens 5 --n_head_ca 1 --mrv_act 'relu' --skip_dec_ffn --seed 123")
README_LINES = [DOWNLOAD_LINE, TRAIN_LINE]

# the paper README's --env_id table, 0..11
PAPER_TABLE = ["halfcheetah-medium", "halfcheetah-medium-replay", "halfcheetah-expert",
               "walker2d-medium", "walker2d-medium-replay", "walker2d-expert",
               "hopper-medium", "hopper-medium-replay", "hopper-expert",
               "halfcheetah-medium-expert", "walker2d-medium-expert", "hopper-medium-expert"]
ENV_KEYS = ("enc.obs.0.mean", "enc.obs.0.std")  # the state statistics in a mujoco model's state_dict
QUIET = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_thread


def one_line(e: object) -> str:
    """The text of an error (a pytest ExceptionInfo, an exception or captured stderr), which must be one line."""
    text = str(e.value if hasattr(e, "value") else e).strip()
    assert "\n" not in text, text
    return text


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a 2-core machine torch's idle intra-op threads spin and starve the evaluation's
    env worker processes (the --smoke run took 60 s instead of 6 s with 2 threads), and this file's models
    are too small to gain from a second thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ D4RL files
def d4rl_arrays(lengths: list[int], ends: list[str], tail: int = 0, state_dim: int = 11, act_dim: int = 3,
                seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """D4RL-layout arrays of episodes of ``lengths`` ending in ``ends`` ("terminal" | "timeout"), plus
    ``tail`` steps of an unfinished episode; and the complete episodes as the reader should return them."""
    rng = np.random.default_rng(seed)
    n = sum(lengths) + tail
    data = {"observations": rng.normal(size=(n, state_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    data["next_observations"] = np.roll(data["observations"], -1, 0)
    stops = np.cumsum(lengths)
    for stop, end in zip(stops, ends, strict=True):
        data["terminals" if end == "terminal" else "timeouts"][stop - 1] = True
    episodes = [{"obs": data["observations"][a:b], "action": data["actions"][a:b], "reward": data["rewards"][a:b]}
                for a, b in zip([0, *stops[:-1]], stops, strict=True)]
    return data, episodes


def write_h5(path: Path, data: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if k not in skip:
                f.create_dataset(k, data=v)
    return path


def write_d4rl_file(path: Path, lengths: list[int], ends: list[str] | None = None, tail: int = 0,
                    **kw) -> list[dict[str, np.ndarray]]:
    """A D4RL-layout hdf5 file (every episode ends with a terminal unless ``ends`` says otherwise);
    returns its complete episodes."""
    data, episodes = d4rl_arrays(lengths, ends or ["terminal"] * len(lengths), tail, **kw)
    write_h5(path, data)
    return episodes


def assert_same_episodes(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == {"obs", "action", "reward"}
        for k in ("obs", "action", "reward"):
            assert g[k].dtype == np.float32
            np.testing.assert_array_equal(g[k], w[k])


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


def write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


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


@pytest.mark.parametrize("bad", ["12", "-1", "x"])
def test_env_id_outside_the_table_is_a_one_line_argparse_error(bad, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--env_id", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--env_id" in one_line(err) and "error:" in err


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


# ------------------------------------------------------------------------------------------ store and model
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


def mujoco_config(mode: str = "RATE", mean=None, std=None, state_dim: int = 11, act_dim: int = 3, **kw):
    env_kwargs = {"state_dim": state_dim, "act_dim": act_dim}
    if mean is not None:
        env_kwargs.update(state_mean=list(map(float, mean)), state_std=list(map(float, std)))
    return tiny_config(mode, env="mujoco", env_kwargs=env_kwargs, **kw)


def continuous_batch(B: int, T: int, state_dim: int = 11, act_dim: int = 3, scale: float = 1.0,
                     offset: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randn(B, T, state_dim, generator=g) * scale + offset,
            "rtg": torch.randn(B, T, 1, generator=g),
            "action": torch.rand(B, T, act_dim, generator=g) * 2 - 1,
            "valid": torch.ones(B, T, dtype=torch.bool)}


def test_model_normalises_states_with_the_stats_it_carries(tmp_path):
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=11) * 5, rng.uniform(0.5, 4.0, 11)
    normed = RATE(mujoco_config(mean=mean, std=std).validate()).eval()
    plain = RATE(mujoco_config().validate()).eval()
    weights = {k: v for k, v in normed.state_dict().items() if k not in ENV_KEYS}
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert sorted(missing) == sorted(ENV_KEYS) and not unexpected
    np.testing.assert_array_equal(plain.state_dict()["enc.obs.0.std"].numpy(), np.ones(11, np.float32))
    raw = continuous_batch(2, 8, scale=torch.as_tensor(std, dtype=torch.float32),
                           offset=torch.as_tensor(mean, dtype=torch.float32))
    pre = {**raw, "obs": (raw["obs"] - torch.as_tensor(mean, dtype=torch.float32))
           / torch.as_tensor(std, dtype=torch.float32)}
    with torch.no_grad():
        a = torch.cat(run_segments(normed, raw), 1)
        b = torch.cat(run_segments(plain, pre), 1)
        c = torch.cat(run_segments(plain, raw), 1)
    assert a.shape == (2, 8, 3) and a.abs().max() < 1  # Tanh head
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the statistics matter
    # the statistics are buffers: a saved state_dict carries them into a model built without them
    torch.save(normed.state_dict(), tmp_path / "model.pt")
    loaded = RATE(mujoco_config().validate()).eval()
    loaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    np.testing.assert_allclose(loaded.state_dict()["enc.obs.0.mean"].numpy(), mean, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(run_segments(loaded, raw), 1), a, rtol=0, atol=0)


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


def test_padded_steps_never_change_valid_continuous_outputs(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [5, 12, 9])
    data = mujoco_dataset(mujoco_store(path, "hopper", tmp_path / "store"), window=12, n_windows=10)
    batch = data[np.array([[0, 0], [1, 0], [2, 6]])]
    model = RATE(mujoco_config(context_length=4, sections=3).validate()).eval()
    junk = {k: v.clone() for k, v in batch.items()}
    pad = ~junk["valid"]
    junk["obs"][pad], junk["action"][pad], junk["rtg"][pad] = 50.0, 0.7, -3.0
    with torch.no_grad():
        a = torch.cat(run_segments(model, batch), 1)
        b = torch.cat(run_segments(model, junk), 1)
    torch.testing.assert_close(a[batch["valid"]], b[batch["valid"]], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_continuous_incremental_decoding_equals_full_recomputation(mode):
    rng = np.random.default_rng(2)
    cfg = mujoco_config(mode, mean=rng.normal(size=11), std=rng.uniform(0.5, 2, 11))
    model = RATE(cfg.validate()).eval()
    K = model.cfg.context_length
    T = K * (3 if K == 4 else 2)  # 3 segments of 4 steps (DT: 2 windows of 12)
    batch = continuous_batch(3, T)
    with torch.no_grad():
        full = torch.cat(run_segments(model, batch), 1)
        dec, inc = Decoder(model, 3), []
        for t in range(T):
            inc.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]))
            dec.observe_action(batch["action"][:, t])
    assert full.shape == (3, T, 3)
    torch.testing.assert_close(torch.stack(inc, 1), full, rtol=0, atol=1e-5)


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


@pytest.mark.parametrize("bad,message", [
    (["--eval_max_steps", "1001"], "--eval_max_steps must be <= 1000"),
    (["--eval_episodes", "0"], "--eval_episodes must be >= 1, got 0"),
    (["--windows_per_epoch", "0"], "--windows_per_epoch must be >= 1, got 0"),
    (["--target_return", "6000,lots"], "expected numbers separated by commas, got '6000,lots'"),
    (["--rtg_mode", "sometimes"], "--rtg_mode: invalid choice: 'sometimes'"),
])
def test_bad_mujoco_flags_are_one_line_errors(bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.run_main(train.main, ["--env_id", "6", *bad, "--data_dir", str(tmp_path), "--runs_dir", str(tmp_path),
                                    "--no_wandb"])
    assert e.value.code == 2
    assert message in one_line(capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # nothing written


def test_without_data_the_error_is_one_line_naming_every_way_to_get_it(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as e:
        train.run_main(train.main, ["--env_id", "7", "--data_dir", str(nowhere), "--runs_dir", str(tmp_path),
                                    "--no_wandb"])
    assert e.value.code == 2
    err = one_line(capsys.readouterr().err)
    for part in (f"no hopper-medium-replay data in {nowhere}",
                 "hopper-medium-replay-v2.pkl, hopper_medium_replay-v2.hdf5, hopper-medium-replay-v5.hdf5",
                 "python3 download_d4rl_datasets.py",
                 "python3 MuJoCo/get_data/generate_d4rl.py --env hopper --dataset medium-replay", "--data_dir"):
        assert part in err
    assert not (tmp_path / "mujoco").exists()  # nothing written before the data is found



def test_model_flags_are_checked_before_any_data_is_made(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.run_main(train.main, ["--env_id", "6", "--smoke", "--n_head_ca", "3", "--d_model", "32",
                                    "--data_dir", str(tmp_path / "data"), "--runs_dir", str(tmp_path), "--no_wandb"])
    assert e.value.code == 2
    assert "--n_head_ca 3 must divide --d_model 32" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "data").exists()  # no SAC run, no dataset, no store

# ------------------------------------------------------------------------------------------ generator
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """hopper's four datasets made by one tiny SAC run with the --smoke settings into <data>/smoke (so the
    in-process --smoke run reuses them); records the episodes each dataset's rollouts played, in order
    (medium's, then expert's)."""
    data = tmp_path_factory.mktemp("mujoco_data")
    out = data / "smoke"
    played = []
    real_play = gen.play

    def spy(model, env, transitions, deterministic, seed, max_episode_steps, n_envs=10, one_each=False,
            progress=None):
        eps, returns = real_play(model, env, transitions, deterministic, seed, max_episode_steps, n_envs, one_each,
                                 progress)
        if not one_each:  # a dataset's rollouts, not an evaluation
            played.append((eps, returns))
        return eps, returns

    with pytest.MonkeyPatch.context() as m:
        m.setattr(gen, "play", spy)
        meta = {k: gen.generate("hopper", k, out, **train.SMOKE_DATA) for k in
                ("medium", "medium-replay", "expert", "medium-expert")}
    assert len(played) == 2
    return {"data": data, "out": out, "meta": meta, "played": dict(zip(("medium", "expert"), played, strict=True))}


def h5_fields(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in gen.FIELDS}


def test_generated_files_have_d4rls_layout_and_read_back(generated):
    out, n = generated["out"], train.SMOKE_DATA["transitions"]
    sizes = {"medium": n, "expert": n, "medium-expert": 2 * n}
    for kind, meta in generated["meta"].items():
        path = gen.dataset_path(out, f"hopper-{kind}")
        assert path == out / f"hopper-{kind}-v5.hdf5"
        with h5py.File(path, "r") as f:
            assert set(f) == {*gen.FIELDS, "metadata"}
            N = len(f["rewards"])
            assert N == sizes.get(kind, N) == meta["transitions"] == f["metadata/transitions"][()]
            for k, shape in (("observations", (N, 11)), ("next_observations", (N, 11)), ("actions", (N, 3)),
                             ("rewards", (N,))):
                assert f[k].shape == shape and f[k].dtype == np.float32, k
            assert f["terminals"].dtype == f["timeouts"].dtype == bool
            term, timeout = f["terminals"][()], f["timeouts"][()]
        assert not (term & timeout).any() and (term[-1] or timeout[-1])
        assert json.loads(path.with_suffix(".json").read_text()) == meta
        episodes = read_d4rl(path, "hopper")
        assert sum(len(ep["reward"]) for ep in episodes) == N  # the last row always ends an episode
        assert len(episodes) == term.sum() + timeout.sum()
        assert max(len(ep["reward"]) for ep in episodes) <= train.SMOKE_DATA["max_episode_steps"]


def test_generated_rollout_datasets_hold_the_played_episodes(generated):
    out, n = generated["out"], train.SMOKE_DATA["transitions"]
    for kind in ("medium", "expert"):
        eps, returns = generated["played"][kind]
        rows = {k: np.concatenate([ep[k] for ep in eps]) for k in gen.FIELDS}
        assert len(rows["rewards"]) >= n  # play stops once the finished episodes hold enough steps
        got = h5_fields(gen.dataset_path(out, f"hopper-{kind}"))
        for k in ("observations", "next_observations", "actions", "rewards", "terminals"):
            np.testing.assert_array_equal(got[k], rows[k][:n], err_msg=k)
        np.testing.assert_array_equal(got["timeouts"][:-1], rows["timeouts"][:n - 1])
        cut = not (rows["terminals"][n - 1] or rows["timeouts"][n - 1])
        assert got["timeouts"][-1] == (cut or rows["timeouts"][n - 1])  # a cut episode ends in a timeout
        inside = ~(got["terminals"] | got["timeouts"])[:-1]
        np.testing.assert_array_equal(got["next_observations"][:-1][inside], got["observations"][1:][inside])
        meta = generated["meta"][kind]
        assert meta["episodes"] == len(eps) and meta["return_mean"] == pytest.approx(np.mean(returns))
        np.testing.assert_allclose(returns, [ep["rewards"].sum() for ep in eps], rtol=1e-5)
        assert meta["normalised_score"] == pytest.approx(normalised_score("hopper", np.mean(returns)))
        assert (meta["state_dim"], meta["act_dim"], meta["gym_env"]) == (11, 3, "Hopper-v5")


def test_medium_replay_is_the_sac_buffer_up_to_the_medium_policy(generated):
    out = generated["out"]
    sac = out / "sac" / "hopper_seed0"
    state = json.loads((sac / "state.json").read_text())
    medium_step = state["medium"]["step"]
    got = h5_fields(gen.dataset_path(out, "hopper-medium-replay"))
    N = len(got["rewards"])
    assert N == medium_step == generated["meta"]["medium-replay"]["transitions"]
    assert generated["meta"]["medium"]["policy_step"] == medium_step
    assert state["steps"] == train.SMOKE_DATA["expert_steps"]  # the expert trained on in the same run
    with np.load(sac / "buffer.npz") as b:
        buf = {k: b[k][:N, 0].astype(np.float32) for k in b.files}  # SB3 stores float64
    dones, timeouts = buf["dones"] > 0.5, buf["timeouts"] > 0.5
    np.testing.assert_array_equal(got["observations"], buf["observations"])
    np.testing.assert_array_equal(got["next_observations"], buf["next_observations"])
    np.testing.assert_allclose(got["actions"], buf["actions"], atol=1e-6)  # hopper's actions lie in [-1, 1]
    np.testing.assert_array_equal(got["rewards"], buf["rewards"])
    np.testing.assert_array_equal(got["terminals"], dones & ~timeouts)
    np.testing.assert_array_equal(got["timeouts"][:-1], (dones & timeouts)[:-1])
    assert got["timeouts"][-1] == (not got["terminals"][-1])  # the buffer's prefix ends an episode there
    inside = ~(got["terminals"] | got["timeouts"])[:-1]
    assert inside.sum() > N / 2
    np.testing.assert_array_equal(got["next_observations"][:-1][inside], got["observations"][1:][inside])
    returns = [float(ep["reward"].sum()) for ep in read_d4rl(gen.dataset_path(out, "hopper-medium-replay"), "hopper")]
    assert generated["meta"]["medium-replay"]["return_mean"] == pytest.approx(np.mean(returns), rel=1e-5)


def test_medium_expert_is_medium_followed_by_expert(generated):
    out = generated["out"]
    both = h5_fields(gen.dataset_path(out, "hopper-medium-expert"))
    medium, expert = (h5_fields(gen.dataset_path(out, f"hopper-{k}")) for k in ("medium", "expert"))
    for k in gen.FIELDS:
        np.testing.assert_array_equal(both[k], np.concatenate([medium[k], expert[k]]), err_msg=k)
    meta = generated["meta"]["medium-expert"]
    assert meta["parts"] == ["medium", "expert"] and meta["transitions"] == len(both["rewards"])


def test_generator_resumes_without_retraining_and_refuses_another_request(generated, monkeypatch):
    out = generated["out"]
    files = sorted(p for p in out.rglob("*") if p.is_file() and "stores" not in p.parts)
    stamps = {p: p.stat().st_mtime_ns for p in files}
    monkeypatch.setattr(gen, "SacRun", lambda *a, **k: pytest.fail("a finished dataset retrained SAC"))
    for kind, meta in generated["meta"].items():
        assert gen.generate("hopper", kind, out, **train.SMOKE_DATA) == meta
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    with pytest.raises(ValueError, match=r"hopper-expert-v5\.hdf5 exists but was made by another request"):
        gen.generate("hopper", "expert", out, **{**train.SMOKE_DATA, "transitions": 700})
    with pytest.raises(ValueError, match="another request"):
        gen.generate("hopper", "medium", out, **{**train.SMOKE_DATA, "seed": 1})
    with pytest.raises(ValueError, match="--transitions must be >= 1, got 0"):
        gen.generate("hopper", "medium", out, **{**train.SMOKE_DATA, "transitions": 0})
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


def test_generator_restores_torchs_thread_count(tmp_path):
    """SAC runs on --threads; a caller in the same process (a --smoke training) keeps its own setting."""
    torch.set_num_threads(2)
    try:
        gen.generate("hopper", "medium", tmp_path, steps=100, transitions=50, eval_every=100, eval_episodes=1,
                     max_episode_steps=20, threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # this module's setting (one_thread)


def test_generator_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "MuJoCo/get_data/generate_d4rl.py", "--env", "hopper", "--dataset", "bogus",
                        "--out_dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, env=QUIET)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--dataset: invalid choice: 'bogus'" in err[0]
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ download script
def test_download_converts_local_d4rl_files_and_lists_the_rest(tmp_path, capsys):
    src, out = tmp_path / "d4rl", tmp_path / "out"
    src.mkdir()
    write_d4rl_file(src / "hopper_medium-v2.hdf5", [6, 8, 5], ["terminal", "timeout", "terminal"], tail=4)
    report = download.main(["--source", str(src), "--out_dir", str(out)])
    assert report == {"converted": ["hopper-medium"], "present": [],
                      "missing": [n for n in PAPER_TABLE if n != "hopper-medium"]}
    with open(out / "hopper-medium-v2.pkl", "rb") as f:
        trajectories = pickle.load(f)
    want = split_d4rl(src / "hopper_medium-v2.hdf5", download.PICKLE_FIELDS)
    assert len(trajectories) == 3
    for got, w in zip(trajectories, want, strict=True):
        assert list(got) == list(download.PICKLE_FIELDS)
        for k in download.PICKLE_FIELDS:
            np.testing.assert_array_equal(got[k], w[k])
    assert_same_episodes(read_dataset(out / "hopper-medium-v2.pkl", "hopper"),
                         read_d4rl(src / "hopper_medium-v2.hdf5", "hopper"))
    printed = capsys.readouterr().out
    assert "hopper-medium: " in printed and "(3 episodes, 19 transitions" in printed
    for name in report["missing"]:
        env, kind = split_name(name)
        assert f"python3 MuJoCo/get_data/generate_d4rl.py --env {env} --dataset {kind} --out_dir {out}" in printed
    assert "--env hopper --dataset medium --out_dir" not in printed  # converted: no command
    # a second run finds it; a newer source file is converted again
    again = download.main(["--source", str(src), "--out_dir", str(out), "--datasets", "hopper-medium"])
    assert again == {"converted": [], "present": ["hopper-medium"], "missing": []}
    stamp = (out / "hopper-medium-v2.pkl").stat().st_mtime_ns
    os.utime(src / "hopper_medium-v2.hdf5", ns=(stamp + 10**9, stamp + 10**9))
    assert download.main(["--source", str(src), "--out_dir", str(out),
                          "--datasets", "hopper-medium"])["converted"] == ["hopper-medium"]


def test_download_of_a_corrupt_file_is_a_one_line_error_leaving_no_pickle(tmp_path, capsys):
    src, out = tmp_path / "d4rl", tmp_path / "out"
    src.mkdir()
    (src / "hopper_expert-v2.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(SystemExit) as e:
        download.main(["--source", str(src), "--out_dir", str(out), "--datasets", "hopper-expert"])
    assert e.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: ") and "hopper_expert-v2.hdf5 is corrupt or unreadable" in err
    assert list(out.iterdir()) == []


def test_download_reads_d4rl_dataset_dir_then_home(tmp_path, monkeypatch, capsys):
    src, out = tmp_path / "env_src", tmp_path / "out"
    src.mkdir()
    write_d4rl_file(src / "walker2d_expert-v2.hdf5", [4, 4], state_dim=17, act_dim=6)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(src))
    report = download.main(["--out_dir", str(out), "--datasets", "walker2d-expert,hopper-expert"])
    assert report == {"converted": ["walker2d-expert"], "present": [], "missing": ["hopper-expert"]}
    assert len(read_dataset(out / "walker2d-expert-v2.pkl", "walker2d")) == 2
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.default_source() == tmp_path / ".d4rl" / "datasets"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        download.main(["--out_dir", str(out), "--datasets", "hopper-random"])
    assert e.value.code == 2 and "unknown datasets ['hopper-random']" in one_line(capsys.readouterr().err)


def test_download_readme_line_runs_verbatim(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    words = shlex.split(DOWNLOAD_LINE)
    assert words[0] == "python"
    r = subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True,
                       env={**QUIET, "D4RL_DATASET_DIR": str(empty), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert " -> " not in r.stdout  # nothing converted
    out = data_folder(None) if (ROOT / "wandb_config.yaml").exists() else DATA_DIR
    missing = [n for n in PAPER_TABLE if not (out / f"{n}-v2.pkl").is_file()]
    commands = [line.strip() for line in r.stdout.splitlines() if "generate_d4rl.py" in line]
    assert commands == [f"python3 MuJoCo/get_data/generate_d4rl.py --env {split_name(n)[0]} "
                        f"--dataset {split_name(n)[1]} --out_dir {out}" for n in missing]
    assert f"no {', '.join(d4rl_filename(n) for n in missing)} in {empty}" in r.stdout


# ------------------------------------------------------------------------------------------ evaluation
def play_by_hand(model: RATE, seed: int, target: float, max_steps: int, reset: bool) -> tuple[float, int]:
    """One hopper episode of ``model`` stepped without the vector env: the evaluation protocol by hand."""
    env = make_env("hopper")
    obs, _ = env.reset(seed=seed)
    decoder, total, K = Decoder(model, 1), 0.0, model.cfg.context_length
    rtg = target / 1000
    with torch.no_grad():
        for t in range(max_steps):
            if reset and t % K == 0:
                rtg = target / 1000
            action = decoder.act_logits(torch.tensor([rtg]), torch.as_tensor(obs[None], dtype=torch.float32))
            decoder.observe_action(action)
            obs, reward, term, trunc, _ = env.step(action[0].numpy())
            total, rtg = total + reward, rtg - reward / 1000
            if term or trunc:
                break
    env.close()
    return total, t + 1


def test_evaluate_reports_both_modes_per_target_with_every_episode():
    torch.manual_seed(0)
    model = RATE(mujoco_config(context_length=4, sections=3).validate()).eval()
    with torch.no_grad():  # the return-to-go matters a lot: the two modes act differently
        model.enc.rtg.weight.mul_(300.0)
    m = evaluate(model, "hopper", n_episodes=2, max_steps=30, progress=False)
    assert m["targets"] == [3600.0] and m["modes"] == ["decreasing", "reset"] and m["episodes_n"] == 2
    keys = {f"{kind}_{mode}_t3600{sem}" for kind in ("return", "score") for mode in ("decreasing", "reset")
            for sem in ("", "_sem")}
    assert keys <= set(m)
    assert [(e["mode"], e["target"], e["seed"]) for e in m["episodes"]] == [
        ("decreasing", 3600.0, 1_000_000), ("decreasing", 3600.0, 1_000_001),
        ("reset", 3600.0, 1_000_000), ("reset", 3600.0, 1_000_001)]
    returns = {mode: np.array([e["return"] for e in m["episodes"] if e["mode"] == mode])
               for mode in ("decreasing", "reset")}
    for mode, r in returns.items():
        assert m[f"return_{mode}_t3600"] == pytest.approx(r.mean())
        assert m[f"score_{mode}_t3600"] == pytest.approx(normalised_score("hopper", r).mean())
        assert m[f"return_{mode}_t3600_sem"] == pytest.approx(r.std(ddof=1) / np.sqrt(2))
        for i, seed in enumerate((1_000_000, 1_000_001)):  # each episode again, stepped by hand
            total, steps = play_by_hand(model, seed, 3600.0, 30, reset=mode == "reset")
            assert r[i] == pytest.approx(total, rel=1e-5, abs=1e-6)
            assert steps > model.cfg.context_length  # the return-to-go was reset at least once
    assert not np.allclose(returns["decreasing"], returns["reset"], rtol=0, atol=1e-9)
    with torch.no_grad():  # a policy that ignores the return-to-go: both modes are the same
        model.enc.rtg.weight.zero_()
        model.enc.rtg.bias.zero_()
    m = evaluate(model, "hopper", n_episodes=2, max_steps=30, progress=False)
    assert m["return_decreasing_t3600"] == m["return_reset_t3600"]
    custom = evaluate(model, "hopper", n_episodes=1, max_steps=5, targets=(100.0, 200.0), modes=("reset",),
                      progress=False)
    assert custom["targets"] == [100.0, 200.0] and custom["modes"] == ["reset"]
    assert {"return_reset_t100", "return_reset_t200"} <= set(custom) and "return_decreasing_t100" not in custom


@pytest.mark.parametrize("mode", ("RATE", "DT"))
def test_evaluation_feeds_a_replayed_episode_what_training_feeds_it(mode, tmp_path):
    """The rollout engine playing back dataset episodes (target = each one's return) feeds the training
    windows' return-to-go and states at every step, across segment and window boundaries, and the model run
    as in training over the executed actions gives those actions."""
    from MuJoCo.MuJoCo_src import diagnose_eval as diag

    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [9, 30, 17])
    store = mujoco_store(path, "hopper", tmp_path / "store")
    torch.manual_seed(0)
    model = RATE(mujoco_config(mode, mean=np.zeros(11), std=np.full(11, 2.0), context_length=4,
                               sections=3).validate()).eval()
    with torch.no_grad():
        model.enc.rtg.weight.mul_(30.0)  # the return-to-go moves the actions
    episodes = np.arange(3)
    got = diag.replay(model, store, episodes)
    assert got["steps"] == 9 + 30 + 17 and got["episodes"] == 3
    assert got["rtg_max_abs_diff"] < 1e-5 and got["obs_max_abs_diff"] == 0.0
    assert got["action_max_abs_diff"] < 1e-5
    errors = diag.teacher_forced(model, store, episodes)
    assert {k: v["steps"] for k, v in errors.items()} == {"step_0": 3, "steps_1_19": 8 + 19 + 16, "steps_20_59": 10}


class _Zeros:
    """A stand-in behaviour policy (SB3's predict) that always acts zero."""

    def predict(self, obs, deterministic=True):
        return np.zeros((len(obs), 3), np.float32), None


def test_handover_plays_the_behaviour_policy_first_then_the_model():
    from MuJoCo.MuJoCo_src import diagnose_eval as diag

    torch.manual_seed(0)
    model = RATE(mujoco_config("RATE", context_length=4, sections=3).validate()).eval()
    seeds = [1_000_000, 1_000_001]
    with GymVectorEnv(partial(make_env, "hopper"), seeds, obs_scale=1.0) as venv:
        model_only = rollout(model, venv, 3.6, max_steps=15, reward_scale=1e-3)
    got = diag.handover(model, "hopper", seeds, 3600.0, _Zeros(), 0, max_steps=15)
    np.testing.assert_allclose(got["returns"], model_only.returns.round(1))
    zeros = diag.handover(model, "hopper", seeds, 3600.0, _Zeros(), 15, max_steps=15)
    by_hand = []
    for seed in seeds:
        env = make_env("hopper")
        env.reset(seed=seed)
        by_hand.append(sum(env.step(np.zeros(3))[1] for _ in range(15)))
    np.testing.assert_allclose(zeros["returns"], np.round(by_hand, 1))
    assert zeros["behaviour_steps"] == 15 and zeros["lengths"] == [15, 15]


# ------------------------------------------------------------------------------------------ command lines
def argv_of(line: str) -> list[str]:
    words = shlex.split(line)
    return words[next(i for i, w in enumerate(words) if w.endswith(".py")) + 1:]


def test_readme_line_parses_verbatim():
    args, explicit = train.parse_args(argv_of(TRAIN_LINE))
    assert (args.env_id, args.sections, args.context_length, args.num_mem_tokens, args.n_head_ca) == (0, 3, 20, 5, 1)
    assert args.mrv_act == "relu" and args.skip_dec_ffn is True and args.seed == 123 and not args.smoke
    assert {"sections", "context_length", "num_mem_tokens", "seed"} <= explicit
    smoke, _ = train.parse_args(argv_of(TRAIN_LINE) + ["--smoke"])
    assert (smoke.context_length, smoke.sections) == (20, 3)  # explicit flags survive --smoke ...
    assert smoke.d_model == train.SMOKE["d_model"] and smoke.eval_episodes == 2  # ... the rest shrinks


@pytest.mark.parametrize("mode", ["RATE", "DT"])
def test_readme_command_runs_with_smoke(mode, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "readme_data"  # halfcheetah's smoke data, made by the first run
    runs = tmp_path_factory.mktemp("runs")
    extra = ["--smoke", "--no_wandb", "--data_dir", str(data), "--runs_dir", str(runs)]
    extra += ["--model_mode", "DT"] if mode == "DT" else []
    r = subprocess.run([sys.executable, *shlex.split(TRAIN_LINE)[1:], *extra], cwd=ROOT, capture_output=True,
                       text=True, env=QUIET, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((runs / "mujoco" / mode / "seed_123" / "results.json").read_text())["metrics"]
    for key in ("score_decreasing_t6000", "score_reset_t6000", "score_decreasing_t12000", "score_reset_t12000"):
        assert np.isfinite(res[key]) and np.isfinite(res[key.replace("score", "return")])
    assert len(res["episodes"]) == 2 * 2 * 2  # modes x targets x episodes
    assert {e["seed"] for e in res["episodes"]} == {1_000_000, 1_000_001}
    assert (data / "smoke" / "halfcheetah-medium-v5.hdf5").is_file()


def test_smoke_run_in_process_carries_the_state_statistics(generated, tmp_path):
    data, runs = generated["data"], tmp_path / "runs"
    res = train.main(["--env_id", "6", "--smoke", "--no_wandb", "--seed", "5", "--data_dir", str(data),
                      "--runs_dir", str(runs)])
    source = gen.dataset_path(generated["out"], "hopper-medium")
    mean, std = state_stats(mujoco_store(source, "hopper", generated["out"] / "stores" / "hopper-medium"))
    kwargs = res["model_config"]["env_kwargs"]
    assert kwargs["state_dim"] == 11 and kwargs["act_dim"] == 3
    assert len(kwargs["state_mean"]) == len(kwargs["state_std"]) == 11
    np.testing.assert_allclose(kwargs["state_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(kwargs["state_std"], std, rtol=1e-6)
    ckpt = torch.load(runs / "mujoco" / "RATE" / "seed_5" / "checkpoints" / "last.pt", weights_only=True)
    np.testing.assert_allclose(ckpt["model"]["enc.obs.0.mean"].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(ckpt["model"]["enc.obs.0.std"].numpy(), std, rtol=1e-6)
    assert ckpt["model_config"]["env_kwargs"] == kwargs
    metrics = res["runs"]["5"]["metrics"]
    assert metrics["targets"] == [3600.0] and len(metrics["episodes"]) == 4
    assert {"score_decreasing_t3600", "score_reset_t3600"} <= set(metrics)
    assert "hopper-medium from" in res["text"] and str(source) in res["text"]
