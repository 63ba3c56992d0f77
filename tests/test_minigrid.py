"""Minigrid-Memory: env wrapper, scripted expert, .npz data, loader, train-script flags, smoke run, notebook."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("minigrid")

from MinigridMemory.get_data import collect_traj  # noqa: E402
from MinigridMemory.get_data.collect_traj import collect, episode_path  # noqa: E402
from MinigridMemory.MinigridMemory_src import train_minigridmemory as train  # noqa: E402
from MinigridMemory.MinigridMemory_src.expert import (  # noqa: E402
    MemoryExpert,
    _successor,
    distance_map,
    expert_episode,
)
from MinigridMemory.MinigridMemory_src.minigrid_data import (  # noqa: E402
    load_episode,
    minigrid_dataset,
)
from MinigridMemory.MinigridMemory_src.minigrid_env import (  # noqa: E402
    FORWARD,
    LEFT,
    RIGHT,
    MinigridMemory,
    MinigridMemoryVecEnv,
)
from RATE_model.config import ConfigError, split_args  # noqa: E402
from RATE_model.data import DataError, consecutive, with_returns_to_go  # noqa: E402
from RATE_model.encoders import ACTION_PAD  # noqa: E402
from RATE_model.store import EpisodeStore  # noqa: E402
from tests.helpers import check_attention_tool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "MinigridMemory" / "notebooks" / "minigrid_memory_demo.ipynb"

# The Minigrid lines of the paper README, verbatim (RATE, DT, RMT, TrXL).
README_LINES = [
    "python3 MinigridMemory/MinigridMemory_src/train_minigridmemory.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'RATE' --text 'RATE' --nmt 15 --mem_len 180 --n_head_ca 1 --mrv_act 'relu' --skip_dec_attn",
    "python3 MinigridMemory/MinigridMemory_src/train_minigridmemory.py --model_mode 'DT' --arch_mode 'TrXL' "
    "--ckpt_folder 'DT' --text 'DT' --nmt 0 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 MinigridMemory/MinigridMemory_src/train_minigridmemory.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'RMT' --text 'RMT' --nmt 15 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 MinigridMemory/MinigridMemory_src/train_minigridmemory.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'RMT' --text 'TrXL' --nmt 0 --mem_len 90 --n_head_ca 0 --mrv_act 'no_act'",
]


def walk_to(env: MinigridMemory, cell: tuple[int, int]) -> tuple[float, bool, bool, int]:
    """Shortest walk onto ``cell``; returns the last (reward, done, success) and the steps taken."""
    expert = MemoryExpert(env)
    expert.reset()
    goal = np.zeros((*expert.free.shape, 4), bool)
    goal[cell] = True
    dist = distance_map(expert.free, goal)
    done, t = False, 0
    while not done:
        g = env.env
        x, y, d = int(g.agent_pos[0]), int(g.agent_pos[1]), int(g.agent_dir)
        a = min((FORWARD, LEFT, RIGHT), key=lambda a: dist[_successor(expert.free, x, y, d, a)])
        _, r, done, success = env.step(a)
        t += 1
    return r, done, success, t


# ---------------------------------------------------------------- env wrapper


def test_observation_shape_dtype_and_range():
    env = MinigridMemory(11)
    obs = env.reset(3)
    assert obs.shape == (3, 84, 84) and obs.dtype == np.uint8
    vec = MinigridMemoryVecEnv(11, [0, 1, 2])
    o = vec.reset()
    assert o.shape == (3, 3, 84, 84) and o.dtype == np.float32
    assert 0.0 <= o.min() and o.max() <= 1.0 and o.max() > 0.5
    with pytest.raises(ValueError, match="odd"):
        MinigridMemory(10)


def test_reward_rule_matching_object_wrong_object_and_timeout():
    env = MinigridMemory(11, timeout=100)
    env.reset(5)
    r, done, success, t = walk_to(env, tuple(env.env.success_pos))
    assert done and success and r == pytest.approx(1 - 0.9 * t / 100)
    env.reset(5)
    r, done, success, _ = walk_to(env, tuple(env.env.failure_pos))
    assert done and not success and r == 0.0
    env = MinigridMemory(11, timeout=4)
    env.reset(0)
    results = [env.step(LEFT) for _ in range(4)]
    assert [d for _, _, d, _ in results] == [False, False, False, True]
    assert all(r == 0.0 and not s for _, r, _, s in results)


def test_vec_env_freezes_finished_episodes():
    vec = MinigridMemoryVecEnv(7, [0, 1], timeout=2)
    vec.reset()
    vec.step(np.array([RIGHT, RIGHT]))
    obs, reward, done, info = vec.step(np.array([RIGHT, RIGHT]))
    assert done.all()
    obs2, reward2, done2, _ = vec.step(np.array([FORWARD, FORWARD]))
    assert np.array_equal(obs, obs2) and done2.all() and (reward2 == 0).all()
    assert set(info) == {"success", "touched"} and not info["touched"].any()  # timed out, touched nothing


# ---------------------------------------------------------------- expert


@pytest.mark.parametrize("size", [7, 11, 31, 91])
def test_expert_solves_fixed_seeds_after_seeing_the_cue(size):
    for seed in range(10):
        ep = expert_episode(size, seed)
        assert ep["success"] and ep["cue_seen"], (size, seed)
        assert ep["reward"][-1] > 0.9 and ep["reward"][:-1].sum() == 0 and ep["done"][-1]


def test_noisy_expert_still_succeeds_and_is_deterministic():
    a = expert_episode(31, 7, epsilon=0.3, noise_seed=1)
    b = expert_episode(31, 7, epsilon=0.3, noise_seed=1)
    clean = expert_episode(31, 7)
    assert a["success"] and a["cue_seen"]
    assert np.array_equal(a["action"], b["action"]) and np.array_equal(a["obs"], b["obs"])
    assert len(a["action"]) > len(clean["action"])


def _decisions(size: int, seeds: range, look_first: bool) -> list[dict]:
    from MinigridMemory.diagnostics.diagnose_cue import decisive_action

    return [decisive_action(size, s, look_first) for s in seeds]


def test_expert_decision_follows_what_it_has_seen():
    """The current expert's one cue-dependent action (taken while the first junction object is in view)
    is FORWARD exactly when that object matches the cue; both sides get looked at first."""
    recs = _decisions(11, range(40), look_first=True)
    assert all((r["action"] == FORWARD) == (r["seen"] == r["cue"]) for r in recs)
    assert {r["seen"] == r["cue"] for r in recs} == {True, False}
    assert {(r["cue"], r["seen"]) for r in recs} == {("key", "key"), ("key", "ball"), ("ball", "key"), ("ball", "ball")}


def test_first_expert_turned_on_the_unseen_arrangement():
    """The first expert's turn at the junction is decided by where the matching object lies, which no
    observation before the turn shows, so the cue alone predicts it no better than a coin."""
    recs = _decisions(11, range(40), look_first=False)
    assert all((r["action"] == LEFT) == r["match_north"] for r in recs)
    for cue in ("key", "ball"):
        lefts = [r["action"] == LEFT for r in recs if r["cue"] == cue]
        assert 0 < sum(lefts) < len(lefts)


# ---------------------------------------------------------------- .npz data


def test_collect_round_trip_resume_and_determinism(tmp_path):
    stats = collect(tmp_path / "a", n_episodes=6, size=9, epsilon=0.1, seed=3, workers=1, progress=False)
    on_disk = sum(episode_path(tmp_path / "a", i).stat().st_size for i in range(6)) / 2**20
    assert stats["written"] == 6 and stats["episodes_per_s"] > 0 and stats["mb_written"] == round(on_disk, 2) > 0
    assert collect(tmp_path / "a", n_episodes=6, size=9, epsilon=0.1, seed=3, workers=1,
                   progress=False)["skipped"] == 6
    collect(tmp_path / "b", n_episodes=6, size=9, epsilon=0.1, seed=3, workers=2, progress=False)
    for i in range(6):
        ea, eb = load_episode(episode_path(tmp_path / "a", i)), load_episode(episode_path(tmp_path / "b", i))
        assert ea["obs"].dtype == np.uint8 and ea["obs"].shape[1:] == (3, 84, 84)
        assert ea["action"].dtype == np.int64 and ea["reward"].dtype == np.float32 and ea["done"].dtype == bool
        assert ea["done"][-1] and not ea["done"][:-1].any() and ea["reward"][-1] > 0
        for k in ea:
            assert np.array_equal(ea[k], eb[k]), (i, k)
    with pytest.raises(ValueError, match="collected with"):
        collect(tmp_path / "a", n_episodes=6, size=11, workers=1, progress=False)
    # a folder made by the first expert (meta.json without "expert") is not extended with the current one
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    del meta["expert"]
    (tmp_path / "a" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="collected with"):
        collect(tmp_path / "a", n_episodes=7, size=9, epsilon=0.1, seed=3, workers=1, progress=False)


def test_collect_cli_bad_flags_exit_with_one_line(capsys):
    for argv in (["--size", "30"], ["--epsilon", "1.5"], ["--n_episodes", "0"], ["--workers", "x"]):
        with pytest.raises(SystemExit) as e:
            collect_traj.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err and "\n" not in err and "Traceback" not in err


def test_loader_reports_bad_files_by_name(tmp_path):
    collect(tmp_path, n_episodes=2, size=7, workers=1, progress=False)
    good = episode_path(tmp_path, 0)
    assert len(minigrid_dataset(tmp_path, 12, progress=False)) == 2
    bad = episode_path(tmp_path, 1)
    bad.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match="episode_000001"):
        minigrid_dataset(tmp_path, 12, progress=False)
    ep = load_episode(good)
    np.savez_compressed(bad, **{**ep, "reward": ep["reward"][:-1]})  # mismatched lengths
    with pytest.raises(DataError, match="episode_000001.*reward"):
        minigrid_dataset(tmp_path, 12, progress=False)
    np.savez_compressed(bad, **{**ep, "obs": ep["obs"].astype(np.float32)})  # wrong dtype
    with pytest.raises(DataError, match="episode_000001.*uint8"):
        minigrid_dataset(tmp_path, 12, progress=False)
    np.savez_compressed(bad, obs=ep["obs"], action=ep["action"])  # missing fields
    with pytest.raises(DataError, match="episode_000001.*lacks"):
        minigrid_dataset(tmp_path, 12, progress=False)
    with pytest.raises(DataError, match="collect_traj"):
        minigrid_dataset(tmp_path / "empty", 12, progress=False)


def test_windows_are_cut_and_padded():
    T = 7
    obs = np.arange(T, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 84, 84), np.uint8)
    ep = {"obs": obs, "action": np.array([2, 2, 0, 2, 1, 2, 2]), "reward": np.r_[np.zeros(6), 0.9].astype(np.float32),
          "done": np.r_[np.zeros(6, bool), True]}
    t = consecutive(EpisodeStore.from_episodes([with_returns_to_go(ep)]), 5).tensors  # minigrid_dataset's windows
    w = [{k: v[i].numpy() for k, v in t.items()} for i in range(len(t["valid"]))]
    assert len(w) == 2
    assert w[0]["valid"].all() and w[1]["valid"].tolist() == [True, True, False, False, False]
    assert w[1]["action"].tolist() == [2, 2, ACTION_PAD, ACTION_PAD, ACTION_PAD]
    assert (w[1]["obs"][2:] == 6).all() and w[1]["obs"].dtype == np.uint8
    assert np.allclose(w[0]["rtg"][:, 0], 0.9) and np.allclose(w[1]["rtg"][:, 0], [0.9, 0.9, 0, 0, 0])


def test_dataset_keeps_uint8_and_batches_float(tmp_path, capsys):
    collect(tmp_path, n_episodes=3, size=9, workers=1, progress=False)
    data = minigrid_dataset(tmp_path, 10, progress=False)
    assert data.tensors["obs"].dtype == torch.uint8 and data.tensors["action"].dtype == torch.int64
    b = data.batch(torch.arange(2))
    assert b["obs"].dtype == torch.float32 and 0 <= b["obs"].min() and b["obs"].max() <= 1
    # 9x9 episodes take 10-15 steps: cutting them into 10-step windows is said once, on stderr
    lengths = [len(load_episode(episode_path(tmp_path, i))["action"]) for i in range(3)]
    err = capsys.readouterr().err
    assert f"{sum(n > 10 for n in lengths)} of 3 episodes" in err and "start afresh" in err
    minigrid_dataset(tmp_path, max(lengths), progress=False)
    assert "start afresh" not in capsys.readouterr().err


# ---------------------------------------------------------------- train script


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_parses(line):
    argv = shlex.split(line)[2:]
    args, explicit = train.parse_args(argv)
    mc, tc = split_args(args, "minigrid")
    assert (mc.context_length, mc.sections, mc.n_layer, mc.n_head, mc.d_model) == (30, 3, 8, 10, 64)
    assert tc.lr == 3e-4 and not args.smoke
    assert "num_mem_tokens" in explicit


def test_budget_overrides_and_bad_values():
    args, _ = train.parse_args(["--epochs", "2", "--batch_size", "4", "--device", "cpu", "--eval_sizes", "11,31"])
    assert (args.epochs, args.batch_size, args.device, args.eval_sizes) == (2, 4, "cpu", [11, 31])
    args, _ = train.parse_args(["--smoke", "--epochs", "3"])
    assert args.epochs == 3 and args.context_length == train.SMOKE["context_length"]
    for bad, flag in ((["--eval_sizes", "10"], "eval_sizes"), (["--eval_episodes", "0"], "--eval_episodes"),
                      (["--eval_env_timeout", "0"], "--eval_env_timeout"),
                      (["--eval_max_steps", "0"], "--eval_max_steps")):
        with pytest.raises(ConfigError, match=flag):
            train.parse_args(bad)


def test_env_evaluate_keeps_the_env_timeout_and_the_rollout_cap_apart(monkeypatch):
    """ENV.evaluate depends on the run's flags alone: --eval_env_timeout is the env's T, --eval_max_steps the cap."""
    from MinigridMemory.MinigridMemory_src import minigrid_eval

    calls = []
    monkeypatch.setattr(minigrid_eval, "evaluate_size", lambda model, size, *a, **kw: calls.append((size, a, kw))
                        or {"return": 0.5, "success": 0.5, "unfinished": 0.0})
    args, _ = train.parse_args(["--eval_sizes", "11,21", "--eval_env_timeout", "400", "--eval_max_steps", "90"])
    metrics = minigrid_eval.ENV.evaluate(None, args, "validation")
    assert [(size, a) for size, a, _ in calls] == [(11, (20, 400, 90, 100)), (21, (20, 400, 90, 100))]
    assert all(kw["split"] == "validation" for *_, kw in calls) and set(metrics) == {
        f"{k}_{s}" for k in ("return", "success", "unfinished") for s in (11, 21)}
    assert minigrid_eval.ENV.selection_score(metrics) == 0.5
    args, _ = train.parse_args([])
    assert (args.eval_episodes, args.eval_env_timeout, args.eval_max_steps) == (100, None, 1000)
    assert minigrid_eval.ENV.seeds(2, "validation") == [2_000_000, 2_000_001]


def test_evaluation_tells_unfinished_from_wrong_object():
    from MinigridMemory.diagnostics.image_cue import cue_model
    from MinigridMemory.MinigridMemory_src.minigrid_eval import evaluate_size

    model = cue_model("DT", 3, 1)
    cut = evaluate_size(model, 7, n_episodes=4, max_steps=1)  # one step never reaches an object
    assert cut == {"return": 0.0, "success": 0.0, "unfinished": 1.0}
    full = evaluate_size(model, 7, n_episodes=4, max_steps=300)
    assert 0.0 <= full["unfinished"] <= 1.0 and full["success"] + full["unfinished"] <= 1.0


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.run_main(train.main, ["--data_dir", str(tmp_path / "none"), "--runs_dir", str(tmp_path)])
    assert e.value.code == 2 and "collect_traj.py" in capsys.readouterr().err


def test_smoke_run_end_to_end(tmp_path):
    argv = shlex.split(README_LINES[0])[2:] + ["--smoke", "--no_wandb", "--runs_dir", str(tmp_path / "runs"),
                                               "--data_dir", str(tmp_path / "data")]
    res = train.main(argv)
    metrics = res["runs"]["1"]["metrics"]
    assert set(metrics) == {f"{k}_{s}" for k in ("return", "success", "unfinished") for s in (7, 9)}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert (tmp_path / "data" / "smoke" / "episode_000000.npz").exists()
    saved = json.loads((tmp_path / "runs" / "minigrid" / "RATE" / "results.json").read_text())
    assert saved["model_config"]["env"] == "minigrid" and saved["model_config"]["num_mem_tokens"] == 15
    # the generic checkpoint evaluation rebuilds the protocol from the recorded flags: the same metrics
    from RATE_model.tools import evaluate

    (again,) = evaluate.main([str(tmp_path / "runs" / "minigrid" / "RATE" / "seed_1" / "checkpoints" / "last.pt")])
    assert {k: v for k, v in again.items() if k not in ("checkpoint", "env", "split")} == metrics
    check_attention_tool(tmp_path / "runs" / "minigrid" / "RATE" / "seed_1" / "checkpoints" / "last.pt",
                         tmp_path / "attention", 11)


# ---------------------------------------------------------------- notebook


def test_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2


def test_measure_plays_the_expert_on_the_protocol(capsys, tmp_path):
    """``tools.measure --env minigrid``: the noise-free expert solves every protocol grid, and an episode longer
    than ``--eval_max_steps`` counts as a failure with return 0, as at evaluation."""
    from RATE_model.tools import measure

    (m,) = measure.main(["--env", "minigrid", "--size", "9", "--episodes", "6", "--workers", "2"])
    assert (m["policy"], m["episodes"], m["success"], m["cue_seen"]) == ("expert", 6, 1.0, 1.0)
    assert 0.9 < m["return"] < 1.0 and m["flags"]["size"] == 9 and m["flags"]["epsilon"] == 0.0
    (capped,) = measure.main(["--env", "minigrid", "--size", "9", "--episodes", "6", "--workers", "1",
                              "--eval_max_steps", "3"])
    assert (capped["success"], capped["return"], capped["length"]) == (0.0, 0.0, 3.0)
