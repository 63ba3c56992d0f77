"""Memory Maze 9×9: episode files, the reference window rule, the train-script commands (the paper README's
lines with --smoke) and the tools on their checkpoints (the env and its oracles: test_memory_maze_env.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("memory_maze")

from MemoryMaze.diagnostics import closed_loop  # noqa: E402
from MemoryMaze.get_data import collect_data  # noqa: E402
from MemoryMaze.get_data.collect_data import DATA_DIR, TRAIN_SEED_BASE, collect, episode_seeds  # noqa: E402
from MemoryMaze.MemoryMaze_src import mem_maze_eval  # noqa: E402
from MemoryMaze.MemoryMaze_src import train_mem_maze as train  # noqa: E402
from MemoryMaze.MemoryMaze_src.mem_maze_data import load_episode, mem_maze_dataset  # noqa: E402
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV  # noqa: E402
from MemoryMaze.MemoryMaze_src.memory_maze_env import (  # noqa: E402
    OBS_SHAPE,
)
from RATE_model.collect import episode_path  # noqa: E402
from RATE_model.config import ConfigError, split_args  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.tools import evaluate, pretrain_encoder, step_loss  # noqa: E402
from tests.helpers import check_attention_tool, cli_error  # noqa: E402

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


def test_collection_files_resume_and_seeds(tmp_path, capsys):
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
        assert cli_error(collect_data.main, [*bad, "--out_dir", str(tmp_path / "x")], capsys).startswith("error: --")


# ---------------------------------------------------------------- train script


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_parses(line):
    args, explicit = train.parse_args(argv_of(line))
    mc, tc = split_args(args, "memory_maze")
    assert (mc.context_length, mc.sections, mc.n_layer, mc.n_head, mc.d_model) == (30, 3, 6, 8, 64)
    assert (mc.dropout, mc.dropatt) == (0.5, 0.2)
    assert (args.window_min_reward, args.eval_max_steps, args.eval_episodes, args.target_return) == (2, 1000, 100, None)
    assert ENV.target(args) == 18.1 == ENV.target({"target_return": None})  # None: the protocol's target
    assert "num_mem_tokens" in explicit and not args.smoke and args.eval_batch_size is None


def test_budget_overrides_and_bad_values(tmp_path, capsys):
    args, _ = train.parse_args(["--epochs", "2", "--batch_size", "4", "--device", "cpu", "--eval_episodes", "10"])
    assert (args.epochs, args.batch_size, args.device, args.eval_episodes) == (2, 4, "cpu", 10)
    with pytest.raises(ConfigError, match="eval_max_steps"):
        train.parse_args(["--eval_max_steps", "1001"])
    with pytest.raises(ConfigError, match="eval_batch_size"):
        train.parse_args(["--eval_batch_size", "0"])
    with pytest.raises(ConfigError, match="window_stride"):
        train.parse_args(["--window_stride", "0"])
    with pytest.raises(ConfigError, match="target_return takes one value"):
        train.parse_args(["--target_return", "18.1,12"])
    args, _ = train.parse_args(["--target_return", "9.5"])
    assert args.target_return == (9.5,) and ENV.target(args) == 9.5
    assert ENV.target({"target_return": 12}) == 12.0  # a checkpoint recorded before the flag took a list
    assert "collect_data.py" in cli_error(train.main, ["--data_dir", str(tmp_path / "none"), "--no_wandb"], capsys)


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


def test_pretrained_encoder_starts_a_frozen_run(tmp_path_factory, tmp_path, capsys):
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
    assert check_attention_tool(last, tmp_path / "attention", 12)["cue_steps"] == [0]
    *episodes, total = closed_loop.main([str(last), "--episodes", "1", "--max_steps", "20"])
    assert [e["seed"] for e in episodes] == ENV.seeds(1) and total["episodes"] == 1
    assert total["reached_after_sighting"] <= total["sightings"] and 0 <= total["target_in_view"] <= 1
    assert sum(total["actions"]) == pytest.approx(1.0) and total["return"] == episodes[0]["return"]
    with pytest.raises(ConfigError, match="checkpoint or --oracle"):
        closed_loop.main([str(last), "--oracle"])
    for bad, match in ((["--heldout_episodes", "4"], "leaves none of the 4"), (["--steps", "0"], "--steps"),
                       (["--device", "gpu7"], "not a device name"),
                       (["--data_dir", str(tmp_path / "none")], "collect_data.py")):
        assert match in cli_error(pretrain_encoder.main, ["--env", "memory_maze", "--data_dir", str(data),
                                                         "--save_encoder", str(tmp_path / "x.pt"), *bad], capsys)
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
