"""Episode store and window samplers: round trip, hand-computed windows for each sampler (offsets,
padding, return-to-go, frame stacking), stale and corrupt stores, deterministic order, resume."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from RATE_model.data import (
    DataError,
    WindowDataset,
    batch_loader,
    consecutive,
    dt_style,
    episode_store,
    fixed_offsets,
    load_npz,
    with_returns_to_go,
)
from RATE_model.encoders import ACTION_PAD
from RATE_model.files import WriteError
from RATE_model.store import EpisodeStore, StoreWriter, open_or_build
from tests.helpers import fit_tiny


def make_episode(T: int, first: int = 0, obs_shape=(2, 3), seed: int = 0) -> dict[str, np.ndarray]:
    """obs uint8 whose every pixel is the global step index ``first + t``; random actions and rewards."""
    rng = np.random.default_rng(seed)
    obs = (np.arange(first, first + T, dtype=np.uint8)[:, None, None] * np.ones(obs_shape, np.uint8))
    return {"obs": obs, "action": rng.integers(0, 3, T), "reward": rng.random(T).astype(np.float32)}


def episodes(lengths: list[int]) -> list[dict[str, np.ndarray]]:
    first = np.cumsum(lengths) - lengths
    return [with_returns_to_go(make_episode(T, int(first[i]), seed=i)) for i, T in enumerate(lengths)]


def disk_store(tmp_path, eps) -> EpisodeStore:
    with StoreWriter(tmp_path / "store") as w:
        for ep in eps:
            w.append(ep)
        return w.close()


@pytest.fixture(params=["ram", "disk"])
def make_store(request, tmp_path):
    return lambda eps: EpisodeStore.from_episodes(eps) if request.param == "ram" else disk_store(tmp_path, eps)


def reference_window(ep: dict[str, np.ndarray], start: int, L: int) -> dict[str, np.ndarray]:
    """SPEC §2 padding, written out step by step."""
    T = len(ep["action"])
    rtg = np.cumsum(ep["reward"][::-1])[::-1]
    out = {"obs": [], "action": [], "rtg": [], "valid": []}
    for t in range(start, start + L):
        out["obs"].append(ep["obs"][min(t, T - 1)])
        out["action"].append(ep["action"][t] if t < T else ACTION_PAD)
        out["rtg"].append([rtg[t] if t < T else 0.0])
        out["valid"].append(t < T)
    return {k: np.array(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ store
def test_round_trip_and_standard_npy_files(tmp_path):
    eps = episodes([3, 1, 5])
    store = disk_store(tmp_path, eps)
    assert store.n_episodes == 3 and store.n_steps == 9 and store.lengths.tolist() == [3, 1, 5]
    for i, ep in enumerate(eps):
        got = store.episode(i)
        for k in ep:
            assert got[k].dtype == ep[k].dtype and np.array_equal(got[k], ep[k]), (i, k)
    # plain numpy reads every field file; every frame is stored once
    obs = np.load(tmp_path / "store" / "obs.npy", mmap_mode="r")
    assert obs.shape == (9, 2, 3) and obs.dtype == np.uint8 and np.array_equal(obs[:, 0, 0], np.arange(9))
    assert np.load(tmp_path / "store" / "offsets.npy").tolist() == [0, 3, 4, 9]
    assert not list(tmp_path.glob(".store.*"))  # no temporary folder left behind


def test_writer_rejects_inconsistent_episodes(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        w.append(make_episode(3))
        bad = make_episode(3)
        bad["obs"] = bad["obs"].astype(np.float32)
        with pytest.raises(DataError, match="ep7.npz: obs is float32"):
            w.append(bad, source="ep7.npz")
        short = make_episode(3)
        short["reward"] = short["reward"][:2]
        with pytest.raises(DataError, match="disagree on the episode length"):
            w.append(short)
        w.abort()
    assert not (tmp_path / "s").exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------- samplers
def test_consecutive_windows_offsets_padding_and_return_to_go(make_store):
    eps = episodes([7, 3, 12])
    data = consecutive(make_store(eps), 5)
    table = data.epoch_windows(0, 0)
    assert table.tolist() == [[0, 0], [0, 5], [1, 0], [2, 0], [2, 5], [2, 10]]
    b = data[table]
    assert b["obs"].shape == (6, 5, 2, 3) and b["obs"].dtype == torch.uint8
    assert b["action"].dtype == torch.int64 and b["rtg"].shape == (6, 5, 1) and b["valid"].dtype == torch.bool
    # window (0, 5): steps 5, 6 of a 7-step episode, then 3 padded steps
    assert b["valid"][1].tolist() == [True, True, False, False, False]
    assert b["obs"][1, :, 0, 0].tolist() == [5, 6, 6, 6, 6]  # padding repeats the last observation
    assert b["action"][1].tolist() == [*eps[0]["action"][5:7], ACTION_PAD, ACTION_PAD, ACTION_PAD]
    r = eps[0]["reward"]
    np.testing.assert_allclose(b["rtg"][1, :, 0], [r[5:].sum(), r[6], 0, 0, 0], rtol=1e-6)  # whole-episode RTG
    np.testing.assert_allclose(b["rtg"][0, 0, 0], r.sum(), rtol=1e-6)
    for i, (e, s) in enumerate(table):
        ref = reference_window(eps[e], s, 5)
        for k in ref:
            np.testing.assert_allclose(b[k][i].numpy(), ref[k], rtol=1e-6, err_msg=f"window {i} {k}")


def test_dt_style_uniform_draws_episodes_by_length_and_uniform_starts(make_store):
    store = make_store(episodes([10, 30, 60]))
    data = dt_style(store, 8, n_windows=30_000, starts="uniform")
    a, b = data.epoch_windows(5, 0), data.epoch_windows(5, 1)
    assert len(data) == len(a) == 30_000 and np.array_equal(a, data.epoch_windows(5, 0))  # a function of (seed, epoch)
    assert not np.array_equal(a, b) and not np.array_equal(a, data.epoch_windows(6, 0))
    freq = np.bincount(a[:, 0], minlength=3) / len(a)
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.6], atol=0.015)
    assert (a[:, 1] >= 0).all() and (a[:, 1] < np.array([10, 30, 60])[a[:, 0]]).all()
    starts = a[a[:, 0] == 2, 1]
    assert abs(starts.mean() - 29.5) < 1.0 and set(np.unique(starts)) == set(range(60))
    assert dt_style(store, 8).__len__() == 100 // 8  # default: one pass over the steps per epoch
    batch = data[np.array([[1, 26]])]  # a draw near the end is padded, as every window
    assert batch["valid"][0].tolist() == [True] * 4 + [False] * 4


def step_coverage(table: np.ndarray, lengths: list[int], window: int) -> list[np.ndarray]:
    """How many windows of ``table`` hold each step of each episode."""
    cover = [np.zeros(n) for n in lengths]
    for ep, start in table:
        cover[ep][start:start + window] += 1
    return cover


def test_dt_style_covering_puts_every_step_in_as_many_windows_as_a_middle_step(make_store):
    """The default draw: every step, an episode's first one included, lies in at least as many windows as a
    middle step (the reference's uniform starts leave the first step in 1/window as many), no window starts
    before its episode, and episodes are drawn in proportion to length + window - 1."""
    lengths, W = [10, 30, 60], 8
    store = make_store(episodes(lengths))
    cover = {}
    for starts in ("covering", "uniform"):
        table = dt_style(store, W, n_windows=60_000, starts=starts).epoch_windows(3, 0)
        assert (table[:, 1] >= 0).all() and (table[:, 1] < np.array(lengths)[table[:, 0]]).all()
        cover[starts] = step_coverage(table, lengths, W)
    middle = cover["covering"][2][W:].mean()  # windows per middle step (the same in every episode)
    for ep, c in enumerate(cover["covering"]):
        assert (c / middle > 0.9).all(), ep
        assert abs(c[-1] / middle - 1) < 0.1  # a last step: as many as a middle one
        np.testing.assert_allclose(c[:W] / middle, (W + np.arange(W)) / W, atol=0.1)
    uniform = cover["uniform"][2]
    assert uniform[0] / uniform[W:].mean() < 2 / W  # the reference's: the first step about 1/W as often
    freq = np.bincount(dt_style(store, W, n_windows=30_000).epoch_windows(0, 0)[:, 0], minlength=3) / 30_000
    np.testing.assert_allclose(freq, (np.array(lengths) + W - 1) / (sum(lengths) + 3 * (W - 1)), atol=0.015)
    with pytest.raises(ValueError, match="covering, uniform"):
        dt_style(store, W, starts="left")


def test_fixed_offsets_kept_by_reward_predicate(make_store):
    eps = [with_returns_to_go(make_episode(T, seed=i)) for i, T in enumerate([500, 500, 300])]
    for ep in eps:
        ep["reward"][:] = 0
    eps[0]["reward"][[10, 50]] = 1    # window at 0 holds 2
    eps[0]["reward"][[100, 400]] = 1  # windows at 90 and 360 hold 1 each
    eps[1]["reward"][[185, 186, 187]] = 1  # window at 180 holds 3
    eps[1]["reward"][[450, 451]] = 1  # after offset 360's window: not in any
    eps[2]["reward"][[280, 281]] = 1  # inside the 300-step episode, but offset 270 + 90 > 300
    eps[2]["reward"][[95, 96]] = 1    # window at 90
    data = fixed_offsets(make_store(eps), 90, stride=90, stop=500 - 90,
                         keep=lambda d, w: d.window_sums(w) >= 2)
    assert data.epoch_windows(0, 0).tolist() == [[0, 0], [1, 180], [2, 90]]
    unfiltered = fixed_offsets(make_store(eps), 90, stride=90, stop=410)
    assert unfiltered.epoch_windows(0, 0)[:, 1].tolist() == [0, 90, 180, 270, 360] * 2 + [0, 90, 180]
    assert data[data.epoch_windows(0, 0)]["valid"].all()


def test_frame_stacking_repeats_the_first_frame_at_episode_starts(make_store):
    data = consecutive(make_store(episodes([6, 3])), 5, frame_stack=4)
    b = data[data.epoch_windows(0, 0)]  # windows (0, 0), (0, 5), (1, 0)
    assert b["obs"].shape == (3, 5, 4, 2, 3)
    frames = b["obs"][..., 0, 0].tolist()  # frame values are global step indices
    assert frames[0] == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4]]
    assert frames[1] == [[2, 3, 4, 5]] * 5  # step 5, then padding repeats the last stack
    # episode 1 starts at global step 6: its first steps repeat its own first frame, never episode 0's
    assert frames[2] == [[6, 6, 6, 6], [6, 6, 6, 7], [6, 6, 7, 8], [6, 6, 7, 8], [6, 6, 7, 8]]


def test_datasets_pickle_for_spawned_workers(tmp_path):
    store = disk_store(tmp_path, episodes([7, 3, 12]))
    for data in (consecutive(store, 5), dt_style(store, 5, 10, frame_stack=2)):
        keys = data.epoch_windows(1, 2)
        clone = pickle.loads(pickle.dumps(data))
        assert len(pickle.dumps(data)) < 10_000  # the file handle and data are not pickled, only the index
        assert np.array_equal(clone.epoch_windows(1, 2), keys)
        for k, v in data[keys].items():
            assert torch.equal(clone[keys][k], v), k


# ------------------------------------------------------------------------------ build, stale, corrupt
def write_sources(folder, lengths, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, T in enumerate(lengths):
        p = folder / f"episode_{i:06d}.npz"
        np.savez(p, **make_episode(T, seed=seed + i))
        paths.append(p)
    return paths


def read(path):
    return load_npz(path, ("obs", "action", "reward"))


def test_store_is_reused_then_rebuilt_when_a_source_changes(tmp_path, capsys):
    src = write_sources(tmp_path, [4, 6, 5])
    store = episode_store(tmp_path / "store", src, read, progress=False)
    meta = tmp_path / "store" / "meta.json"
    built = meta.stat().st_mtime_ns
    again = episode_store(tmp_path / "store", src, read, progress=False)
    assert meta.stat().st_mtime_ns == built and again.n_episodes == 3  # reused
    assert episode_store(tmp_path / "store", src[:2], read, progress=False).n_episodes == 2  # a prefix: reused
    assert meta.stat().st_mtime_ns == built and capsys.readouterr().err == ""
    np.savez(src[1], **make_episode(9, seed=42))  # the source changes: rebuilt, with a note
    os.utime(src[1], ns=(built + 10**9, built + 10**9))
    new = episode_store(tmp_path / "store", src, read, progress=False)
    assert "rebuilding" in capsys.readouterr().err
    assert new.lengths.tolist() == [4, 9, 5] and store.lengths.tolist() == [4, 6, 5]
    np.testing.assert_array_equal(new.episode(1)["action"], make_episode(9, seed=42)["action"])
    np.testing.assert_allclose(new.episode(1)["rtg"], with_returns_to_go(make_episode(9, seed=42))["rtg"])
    assert not list(tmp_path.glob(".store.*"))


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "obs.npy").write_bytes((d / "obs.npy").read_bytes()[:300]), "obs.npy"),
    (lambda d: (d / "obs.npy").write_bytes(b""), "obs.npy"),
    (lambda d: np.save(d / "action.npy", np.zeros(15, np.float32)), "action.npy holds float32"),
    (lambda d: np.save(d / "rtg.npy", np.zeros((14,), np.float32)), "rtg.npy holds float32 (14,)"),
    (lambda d: (d / "reward.npy").unlink(), "reward.npy"),
    (lambda d: np.save(d / "offsets.npy", np.array([0, 4, 3, 15])), "offsets.npy"),
    (lambda d: (d / "meta.json").write_text("{garbage"), "meta.json"),
])
def test_corrupt_store_is_a_data_error_naming_the_file_and_is_kept(tmp_path, damage, needle):
    src = write_sources(tmp_path, [4, 6, 5])
    episode_store(tmp_path / "store", src, read, progress=False)
    damage(tmp_path / "store")
    before = {p.name: p.read_bytes() for p in (tmp_path / "store").iterdir()}
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")) as e:
        episode_store(tmp_path / "store", src, read, progress=False)
    assert "delete the store folder" in str(e.value) and "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "store").iterdir()} == before  # nothing deleted


def test_truncation_after_opening_is_a_data_error(tmp_path):
    src = write_sources(tmp_path, [4, 6, 5])
    data = consecutive(episode_store(tmp_path / "store", src, read, progress=False), 4)
    obs = tmp_path / "store" / "obs.npy"
    obs.write_bytes(obs.read_bytes()[:300])  # header 256 + 15 steps x 6 bytes = 346
    with pytest.raises(DataError, match="obs.npy ends early"):
        data[data.epoch_windows(0, 0)]


def test_failed_build_leaves_nothing_behind(tmp_path):
    src = write_sources(tmp_path, [4, 6, 5])
    src[2].write_bytes(src[2].read_bytes()[:100])
    with pytest.raises(DataError, match="episode_000002.npz"):
        episode_store(tmp_path / "store", src, read, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in src]
    with pytest.raises(DataError, match="no episode files"):
        open_or_build(tmp_path / "store", [], read)


# --------------------------------------------------------------------------- order, workers, resume
def tmaze_like_store(tmp_path) -> EpisodeStore:
    rng = np.random.default_rng(0)
    eps = [{"obs": rng.standard_normal((T, 4)).astype(np.float32), "action": rng.integers(0, 4, T),
            "reward": rng.random(T).astype(np.float32)} for T in rng.integers(3, 25, 24)]
    return disk_store(tmp_path, [with_returns_to_go(e) for e in eps])


def test_loader_with_workers_yields_the_same_batches_in_order(tmp_path):
    data = consecutive(tmaze_like_store(tmp_path), 12)
    keys = data.epoch_windows(0, 0)
    batches = [keys[i::5] for i in range(5)]
    plain = [data[b] for b in batches]
    for workers in (0, 2):
        got = list(batch_loader(data, batches, workers))
        assert len(got) == len(plain)
        for g, p in zip(got, plain, strict=True):
            assert all(torch.equal(g[k], p[k]) for k in p)


def _fit(tmp_path, name, data, workers, stop_after=None, resume=None):
    return fit_tiny(tmp_path / name, lambda: [data], stop_after, resume, num_workers=workers)


@pytest.mark.parametrize("sampler", ["consecutive", "dt_style"])
def test_store_training_is_deterministic_with_workers_and_resumes_exactly(tmp_path, sampler):
    store = tmaze_like_store(tmp_path)
    data = consecutive(store, 12) if sampler == "consecutive" else dt_style(store, 12, n_windows=20)
    full = _fit(tmp_path, "full", data, workers=0)
    with_workers = _fit(tmp_path, "workers", data, workers=2)
    _fit(tmp_path, "crash", data, workers=2, stop_after=5)
    torch.manual_seed(123)
    resumed = _fit(tmp_path, "crash", data, workers=2, resume=tmp_path / "crash" / "checkpoints" / "last.pt")
    assert full.step == resumed.step == with_workers.step == 2 * -(-len(data) // 4)
    for name, a in full.model.state_dict().items():
        assert torch.equal(a, with_workers.model.state_dict()[name]), name
        assert torch.equal(a, resumed.model.state_dict()[name]), name


def test_windows_validate_their_store():
    store = EpisodeStore.from_episodes([{"obs": np.zeros((3, 2)), "action": np.zeros(3, int)}])
    with pytest.raises(DataError, match="lacks fields"):
        WindowDataset(store, 4, np.array([[0, 0]]))
    store = EpisodeStore.from_episodes(episodes([3]))
    with pytest.raises(DataError, match="no training windows"):
        fixed_offsets(store, 5, stride=5, stop=10)


def test_full_disk_during_a_build_is_a_write_error_and_removes_the_partial_store(tmp_path, monkeypatch):
    src = write_sources(tmp_path, [4, 6, 5])
    real = StoreWriter.append

    def append(self, episode, source=None):
        if len(self.lengths) == 2:
            raise OSError(28, "No space left on device")
        return real(self, episode, source)

    monkeypatch.setattr(StoreWriter, "append", append)
    with pytest.raises(WriteError, match=r"could not write .*store: No space left on device.*partial store was"):
        episode_store(tmp_path / "store", src, read, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in src]
