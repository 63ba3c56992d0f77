"""Every numeric flag of every script is checked before any data is generated or training starts: NaN
and infinity for every float-typed flag (found from each script's own parser, so a new flag is covered
without a new case), and the range of the int flags, each a one-line error naming the flag (exit 2),
with nothing written and in well under a second."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import pytest

from RATE_model.cli import run_main
from RATE_model.config import OneLineErrorParser, float_list

TRAIN = ["--smoke", "--no_wandb", "--device", "cpu", "--runs_dir", "{t}/runs", "--data_dir", "{t}/data"]
# script: (module, argv that reaches the checks, writing only under {t} if it ran on)
SCRIPTS = {
    "train_tmaze": ("TMaze_new.TMaze_new_src.train_tmaze", TRAIN),
    "train_minigrid": ("MinigridMemory.MinigridMemory_src.train_minigridmemory", TRAIN),
    "train_vizdoom": ("VizDoom.VizDoom_src.train_vizdoom", TRAIN),
    "train_mem_maze": ("MemoryMaze.MemoryMaze_src.train_mem_maze", TRAIN),
    "train_atari": ("Atari.train_rate_atari", TRAIN),
    "train_mujoco": ("MuJoCo.train_rate_mujoco_ca", TRAIN),
    "train_popgym": ("POPGym.train_popgym", TRAIN),
    "gen_vizdoom": ("VizDoom.get_data.generate_iter_data", ["--out_dir", "{t}/out"]),
    "gen_minigrid": ("MinigridMemory.get_data.collect_traj", ["--out_dir", "{t}/out"]),
    "gen_mem_maze": ("MemoryMaze.get_data.collect_data", ["--out_dir", "{t}/out"]),
    "gen_atari": ("Atari.get_data.collect_replay", ["--game", "Pong", "--out_dir", "{t}/out"]),
    "gen_mujoco": ("MuJoCo.get_data.generate_d4rl", ["--env", "hopper", "--dataset", "medium", "--out_dir", "{t}/out"]),
    "measure_vizdoom": ("RATE_model.tools.measure", ["--env", "vizdoom", "--episodes", "2"]),
    "measure_minigrid": ("RATE_model.tools.measure", ["--env", "minigrid", "--episodes", "2"]),
    "measure_mem_maze": ("RATE_model.tools.measure", ["--env", "memory_maze", "--episodes", "2"]),
    "measure_atari": ("RATE_model.tools.measure", ["--env", "atari", "--game", "Pong", "--episodes", "1"]),
    "measure_tmaze": ("RATE_model.tools.measure", ["--env", "tmaze", "--episodes", "2", "--out", "{t}/o.jsonl"]),
    "pretrain_encoder": ("RATE_model.tools.pretrain_encoder", ["--env", "vizdoom", "--data_dir", "{t}/none",
                                                               "--save_encoder", "{t}/enc.pt"]),
    "probe_colour": ("VizDoom.diagnostics.probe_colour", ["{t}/none.pt", "--data_dir", "{t}/data", "--out", "{t}/o"]),
    "step_loss": ("RATE_model.tools.step_loss", ["{t}/none.pt", "--data_dir", "{t}/data", "--out", "{t}/o"]),
    "diagnose_expert": ("MinigridMemory.diagnostics.diagnose_cue", ["expert", "--out", "{t}/o.json"]),
    "diagnose_image": ("MinigridMemory.diagnostics.diagnose_cue", ["image", "--out", "{t}/o.json"]),
    "download_d4rl": ("download_d4rl_datasets", ["--out_dir", "{t}/out", "--source", "{t}"]),
    "popgym_data": ("POPGym.get_data.gen_popgym_data", ["--out_dir", "{t}/out", "--tasks", "easy"]),
    "measure_popgym": ("POPGym.diagnostics.measure_experts", ["--tasks", "easy", "--out", "{t}/o.json"]),
    "popgym_grid": ("POPGym.run_grid", ["--runs_dir", "{t}/runs", "--data_dir", "{t}/data"]),
}
FLOAT_TYPES = (float, float_list)

# (script, extra argv, the flag the error must name): int flags whose range is checked
RANGES = [
    *[(s, ["--seed", "-1"], "--seed") for s in SCRIPTS if s.startswith(("train_", "gen_"))],
    *[(s, ["--warmup_steps", "-1"], "--warmup_steps") for s in SCRIPTS if s.startswith("train_")],  # before smoke data
    ("train_tmaze", ["--start_seed", "-1"], "--start_seed"),
    ("train_minigrid", ["--seed", str(2**32)], "--seed"),
    ("train_minigrid", ["--eval_env_timeout", "0"], "--eval_env_timeout"),
    ("train_vizdoom", ["--eval_max_steps", "5001"], "--eval_max_steps"),
    ("train_vizdoom", ["--eval_pillar_tics", "1"], "--eval_pillar_tics"),
    ("train_atari", ["--data_seed", "-1"], "--data_seed"),
    ("gen_vizdoom", ["--n_steps", "5001"], "--n_steps"),
    ("gen_minigrid", ["--max_attempts", "0"], "--max_attempts"),
    ("gen_mujoco", ["--max_episode_steps", "1001"], "--max_episode_steps"),
    ("measure_vizdoom", ["--eval_max_steps", "5001"], "--eval_max_steps"),
    ("measure_vizdoom", ["--target_hold", "0"], "--target_hold"),
    ("measure_mem_maze", ["--eval_max_steps", "1001"], "--eval_max_steps"),
    ("measure_atari", ["--eval_max_steps", "27001"], "--eval_max_steps"),
    ("measure_minigrid", ["--size", "8"], "--size"),
    ("measure_minigrid", ["--eval_max_steps", "0"], "--eval_max_steps"),
    ("measure_minigrid", ["--episodes", "0"], "--episodes"),
    ("measure_minigrid", ["--workers", "0"], "--workers"),
    ("measure_tmaze", ["--length", "2"], "--length"),
    ("measure_tmaze", ["--episodes", "0"], "--episodes"),
    ("diagnose_expert", ["--sizes", "8"], "--sizes"),
    ("diagnose_expert", ["--episodes", "0"], "--episodes"),
    ("diagnose_image", ["--seeds", "1,-1"], "--seeds"),
    ("diagnose_image", ["--segments", "0"], "--segments"),
    ("diagnose_image", ["--context_length", "0"], "--context_length"),
    ("diagnose_image", ["--context_length", "1", "--segments", "1"], "--context_length"),
    ("diagnose_image", ["--epochs", "0"], "--epochs"),
    ("probe_colour", ["--episodes", "0"], "--episodes"),
    ("pretrain_encoder", ["--steps", "0"], "--steps"),
    ("pretrain_encoder", ["--heldout_episodes", "-1"], "--heldout_episodes"),
    ("pretrain_encoder", ["--max_episodes", "0"], "--max_episodes"),  # a data flag: checked by ENV.frames
    ("pretrain_encoder", ["--curriculum", "red:0"], "--curriculum"),
    ("step_loss", ["--episodes", "0"], "--episodes"),
    ("step_loss", ["--batch_size", "0"], "--batch_size"),
    ("download_d4rl", ["--source", "{t}/no_such_folder"], "--source"),
    ("popgym_data", ["--seed_offset", "-1"], "--seed_offset"),
    ("popgym_data", ["--n_episodes", "0"], "--n_episodes"),
    ("measure_popgym", ["--episodes", "0"], "--episodes"),
    ("popgym_grid", ["--seeds", "1,-2"], "--seeds"),
    ("popgym_grid", ["--n_episodes", "0"], "--n_episodes"),
]


def _main(script: str):
    module, _ = SCRIPTS[script]
    try:
        return importlib.import_module(module).main
    except ImportError as e:  # an env package not installed here
        pytest.skip(f"{module}: {e}")


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _float_flags(script: str) -> list[str]:
    """The float-typed flags of the script's parser (and sub-parsers), read from the parser itself."""
    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(OneLineErrorParser, "parse_known_args", capture)
        with pytest.raises(_Captured) as c:
            _main(script)([a.replace("{t}", "/nonexistent") for a in SCRIPTS[script][1]])
    parsers, flags = [c.value.parser], []
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
            elif action.type in FLOAT_TYPES and action.option_strings:
                flags.append(action.option_strings[0])
    return flags


