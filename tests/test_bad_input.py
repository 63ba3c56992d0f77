"""A corpus of bad flags and bad files: each stops the real entry point with one line naming the flag
or file, exit status != 0, and leaves every pre-existing file in the run and data folders untouched."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from MinigridMemory.get_data.collect_traj import collect
from MinigridMemory.MinigridMemory_src import train_minigridmemory
from MinigridMemory.MinigridMemory_src.minigrid_data import minigrid_dataset
from RATE_model.cli import run_main
from TMaze_new.TMaze_new_src import train_tmaze

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--smoke", "--no_wandb", "--device", "cpu", "--ckpt_folder", "r"]
TMAZE_NPZ = "tmaze_K5_N1_80.npz"  # the smoke run's first data file (K 5, N 1, 2 x 40 trajectories)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished tiny T-Maze run (runs/tmaze/r/seed_1 with a real checkpoint), its data, and Minigrid episodes."""
    root = tmp_path_factory.mktemp("base")
    train_tmaze.main(TINY + ["--runs_dir", str(root / "runs"), "--data_dir", str(root / "data")])
    collect(root / "mg", n_episodes=2, size=7, workers=1, progress=False)
    return root


def _npz(path: Path, **changes) -> None:
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    data.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del data[k]
    np.savez(path, **data)


def _edit_tmaze(**changes) -> Callable[[Path], None]:
    return lambda d: _npz(d / "data" / TMAZE_NPZ, **changes)


def _edit_mg(**changes) -> Callable[[Path], None]:
    return lambda d: _npz(d / "mg" / "episode_000001.npz", **changes)


def _tm_arr(key: str, fn) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        with np.load(d / "data" / TMAZE_NPZ) as f:
            arr = f[key]
        _npz(d / "data" / TMAZE_NPZ, **{key: fn(arr)})
    return edit


def _mg_arr(key: str, fn) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        with np.load(d / "mg" / "episode_000001.npz") as f:
            arr = f[key]
        _npz(d / "mg" / "episode_000001.npz", **{key: fn(arr)})
    return edit


def _nan_at(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float32).copy()
    arr.flat[3] = np.nan
    return arr


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / rel).write_bytes(data)


def _truncate(rel: str, n: int = 100) -> Callable[[Path], None]:
    return lambda d: (d / rel).write_bytes((d / rel).read_bytes()[:n])


def _damaged_store(d: Path) -> None:
    """Minigrid's episode store built, then its frame file cut short."""
    minigrid_dataset(d / "mg", 12, progress=False)
    obs = d / "mg" / "store" / "obs.npy"
    obs.write_bytes(obs.read_bytes()[:4096])


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("touch ran_code_marker",))  # would appear in the snapshot of the work folder


def _crafted_ckpt() -> bytes:
    """A checkpoint whose unpickling would run a shell command (refused unrun by weights_only)."""
    buf = io.BytesIO()
    torch.save({"format": 1, "model": _RunsShell()}, buf)
    return buf.getvalue()


def _other_ckpt(d: Path) -> None:
    """A real checkpoint of a different network, for --resume PATH."""
    train_tmaze.main(TINY + ["--runs_dir", str(d / "other"), "--data_dir", str(d / "data"), "--n_layer", "1"])


