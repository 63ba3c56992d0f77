"""T-Maze: env rules, oracle data, padding, seed commands, and the end-to-end pipeline."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from RATE_model.data import DataError
from TMaze_new.TMaze_new_src import train_tmaze
from TMaze_new.TMaze_new_src.tmaze_data import load_or_generate, oracle_episodes, tmaze_dataset
from TMaze_new.TMaze_new_src.tmaze_env import DOWN, LEFT, RIGHT, UP, TMazeVecEnv
from TMaze_new.TMaze_new_src.tmaze_eval import eval_seeds

COMMANDS = Path(__file__).parent / "data" / "paper_commands.txt"


def tmaze_commands() -> list[list[str]]:
    lines = [ln for ln in COMMANDS.read_text().splitlines() if "train_tmaze.py" in ln]
    return [shlex.split(ln)[2:] for ln in lines]


# ------------------------------------------------------------------------------------------- env
def test_oracle_reaches_correct_goal_in_T_minus_1_steps():
    env = TMazeVecEnv(10, np.array([1, -1]), np.array([0, 1]))
    env.reset()
    for t in range(9):
        obs, rew, done, info = env.step(env.oracle_actions())
        assert done.all() == (t == 8)
    assert rew.tolist() == [1.0, 1.0] and info["success"].tolist() == [1.0, 1.0]


def test_wrong_goal_gives_zero_and_ends():
    env = TMazeVecEnv(6, np.array([1]), np.array([0]))
    env.reset()
    for _ in range(4):
        env.step(np.array([RIGHT]))
    obs, rew, done, _ = env.step(np.array([DOWN]))
    assert rew[0] == 0 and done[0] and obs[0, 0] == -1


def test_observation_hint_flag_noise():
    T = 8
    env = TMazeVecEnv(T, np.array([1, -1]), np.array([3, 4]))
    obs = env.reset()
    assert obs.shape == (2, 4) and obs.dtype == np.float32
    assert obs[:, 1].tolist() == [1, -1] and obs[:, 2].tolist() == [0, 0]
    seen = []
    for t in range(T - 2):
        obs, *_ = env.step(np.array([RIGHT, RIGHT]))
        seen.append(obs)
        assert (obs[:, 1] == 0).all(), "hint only at t = 0"
        assert (obs[:, 2] == (t == T - 3)).all(), "flag only on the junction"
    noise = np.concatenate([o[:, 3] for o in seen])
    assert set(noise.tolist()) <= {-1.0, 0.0, 1.0}


def test_walls_are_no_ops_and_turns_only_at_junction():
    env = TMazeVecEnv(6, np.array([1]), np.array([0]))
    env.reset()
    env.step(np.array([LEFT]))
    assert env.x[0] == 0
    env.step(np.array([UP]))
    assert env.y[0] == 0 and env.x[0] == 0
    for _ in range(10):
        if env.done[0]:
            break
        env.step(np.array([RIGHT]))
    assert env.x[0] == env.L


def test_timeout_ends_episode():
    env = TMazeVecEnv(5, np.array([1]), np.array([0]))
    env.reset()
    done = [env.step(np.array([LEFT]))[2][0] for _ in range(5)]
    assert done == [False, False, False, False, True]


def test_eval_seeds_half_up_half_down():
    goals, seeds = eval_seeds(100)
    assert (goals == 1).sum() == 50 and (goals == -1).sum() == 50 and len(set(seeds)) == 100


def test_noise_depends_only_on_episode_seed():
    a = TMazeVecEnv(9, np.array([1, 1]), np.array([7, 8])).noise[0]
    b = TMazeVecEnv(9, np.array([-1]), np.array([7])).noise[0]
    assert (a == b).all()


# ------------------------------------------------------------------------------------------ data
def test_oracle_data_shapes(tmp_path):
    ep = oracle_episodes(T=12, n_per_side=3)
    assert ep["obs"].shape == (6, 11, 4) and ep["action"].shape == (6, 11)
    assert (ep["reward"][:, -1] == 1).all() and ep["reward"][:, :-1].sum() == 0
    assert (ep["action"][:, :10] == RIGHT).all()
    assert ep["action"][:3, -1].tolist() == [UP] * 3 and ep["action"][3:, -1].tolist() == [DOWN] * 3


def test_dataset_padding_and_cache(tmp_path):
    data = tmaze_dataset(K=4, segment_counts=[1, 2], window_segments=3, n_per_side=5, data_dir=tmp_path, progress=False)
    t = data.tensors
    assert t["obs"].shape == (20, 12, 4) and t["action"].shape == (20, 12) and t["rtg"].shape == (20, 12, 1)
    assert t["action"].dtype == torch.long and t["valid"].dtype == torch.bool
    n_valid = t["valid"].sum(1)
    assert n_valid[:10].eq(3).all() and n_valid[10:].eq(7).all()  # T - 1 steps for T = 4, 8
    pad = ~t["valid"]
    assert (t["action"][pad] == -10).all() and (t["rtg"][pad] == 0).all()
    assert (t["rtg"][~pad] == 1).all()  # every oracle episode succeeds
    # padded observations repeat the last real one
    assert torch.equal(t["obs"][0, 5], t["obs"][0, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmaze_K4_N1_10.npz", "tmaze_K4_N2_10.npz"]


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    load_or_generate(4, 1, 5, tmp_path)
    path = tmp_path / "tmaze_K4_N1_10.npz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="tmaze_K4_N1_10.npz"):
        load_or_generate(4, 1, 5, tmp_path)


# ------------------------------------------------------------------------------------- commands
def test_seed_readme_has_all_tmaze_commands():
    assert len(tmaze_commands()) == 5  # RATE, DT, RMT, TrXL and the curriculum example


def _command_id(argv):
    return argv[argv.index("--ckpt_folder") + 1] + argv[argv.index("--curr") + 1]


@pytest.mark.parametrize("argv", tmaze_commands(), ids=_command_id)
def test_every_seed_tmaze_command_parses(argv):
    args, explicit = train_tmaze.parse_args(argv)
    mc, tc = train_tmaze.split_args(args)
    mc.validate()
    assert args.max_n_final == 3 and tc.epochs == 50


def test_skip_dec_attn_is_alias_of_skip_dec_ffn():
    args, _ = train_tmaze.parse_args(["--skip_dec_attn"])
    assert args.skip_dec_ffn is True
    args, _ = train_tmaze.parse_args([])
    assert args.skip_dec_ffn is False


def test_paper_code_flags_accepted():
    args, _ = train_tmaze.parse_args(["--min_n_final", "2", "--start_seed", "3", "--end_seed", "4", "--n_layer", "2",
                                      "--n_head", "2", "--d_model", "32", "--context_length", "10", "--sections", "2",
                                      "--epochs", "1", "--batch_size", "8", "--device", "cpu",
                                      "--eval_lengths", "9,30", "--eval_episodes", "10"])
    assert (args.min_n_final, args.start_seed, args.end_seed, args.sections) == (2, 3, 4, 2)
    assert args.eval_lengths == [9, 30]


def test_smoke_run_end_to_end(tmp_path):
    res = train_tmaze.main(["--smoke", "--no_wandb", "--runs_dir", str(tmp_path), "--data_dir", str(tmp_path / "d"),
                            "--ckpt_folder", "smoke"])
    root = tmp_path / "tmaze" / "smoke"
    on_disk = json.loads((root / "results.json").read_text())
    assert on_disk["runs"].keys() == res["runs"].keys() == {"1"}
    metrics = on_disk["runs"]["1"]["metrics"]
    assert set(metrics) == {"10", "20"} and all(0 <= v <= 1 for v in metrics.values())
    run = root / "seed_1"
    assert json.loads((run / "results.json").read_text())["metrics"] == metrics
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.json").is_file()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("losses/train_loss" in r for r in rows) and any("eval/10" in r for r in rows)