def _assert_one_line_error(script: str, extra: list[str], flag: str, tmp_path: Path, capsys, monkeypatch) -> str:
    main = _main(script)
    monkeypatch.chdir(tmp_path)  # anything written to a relative path would show up here too
    argv = [a.replace("{t}", str(tmp_path)) for a in SCRIPTS[script][1] + extra]
    capsys.readouterr()
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert e.value.code == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("error: ") or ": error: " in lines[0], lines[0]
    assert flag in lines[0], lines[0]
    assert not any(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
    assert seconds < 3, f"{seconds:.1f} s: the check came after data or env work"
    return lines[0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_nan_and_inf_are_refused_for_every_float_flag(script, tmp_path, capsys, monkeypatch):
    flags = _float_flags(script)
    for flag in flags:
        for value in ("nan", "inf"):
            work = tmp_path / f"{flag.strip('-')}_{value}"
            work.mkdir()
            _assert_one_line_error(script, [flag, value], flag, work, capsys, monkeypatch)


def test_the_train_scripts_float_flags_include_target_return():
    """The four scripts that sample with a target return read it as a float flag (so it is covered above)."""
    for script in ("train_vizdoom", "train_mem_maze", "train_atari", "train_mujoco"):
        assert "--target_return" in _float_flags(script)


@pytest.mark.parametrize("case", RANGES, ids=[f"{c[0]}{''.join(c[1])}" for c in RANGES])
def test_out_of_range_int_flags_are_one_line_errors(case, tmp_path, capsys, monkeypatch):
    script, extra, flag = case
    _assert_one_line_error(script, extra, flag, tmp_path, capsys, monkeypatch)