T, M = "tmaze", "minigrid"
# (id, script, extra argv, setup, text the one-line error must contain)
CASES = [
    ("n_head_ca_divides", T, ["--n_head_ca", "3", "--d_model", "64"], None, "--n_head_ca 3"),
    ("mrv_without_memory", T, ["--nmt", "0", "--n_head_ca", "2"], None, "--nmt"),
    ("unknown_model_mode", T, ["--model_mode", "XYZ"], None, "--model_mode"),
    ("unknown_arch", T, ["--arch_mode", "LSTM"], None, "--arch_mode"),
    ("unknown_flag", T, ["--bogus_flag", "1"], None, "--bogus_flag"),
    ("not_an_int", T, ["--epochs", "ten"], None, "--epochs"),
    ("bad_bool", T, ["--curr", "maybe"], None, "--curr"),
    ("odd_d_model", T, ["--d_model", "33", "--n_head_ca", "0", "--mrv_act", "no_act"], None, "--d_model"),
    ("dropout_range", T, ["--dropout", "1.5"], None, "--dropout"),
    ("zero_context", T, ["--context_length", "0"], None, "--context_length"),
    ("negative_nmt", T, ["--nmt", "-1"], None, "--nmt"),
    ("sections_vs_max_n", T, ["--sections", "3", "--max_n_final", "2"], None, "--sections 3"),
    ("min_gt_max_n", T, ["--min_n_final", "3", "--max_n_final", "2"], None, "--min_n_final"),
    ("eval_length_short", T, ["--eval_lengths", "2"], None, "--eval_lengths"),
    ("eval_lengths_text", T, ["--eval_lengths", "a,b"], None, "--eval_lengths"),
    ("eval_episodes_zero", T, ["--eval_episodes", "0"], None, "--eval_episodes must"),
    ("trajectories_zero", T, ["--trajectories_per_side", "0"], None, "--trajectories_per_side must"),
    ("seed_range_reversed", T, ["--start_seed", "3", "--end_seed", "1"], None, "--end_seed"),
    ("seed_vs_range", T, ["--seed", "5", "--start_seed", "1"], None, "--seed 5"),
    ("batch_size_zero", T, ["--batch_size", "0"], None, "--batch_size"),
    ("epochs_zero", T, ["--epochs", "0"], None, "--epochs"),
    ("lr_negative", T, ["--lr", "-0.1"], None, "--lr"),
    ("lr_nan", T, ["--lr", "nan"], None, "--lr"),
    ("warmup_negative", T, ["--warmup_steps", "-5"], None, "--warmup_steps"),
    ("ckpt_every_negative", T, ["--ckpt_every", "-1"], None, "--ckpt_every"),
    ("grad_clip_negative", T, ["--grad_clip", "-1"], None, "--grad_clip"),
    ("weight_decay_inf", T, ["--weight_decay", "inf"], None, "--weight_decay"),
    ("device_unknown", T, ["--device", "tpu7"], None, "--device"),
    ("device_no_cuda", T, ["--device", "cuda"], None, "--device"),
    ("resume_missing", T, ["--resume", "nowhere/last.pt"], None, "nowhere/last.pt"),
    ("resume_corrupt", T, ["--resume", "{d}/bad.pt"], _write("bad.pt", b"\x80\x02garbage"), "bad.pt"),
    ("resume_truncated", T, ["--resume", "latest"], _truncate("runs/tmaze/r/seed_1/checkpoints/last.pt", 300),
     "last.pt"),
    ("resume_other_model", T, ["--resume", "{d}/other/tmaze/r/seed_1/checkpoints/last.pt"], _other_ckpt, "n_layer"),
    ("resume_other_settings", T, ["--resume", "latest", "--batch_size", "8"], None, "batch_size"),
    ("resume_path_many_seeds", T, ["--resume", "x.pt", "--start_seed", "1", "--end_seed", "2"], None, "--resume"),
    ("data_dir_is_file", T, ["--data_dir", "{d}/afile"], _write("afile", b"x"), "afile"),
    ("tmaze_npz_truncated", T, [], _truncate(f"data/{TMAZE_NPZ}"), TMAZE_NPZ),
    ("tmaze_npz_junk", T, [], _write(f"data/{TMAZE_NPZ}", b"junk"), TMAZE_NPZ),
    ("tmaze_npz_empty", T, [], _write(f"data/{TMAZE_NPZ}", b""), TMAZE_NPZ),
    ("tmaze_npz_missing_field", T, [], _edit_tmaze(reward=None), "reward"),
    ("tmaze_obs_shape", T, [], _tm_arr("obs", lambda a: a[:, :, :3]), "obs has shape"),
    ("tmaze_obs_nan", T, [], _tm_arr("obs", _nan_at), "obs holds NaN"),
    ("tmaze_reward_nan", T, [], _tm_arr("reward", _nan_at), "reward holds NaN"),
    ("tmaze_action_dtype", T, [], _tm_arr("action", lambda a: a.astype(np.float32)), "action has dtype"),
    ("tmaze_action_range", T, [], _tm_arr("action", lambda a: a + 7), "action holds values"),
    ("eval_every_negative", T, ["--eval_every", "-1"], None, "--eval_every"),
    ("val_episodes_zero", T, ["--val_episodes", "0"], None, "--val_episodes"),
    ("memory_noise_unknown", T, ["--eval_memory_noise", "all"], None, "--eval_memory_noise"),
    ("mg_missing_dir", M, ["--data_dir", "{d}/nothing_here"], None, "nothing_here"),
    ("mg_empty_dir", M, ["--data_dir", "{d}/empty"], lambda d: (d / "empty").mkdir(), "empty"),
    ("mg_truncated", M, ["--data_dir", "{d}/mg"], _truncate("mg/episode_000001.npz", 300), "episode_000001.npz"),
    ("mg_obs_dtype", M, ["--data_dir", "{d}/mg"], _mg_arr("obs", lambda a: a.astype(np.float32)), "uint8"),
    ("mg_obs_shape", M, ["--data_dir", "{d}/mg"], _mg_arr("obs", lambda a: a[:, :, :80]), "obs has shape"),
    ("mg_reward_nan", M, ["--data_dir", "{d}/mg"], _mg_arr("reward", _nan_at), "reward holds NaN"),
    ("mg_reward_length", M, ["--data_dir", "{d}/mg"], _mg_arr("reward", lambda a: a[:-1]),
     "reward has shape (7,), expected (8,)"),  # episode 1 of the 7x7 data in base() takes 8 steps
    ("mg_action_range", M, ["--data_dir", "{d}/mg"], _mg_arr("action", lambda a: a + 5), "action holds values"),
    ("mg_missing_field", M, ["--data_dir", "{d}/mg"], _edit_mg(done=None), "done"),
    ("mg_store_truncated", M, ["--data_dir", "{d}/mg"], _damaged_store, "store/obs.npy has 4096 bytes"),
    ("mg_eval_size", M, ["--data_dir", "{d}/mg", "--eval_sizes", "8"], None, "--eval_sizes"),
    ("mg_eval_batch", M, ["--data_dir", "{d}/mg", "--eval_batch_size", "0"], None, "--eval_batch_size"),
    ("mg_eval_episodes", M, ["--data_dir", "{d}/mg", "--eval_episodes", "0"], None, "--eval_episodes must"),
    ("mg_eval_env_timeout", M, ["--data_dir", "{d}/mg", "--eval_env_timeout", "0"], None, "--eval_env_timeout"),
    ("resume_runs_code", T, ["--resume", "{d}/crafted.pt"], _write("crafted.pt", _crafted_ckpt()),
     "a checkpoint never holds (GLOBAL posix.system)"),
    ("dropout_nan", T, ["--dropout", "nan"], None, "--dropout"),
    ("dropatt_inf", T, ["--dropatt", "inf"], None, "--dropatt"),
    ("lr_end_factor_nan", T, ["--lr_end_factor", "nan"], None, "--lr_end_factor"),
    ("grad_clip_nan", T, ["--grad_clip", "nan"], None, "--grad_clip"),
    ("seed_negative", T, ["--seed", "-1"], None, "--seed must be in 0.."),
    ("start_seed_negative", T, ["--start_seed", "-2", "--end_seed", "-1"], None, "--start_seed must be in 0.."),
    ("mg_dropout_nan", M, ["--data_dir", "{d}/mg", "--dropout", "nan"], None, "--dropout"),
    ("mg_lr_inf", M, ["--data_dir", "{d}/mg", "--lr", "inf"], None, "--lr"),
    ("mg_seed_negative", M, ["--data_dir", "{d}/mg", "--seed", "-1"], None, "--seed must be in 0.."),
    ("mg_warmup_negative", M, ["--data_dir", "{d}/mg", "--warmup_steps", "-1"], None, "--warmup_steps"),
]
MAIN = {T: train_tmaze.main, M: train_minigridmemory.main}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_destroys_nothing(case, base, tmp_path, capsys, monkeypatch):
    _, script, extra, setup, needle = case
    d = tmp_path / "w"
    shutil.copytree(base, d)
    monkeypatch.chdir(d)  # relative paths in argv (nowhere/last.pt, x.pt) resolve here
    if setup is not None:
        setup(d)
    # Minigrid smoke would collect its own data; use the tiny episodes in the given --data_dir instead
    minigrid = ["--smoke", "--no_wandb", "--device", "cpu", "--ckpt_folder", "r", "--max_episodes", "2"]
    argv = (TINY if script == T else minigrid) + ["--runs_dir", str(d / "runs")]
    if script == T and "--data_dir" not in extra:
        argv += ["--data_dir", str(d / "data")]
    argv += [a.replace("{d}", str(d)) for a in extra]
    if script == M:
        monkeypatch.setattr(train_minigridmemory, "episode_folder", lambda args, *_: Path(args.data_dir))
    capsys.readouterr()
    before = _snapshot(d)
    with pytest.raises(SystemExit) as e:
        run_main(MAIN[script], argv)
    err = capsys.readouterr().err
    assert e.value.code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") or ": error: " in lines[0], err
    assert needle in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(d) == before


def test_real_script_exit_code_and_stderr(tmp_path):
    """The same contract through a real process (argparse and ConfigError paths)."""
    for extra in (["--model_mode", "XYZ"], ["--n_head_ca", "3", "--d_model", "64"]):
        res = subprocess.run([sys.executable, "TMaze_new/TMaze_new_src/train_tmaze.py", "--no_wandb",
                              "--runs_dir", str(tmp_path), *extra], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 2
        assert len(res.stderr.strip().splitlines()) == 1 and "error:" in res.stderr and extra[0] in res.stderr
    assert not any(tmp_path.iterdir())
