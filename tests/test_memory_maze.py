"""Memory Maze 9×9: env wrapper, oracle, episode files, the reference window rule, vector env, train-script
commands (the paper README's lines with --smoke)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("memory_maze")

from MemoryMaze.diagnostics import closed_loop, measure_expert  # noqa: E402
from MemoryMaze.get_data.collect_data import DATA_DIR, TRAIN_SEED_BASE, collect, episode_seeds  # noqa: E402
from MemoryMaze.MemoryMaze_src import mem_maze_eval  # noqa: E402
from MemoryMaze.MemoryMaze_src import train_mem_maze as train  # noqa: E402
from MemoryMaze.MemoryMaze_src.expert import (  # noqa: E402
    VIEW_CELLS,
    VisibleOracle,
    oracle_action,
    oracle_episode,
    visible,
    visible_cells,
)
from MemoryMaze.MemoryMaze_src.mem_maze_data import load_episode, mem_maze_dataset  # noqa: E402
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV, default_batch_size  # noqa: E402
from MemoryMaze.MemoryMaze_src.memory_maze_env import (  # noqa: E402
    FORWARD,
    FORWARD_LEFT,
    FORWARD_RIGHT,
    LEFT,
    OBS_SHAPE,
    RIGHT,
    START_METHOD,
    MemoryMazeEnv,
)
from RATE_model.collect import episode_path  # noqa: E402
from RATE_model.config import ConfigError, split_args  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.tools import evaluate, pretrain_encoder, step_loss  # noqa: E402
from RATE_model.vector import GymVectorEnv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The Memory Maze lines of the paper README, verbatim: RATE, DT, RMT, TrXL.
README_LINES = [
    "python3 -W ignore MemoryMaze/MemoryMaze_src/train_mem_maze.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'RATE' --text 'RATE' --nmt 5 --mem_len 300 --n_head_ca 2 --mrv_act 'relu' --skip_dec_attn",
    "python3 -W ignore MemoryMaze/MemoryMaze_src/train_mem_maze.py --model_mode 'DT' --arch_mode 'TrXL' "
    "--ckpt_folder 'DT' --text 'DT' --nmt 0 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 -W ignore MemoryMaze/MemoryMaze_src/train_mem_maze.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'RMT' --text 'RMT' --nmt 5 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 -W ignore MemoryMaze/MemoryMaze_src/train_mem_maze.py --model_mode 'RATE' --arch_mode 'TrXL' "
    "--ckpt_folder 'TrXL' --text 'TrXL' --nmt 0 --mem_len 360 --n_head_ca 0 --mrv_act 'no_act'",
]


def argv_of(line: str) -> list[str]:
    """The flags of a README line (after ``python3 [-W ignore] script``)."""
    words = shlex.split(line)
    return words[next(i for i, w in enumerate(words) if w.endswith(".py")) + 1:]


@pytest.fixture(scope="module")
def env():
    e = MemoryMazeEnv(max_steps=300, privileged=True)
    yield e
    e.close()


# ---------------------------------------------------------------- env and oracle


def test_wrapper_shapes_seeding_and_episode_end(env):
    obs, info = env.reset(seed=5)
    assert obs.shape == OBS_SHAPE == (3, 64, 64) and obs.dtype == np.uint8 and info["targets"] == 0.0
    layout = info["state"]["maze_layout"].copy()
    assert layout.shape == (9, 9) and set(np.unique(layout)) == {0, 1}
    again, info2 = env.reset(seed=5)
    assert np.array_equal(obs, again) and np.array_equal(layout, info2["state"]["maze_layout"])
    assert not np.array_equal(layout, env.reset(seed=6)[1]["state"]["maze_layout"])
    plain = MemoryMazeEnv(max_steps=3)  # what evaluation sees: the same camera image, no privileged state
    try:
        first, plain_info = plain.reset(seed=5)
        assert np.array_equal(first, obs) and "state" not in plain_info
        ends = [plain.step(FORWARD)[3] for _ in range(3)]
        assert ends == [False, False, True]
        _, reward, terminated, truncated, _ = plain.step(FORWARD)  # past the end: harmless, nothing happens
        assert (reward, terminated, truncated) == (0.0, False, True)
        with pytest.raises(ValueError, match="0..5"):
            plain.step(6)
    finally:
        plain.close()
    with pytest.raises(ValueError, match="max_steps"):
        MemoryMazeEnv(max_steps=1001)


def _state(heading_deg: float, target: tuple[float, float]) -> dict[str, np.ndarray]:
    """An open 9×9 maze with the agent at the centre of cell (4, 4)."""
    h = np.radians(heading_deg)
    return {"agent_pos": np.array([4.5, 4.5]), "agent_dir": np.array([np.cos(h), np.sin(h)]),
            "target_pos": np.asarray(target, float), "maze_layout": np.ones((9, 9), np.uint8)}


def test_oracle_turns_towards_the_next_cell_of_the_shortest_path():
    rng = np.random.default_rng(0)
    assert oracle_action(_state(0, (7.5, 4.5)), rng) == FORWARD  # straight ahead along +x
    assert oracle_action(_state(0, (4.5, 7.5)), rng) == LEFT  # 90° counter-clockwise: turn left on the spot
    assert oracle_action(_state(0, (4.5, 1.5)), rng) == RIGHT
    assert oracle_action(_state(-25, (7.5, 4.5)), rng) == FORWARD_LEFT  # a little off: steer while moving
    assert oracle_action(_state(25, (7.5, 4.5)), rng) == FORWARD_RIGHT
    walled = _state(0, (6.5, 4.5))
    walled["maze_layout"][:, 5] = 0  # a wall across x = 5 with one gap at y = 8: the path goes up first
    walled["maze_layout"][8, 5] = 1
    assert oracle_action(walled, rng) == LEFT
    assert {oracle_action(_state(0, (7.5, 4.5)), rng, epsilon=1.0) for _ in range(200)} == set(range(6))


def test_walls_block_the_view_and_the_field_of_view_is_80_degrees():
    layout = np.ones((9, 9), np.uint8)
    pos, east = np.array([1.5, 4.5]), np.array([1.0, 0.0])
    ahead, left, behind = [5.5, 4.5], [1.5, 7.5], [0.5, 4.5]
    assert visible(layout, pos, east, [ahead, left, behind]).tolist() == [True, False, False]
    assert not visible(layout, pos, east, [[1.5 + VIEW_CELLS + 0.5, 4.5]])[0]  # too far to make out
    walled = layout.copy()
    walled[:, 3] = 0  # a wall across x = 3, open only at y = 0
    walled[0, 3] = 1
    assert not visible(walled, pos, east, [ahead])[0]  # behind the wall
    assert visible(walled, np.array([2.5, 0.5]), east, [[5.5, 0.5]])[0]  # through the gap
    cells = visible_cells(walled, pos, east)
    assert cells[4, 2] and cells[4, 3] and cells[4, 1]  # open floor ahead, the wall's face, the agent's own cell
    assert not cells[4, 4] and not cells[4, 0] and not cells[8, 1]  # behind the wall, behind the agent, to the side


def _drive(layout, pos, heading_deg, targets, order, oracle, steps=600):
    """A point robot on ``layout`` (forward 0.2 cells, turns 18°; a reach within 0.35 of the current target
    assigns the next one of ``order``): the steps each assignment took, the actions taken and the step at
    which the oracle first saw each target."""
    pos, h = np.asarray(pos, float), np.radians(heading_deg)
    targets = np.asarray(targets, float)
    rng, k, trips, actions, t0, seen = np.random.default_rng(0), 0, [], [], 0, {}
    for t in range(steps):
        heading = np.array([np.cos(h), np.sin(h)])
        state = {"agent_pos": pos.copy(), "agent_dir": heading, "target_pos": targets[order[k]],
                 "targets_pos": targets, "maze_layout": layout}
        a = oracle.act(state, rng)
        actions.append(a)
        for i in oracle.targets:
            seen.setdefault(i, t)
        h += np.radians({LEFT: 18, RIGHT: -18, FORWARD_LEFT: 9, FORWARD_RIGHT: -9}.get(a, 0))
        if a in (FORWARD, FORWARD_LEFT, FORWARD_RIGHT):
            nxt = pos + 0.2 * np.array([np.cos(h), np.sin(h)])
            if layout[int(nxt[1]), int(nxt[0])]:
                pos = nxt
        if np.linalg.norm(pos - targets[order[k]]) < 0.35:
            trips.append(t + 1 - t0)
            t0, k = t + 1, k + 1
            if k == len(order):
                break
    return trips, actions, seen


def test_visible_oracle_explores_until_it_has_seen_the_target_then_goes_straight_back():
    layout = np.ones((9, 9), np.uint8)
    layout[4, :] = 0  # a wall across y = 4 with one door at x = 7: two rooms
    layout[4, 7] = 1
    start, below, above = (1.5, 1.5), (6.5, 1.5), (1.5, 7.5)
    oracle = VisibleOracle()
    trips, actions, seen = _drive(layout, start, 180.0, [above, below], [0, 1, 0], oracle)
    assert len(trips) == 3 and oracle.seen_at_assignment == [False, True, True]
    straight = 13 * 5 + 12  # the shortest way back through the door: 13 cells at 5 steps each, and turning
    assert trips[2] <= straight < trips[0], trips  # the first trip searched; the third went straight there
    # Until the target comes into view, where it is cannot change what the oracle does.
    other = VisibleOracle()
    _, other_actions, _ = _drive(layout, start, 180.0, [(4.5, 7.5), below], [0, 1, 0], other, steps=seen[0])
    assert other_actions == actions[:seen[0]] and seen[0] > 10


@pytest.mark.parametrize("oracle", ["visible", "privileged"])
def test_oracle_reaches_targets_and_beats_random(env, oracle):
    ep = oracle_episode(env, seed=5, n_steps=300, epsilon=0.0, noise_seed=0, oracle=oracle)
    assert ep["obs"].shape == (300, 64, 64, 3) and ep["obs"].dtype == np.uint8
    assert ep["action"].shape == (300, 6) and np.array_equal(ep["action"].sum(1), np.ones(300))
    assert ep["reward"].dtype == np.float32 and set(np.unique(ep["reward"])) <= {0.0, 1.0}
    assert ep["reward"].sum() >= 3 and env.targets == ep["reward"].sum()  # the reward counts reached targets
    assert env._info()["targets_first_half"] == ep["reward"][:150].sum()  # the first half of max_steps 300
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    random_return = sum(env.step(int(rng.integers(6)))[1] for _ in range(300))
    assert random_return < ep["reward"].sum()


def test_visible_oracle_sees_what_the_camera_renders_and_repeats_its_episode(env):
    obs, info = env.reset(seed=7)
    oracle, rng, agree = VisibleOracle(epsilon=0.3), np.random.default_rng(0), []
    for _ in range(120):
        state = info["state"]
        seen = visible(state["maze_layout"], state["agent_pos"], state["agent_dir"], state["targets_pos"])
        agree += [(s, p) for s, p in zip(seen, env.target_pixels(), strict=True)]
        _, _, _, _, info = env.step(oracle.act(state, rng))
    seen, pixels = np.array(agree).T
    assert seen.sum() >= 10 and (pixels[seen > 0] >= 3).mean() >= 0.9  # what it counts as seen is on screen
    assert (pixels[seen == 0] >= 3).sum() < (pixels >= 3).sum()  # (and it misses some: it is conservative)
    a = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=3)
    b = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=4)
    assert not np.array_equal(a["action"], c["action"])


def test_measure_expert_reports_each_policy_and_its_halves(capsys):
    (vis,) = measure_expert.main(["--policies", "visible", "--episodes", "2", "--eval_max_steps", "60", "--workers",
                                  "2", "--json"])
    line = json.loads(capsys.readouterr().out.strip())  # --json: exactly one JSON line
    assert line == json.loads(json.dumps(vis))
    assert (vis["policy"], vis["episodes"], vis["max_steps"]) == ("visible", 2, 60)
    assert vis["return"] == pytest.approx(vis["return_first_half"] + vis["return_second_half"])
    assert 0.0 <= vis["seen_at_assignment"] <= 1.0 and vis["steps_per_s"] > 0
    (random,) = measure_expert.main(["--policies", "random", "--episodes", "2", "--eval_max_steps", "60",
                                     "--workers", "2"])
    assert "random: return" in capsys.readouterr().out and "seen_at_assignment" not in random
    assert vis["return"] >= random["return"]
    with pytest.raises(ConfigError, match="unknown policy 'dreamer'"):
        measure_expert.main(["--policies", "dreamer"])
    with pytest.raises(ConfigError, match="epsilon"):
        measure_expert.main(["--epsilon", "1.5"])
    with pytest.raises(ConfigError, match="max_steps"):
        measure_expert.main(["--eval_max_steps", "1001"])


def test_evaluation_workers_default_to_two_per_core_within_memory(monkeypatch):
    monkeypatch.setattr(mem_maze_eval.os, "cpu_count", lambda: 16)
    pages = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": int(100 * 2**30 / 4096)}  # 100 GiB free: 32 workers
    monkeypatch.setattr(mem_maze_eval.os, "sysconf", lambda name: pages[name])
    assert default_batch_size() == 32
    pages["SC_AVPHYS_PAGES"] = int(7 * 2**30 / 4096)  # 7 GiB: only 4 simulators fit
    assert default_batch_size() == 4
    pages["SC_AVPHYS_PAGES"] = 1
    assert default_batch_size() == 1


def test_vector_env_matches_single_env(env):
    seeds = ENV.seeds(2)
    with GymVectorEnv(partial(MemoryMazeEnv, max_steps=2), seeds, info_keys=("targets",),
                      context=START_METHOD) as venv:  # this process has rendered (the fixture): no fork
        obs = venv.reset()
        assert obs.shape == (2, *OBS_SHAPE) and obs.dtype == np.float32 and obs.max() <= 1.0
        assert np.allclose(obs * 255, np.stack([env.reset(seed=s)[0] for s in seeds]), atol=1e-3)
        dones = [venv.step(np.full(2, FORWARD))[2] for _ in range(2)]
        assert not dones[0].any() and dones[1].all()


# ---------------------------------------------------------------- data


def write_episode(path: Path, T: int, reward_steps: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ep = {"obs": rng.integers(0, 256, (T, 64, 64, 3), dtype=np.uint8),
          "action": np.eye(6, dtype=np.float32)[rng.integers(0, 6, T)], "reward": np.zeros(T, np.float32)}
    ep["reward"][reward_steps] = 1.0
    np.savez(path, **ep)
    return ep


def test_reference_window_rule_on_a_hand_made_episode(tmp_path):
    # rewards: 2 in [0, 90), 1 in [90, 180), 2 in [180, 270), 0 in [270, 360), 3 in [360, 450), 2 after 500
    ep = write_episode(tmp_path / "a.npz", 600, [5, 80, 100, 200, 269, 361, 362, 449, 520, 599])
    write_episode(tmp_path / "b.npz", 150, [0, 1, 95, 96], seed=1)  # too short for its second window
    data = mem_maze_dataset(tmp_path, window=90, progress=False)
    assert data.epoch_windows(0, 0).tolist() == [[0, 0], [0, 180], [0, 360], [1, 0]]
    assert data.store.lengths.tolist() == [500, 150]  # only the first 500 steps are read
    b = data.batch([1])  # the second window: episode 0 from step 180
    assert b["obs"].shape == (1, 90, *OBS_SHAPE) and b["valid"].all()
    expect = ep["obs"][180:270].transpose(0, 3, 1, 2) / 255.0
    assert np.allclose(b["obs"][0].numpy(), expect, atol=1e-6)
    assert b["action"][0].tolist() == ep["action"][180:270].argmax(1).tolist()
    rtg = np.cumsum(ep["reward"][::-1])[::-1]  # return-to-go of the whole episode, rewards after 500 included
    assert b["rtg"][0, :, 0].tolist() == rtg[180:270].tolist() and b["rtg"][0, 0, 0] == 7.0
    assert len(mem_maze_dataset(tmp_path, window=90, min_window_reward=3, progress=False)) == 1
    overlapping = mem_maze_dataset(tmp_path, window=90, min_window_reward=0, progress=False, stride=30)
    assert overlapping.epoch_windows(0, 0).tolist() == [[0, s] for s in range(0, 410, 30)] + [[1, 0], [1, 30], [1, 60]]
    with pytest.raises(DataError, match="window_min_reward"):
        mem_maze_dataset(tmp_path, window=90, min_window_reward=9, progress=False)


def test_bad_episode_files_are_one_line_errors(tmp_path):
    path = tmp_path / "ep.npz"
    ep = write_episode(path, 20, [3])
    np.savez(path, obs=ep["obs"][..., :2], action=ep["action"], reward=ep["reward"])
    with pytest.raises(DataError, match=r"ep.npz: obs has shape \(20, 64, 64, 2\).*collect_data"):
        load_episode(path)
    np.savez(path, obs=ep["obs"], action=ep["action"], reward=np.full(20, np.nan, np.float32))
    with pytest.raises(DataError, match="reward holds NaN"):
        load_episode(path)
    np.savez(path, obs=ep["obs"], reward=ep["reward"])
    with pytest.raises(DataError, match=r"lacks fields \['action'\]"):
        load_episode(path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="corrupt or unreadable"):
        load_episode(path)
    with pytest.raises(DataError, match="collect_data.py"):
        mem_maze_dataset(tmp_path / "missing", window=90)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no \*.npz files in"):
        mem_maze_dataset(empty, window=90)


def test_collection_files_resume_and_seeds(tmp_path):
    stats = collect(tmp_path, n_episodes=2, max_steps=15, workers=1, progress=False)
    assert stats["written"] == 2 and stats["steps"] == 30 and "targets_per_episode" in stats
    assert collect(tmp_path, n_episodes=2, max_steps=15, workers=1, progress=False)["written"] == 0
    with pytest.raises(ValueError, match="collected with"):
        collect(tmp_path, n_episodes=2, max_steps=16, workers=1, progress=False)
    ep = load_episode(episode_path(tmp_path, 1))
    assert ep["obs"].shape == (15, *OBS_SHAPE) and ep["action"].max() < 6
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (meta["max_steps"], meta["oracle"], meta["expert"]) == (15, "visible", "visible_frontier_v1")
    assert 0 <= stats["seen_at_assignment"] <= 1
    assert set(np.load(episode_path(tmp_path, 0))) == {"obs", "action", "reward"}  # nothing but the reference's fields
    with pytest.raises(ValueError, match="collected with"):  # the other oracle never extends a folder
        collect(tmp_path, n_episodes=2, max_steps=15, workers=1, progress=False, oracle="privileged")
    old = collect(tmp_path / "old", n_episodes=1, max_steps=15, workers=1, progress=False, oracle="privileged")
    assert old["written"] == 1 and json.loads((tmp_path / "old" / "meta.json").read_text())["oracle"] == "privileged"
    maze_seeds = [episode_seeds(0, i)[0] for i in range(100)]
    assert min(maze_seeds) >= TRAIN_SEED_BASE > max(ENV.seeds(100)) and len(set(maze_seeds)) == 100
    for bad in (["--max_steps", "0"], ["--epsilon", "2"], ["--n_episodes", "0"]):
        r = subprocess.run([sys.executable, "MemoryMaze/get_data/collect_data.py", *bad, "--out_dir",
                            str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --")


# ---------------------------------------------------------------- train script


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_parses(line):
    args, explicit = train.parse_args(argv_of(line))
    train.check_args(args)
    mc, tc = split_args(args, "memory_maze")
    assert (mc.context_length, mc.sections, mc.n_layer, mc.n_head, mc.d_model) == (30, 3, 6, 8, 64)
    assert (mc.dropout, mc.dropatt) == (0.5, 0.2)
    assert (args.window_min_reward, args.eval_max_steps, args.eval_episodes, args.target_return) == (2, 1000, 100, None)
    assert ENV.target(args) == 18.1 == ENV.target({"target_return": None})  # None: the protocol's target
    assert "num_mem_tokens" in explicit and not args.smoke and args.eval_batch_size is None


def test_budget_overrides_and_bad_values(tmp_path):
    args, _ = train.parse_args(["--epochs", "2", "--batch_size", "4", "--device", "cpu", "--eval_episodes", "10"])
    assert (args.epochs, args.batch_size, args.device, args.eval_episodes) == (2, 4, "cpu", 10)
    with pytest.raises(ConfigError, match="eval_max_steps"):
        train.check_args(train.parse_args(["--eval_max_steps", "1001"])[0])
    with pytest.raises(ConfigError, match="eval_batch_size"):
        train.check_args(train.parse_args(["--eval_batch_size", "0"])[0])
    with pytest.raises(ConfigError, match="window_stride"):
        train.check_args(train.parse_args(["--window_stride", "0"])[0])
    with pytest.raises(ConfigError, match="target_return takes one value"):
        train.check_args(train.parse_args(["--target_return", "18.1,12"])[0])
    args, _ = train.parse_args(["--target_return", "9.5"])
    assert args.target_return == (9.5,) and ENV.target(args) == 9.5
    assert ENV.target({"target_return": 12}) == 12.0  # a checkpoint recorded before the flag took a list
    r = subprocess.run([sys.executable, "-W", "ignore", "MemoryMaze/MemoryMaze_src/train_mem_maze.py", "--data_dir",
                        str(tmp_path / "none"), "--no_wandb"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "collect_data.py" in r.stderr


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_runs_with_smoke(line, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "memory_maze_data"  # shared: the first command collects the smoke data
    runs = tmp_path_factory.mktemp("runs")
    res = train.main(argv_of(line) + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir", str(data)])
    m = res["runs"]["1"]["metrics"]
    assert m["episodes_n"] == 2 and [e["seed"] for e in m["episodes"]] == ENV.seeds(2)
    assert m["return"] == pytest.approx(np.mean([e["return"] for e in m["episodes"]]))
    assert m["return_first_half"] + m["return_second_half"] == pytest.approx(m["return"])
    assert all(0 <= e["return_first_half"] <= e["return"] for e in m["episodes"])
    folder = argv_of(line)[argv_of(line).index("--ckpt_folder") + 1]
    saved = json.loads((runs / "memory_maze" / folder / "results.json").read_text())
    assert saved["model_config"]["env"] == "memory_maze" and (data / "smoke" / "episode_000003.npz").exists()


def test_pretrained_encoder_starts_a_frozen_run(tmp_path_factory, tmp_path):
    data = tmp_path_factory.getbasetemp() / "memory_maze_data" / "smoke"  # the smoke commands' data
    collect(data, progress=False, **train.SMOKE_DATA)
    enc, out = tmp_path / "encoder.pt", tmp_path / "rows.jsonl"
    rows = pretrain_encoder.main(["--env", "memory_maze", "--data_dir", str(data), "--heldout_episodes", "1", "--steps",
                                  "4", "--eval_every", "2", "--batch_size", "8", "--d_model", "32", "--precision",
                                  "fp32", "--save_encoder", str(enc), "--out", str(out)])
    assert [r["step"] for r in rows] == [2, 4] and [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert 0 <= rows[-1]["heldout_accuracy"] <= 1 and rows[-1]["majority_accuracy"] > 0
    saved = torch.load(enc, weights_only=True)
    assert saved["info"]["script"] == "RATE_model.tools.pretrain_encoder" and saved["info"]["env"] == "memory_maze"
    assert saved["info"]["last_evaluation"] == rows[-1]
    defaults = pretrain_encoder.parser(ENV).parse_args(["--env", "memory_maze", "--save_encoder", "x.pt"])
    assert (defaults.d_model, defaults.data_dir, defaults.max_episodes) == (64, DATA_DIR, None)  # train script's
    runs = tmp_path / "runs"
    train.main(argv_of(README_LINES[1]) + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir",
                                           str(data.parent), "--init_encoder", str(enc), "--freeze_encoder"])
    last = runs / "memory_maze" / "DT" / "seed_1" / "checkpoints" / "last.pt"
    weights = torch.load(last, weights_only=False)["model"]
    for k, v in saved["obs_encoder"].items():  # trained on top of the pretrained encoder, which stayed fixed
        assert torch.equal(weights[f"enc.obs.{k}"], v), k
    res = step_loss.main([str(last), "--data_dir", str(data), "--out", str(tmp_path / "steps.jsonl")])[0]
    g = res["groups"]  # 4 episodes of 100 steps, every 10-step window (K 5 x N 2)
    assert (res["env"], res["episodes"], res["windows"], g["all"]["steps"]) == ("memory_maze", 4, 40, 400)
    assert g["segment_1"]["steps"] + g["segment_2"]["steps"] == 400 == g["first_window"]["steps"] * 10
    assert g["after_target_reached"]["steps"] + g["other"]["steps"] == 400
    assert g["all"]["loss"] == pytest.approx((g["segment_1"]["loss"] + g["segment_2"]["loss"]) / 2)
    assert [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()] == [res]
    with pytest.raises(ConfigError, match="collect_data.py --seed 1"):  # no held-out folder: the command that makes it
        step_loss.main([str(last), "--data_dir", str(tmp_path / "none")])
    lines = evaluate.main([str(last), "--eval_episodes", "1", "--eval_max_steps", "20", "--target_return", "18.1,5",
                           "--eval_batch_size", "1", "--out", str(tmp_path / "eval.jsonl")])
    assert [r["target_return"] for r in lines] == [18.1, 5.0] and all("episodes" not in r for r in lines)
    full = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in full[0]["episodes"]] == ENV.seeds(1) and full[0]["return"] == lines[0]["return"]
    with pytest.raises(ConfigError, match="eval_max_steps"):
        evaluate.main([str(last), "--eval_max_steps", "1001"])
    recorded = json.loads((last.parent.parent / "results.json").read_text())["metrics"]
    again = evaluate.main([str(last), "--out", str(tmp_path / "again.jsonl")])  # the run's own protocol, from its flags
    assert [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()][0] == {
        **again[0], "episodes": recorded["episodes"]}
    assert {k: v for k, v in again[0].items() if k in recorded} == {k: recorded[k] for k in recorded if k != "episodes"}
    *episodes, total = closed_loop.main([str(last), "--episodes", "1", "--max_steps", "20"])
    assert [e["seed"] for e in episodes] == ENV.seeds(1) and total["episodes"] == 1
    assert total["reached_after_sighting"] <= total["sightings"] and 0 <= total["target_in_view"] <= 1
    assert sum(total["actions"]) == pytest.approx(1.0) and total["return"] == episodes[0]["return"]
    with pytest.raises(ConfigError, match="checkpoint or --oracle"):
        closed_loop.main([str(last), "--oracle"])
    for bad, match in ((["--heldout_episodes", "4"], "leaves none of the 4"), (["--steps", "0"], "--steps"),
                       (["--device", "gpu7"], "not a device name"),
                       (["--data_dir", str(tmp_path / "none")], "collect_data.py")):
        r = subprocess.run([sys.executable, "-m", "RATE_model.tools.pretrain_encoder", "--env", "memory_maze",
                            "--data_dir", str(data), "--save_encoder", str(tmp_path / "x.pt"), *bad], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
        assert not (tmp_path / "x.pt").exists()


def test_step_groups_split_a_hand_made_window():
    rewards = np.zeros((2, 6), np.float32)
    rewards[0, 1] = 1  # reached at step 1: steps 2.. follow a reached target
    actions = np.array([[0, 0, 1, 1, 2, 2], [3, 3, 3, 3, 3, 3]])
    g = mem_maze_eval.maze_groups(np.array([0, 90]), actions, rewards, segment=3)
    assert g["first_window"].tolist() == [[True] * 6, [False] * 6]
    assert g["after_target_reached"].tolist() == [[False, False, True, True, True, True], [False] * 6]
    assert g["action_changed"].tolist() == [[False, False, True, False, True, False], [False] * 6]
    assert g["action_repeated"][1].tolist() == [False] + [True] * 5
    assert g["segment_2"].tolist() == [[False] * 3 + [True] * 3] * 2


def test_closed_loop_counts_sightings_reaches_and_moves():
    rec = closed_loop.Recorder(seed=0, max_steps=10)
    rec.in_view = [False, True, True, False, True, False, False]  # the current target comes into view twice
    rec.rewards = [0, 0, 1, 0, 0, 0, 0]  # the first sighting is reached, the second is not
    rec.pos = [np.array([1.5, 1.5])] * 3 + [np.array([2.5, 1.5])] * 5  # one move, between steps 2 and 3
    rec.actions = [1, 1, 2, 3, 1, 1, 0]
    s = rec.stats()
    rec.close()
    assert (s["return"], s["sightings"], s["reached_after_sighting"], s["cells_visited"]) == (1.0, 2, 1, 2)
    assert s["target_in_view"] == pytest.approx(3 / 7) and s["still"] == pytest.approx(6 / 7)
    assert s["actions"] == pytest.approx([1 / 7, 4 / 7, 1 / 7, 1 / 7, 0, 0])
    rec.since_seen = [0, 120, None]  # three targets assigned: in view, seen 120 steps before, never seen
    second = json.loads(json.dumps({**rec.stats(), "sightings": 0, "reached_after_sighting": 0}, allow_nan=False))
    total = closed_loop.summary([s, second])  # what --out holds is strict JSON and sums the same
    assert (total["sightings"], total["reached_after_sighting"], total["reached_share"]) == (2, 1, 0.5)
    assert (total["assigned"], total["seen_before_assignment"], total["seen_within_90_steps"]) == (3, 2 / 3, 1 / 3)
    assert total["median_steps_since_seen"] == 60.0
