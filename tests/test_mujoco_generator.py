"""MuJoCo's SAC data generator (get_data/generate_d4rl.py): its datasets have D4RL's layout and read back, the
rollout datasets hold the played episodes, medium-replay is SAC's buffer, medium-expert the concatenation; it
resumes without retraining, refuses another request, restores torch's threads and reports errors on one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

import h5py  # noqa: E402

from MuJoCo import train_rate_mujoco_ca as train  # noqa: E402
from MuJoCo.get_data import generate_d4rl as gen  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_data import read_d4rl  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_env import normalised_score  # noqa: E402
from tests.mujoco_helpers import (  # noqa: E402
    QUIET,
    ROOT,
    one_thread,  # noqa: F401 (module-wide fixture)
)


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

