"""MuJoCo's train script: its flags (the --env_id table, bad values, model flags checked before any data is made,
the error without data), the paper README's line parsed and run verbatim with --smoke, and an in-process --smoke
run carrying the data's state statistics into the model and its checkpoint."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

from MuJoCo import train_rate_mujoco_ca as train  # noqa: E402
from MuJoCo.get_data import generate_d4rl as gen  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_data import (  # noqa: E402
    mujoco_store,
    state_stats,
)
from tests.mujoco_helpers import (  # noqa: E402
    QUIET,
    ROOT,
    one_line,
    one_thread,  # noqa: F401 (module-wide fixture)
)

# The MuJoCo training line of the paper README, verbatim.
TRAIN_LINE = ("python3 MuJoCo/train_rate_mujoco_ca.py --env_id 0 --number_of_segments 3 --segment_length 20 "
              "--num_mem_tokens 5 --n_head_ca 1 --mrv_act 'relu' --skip_dec_ffn --seed 123")


# ------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("bad", ["12", "-1", "x"])
def test_env_id_outside_the_table_is_a_one_line_argparse_error(bad, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--env_id", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--env_id" in one_line(err) and "error:" in err


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


def test_smoke_run_in_process_carries_the_state_statistics(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"  # --smoke generates hopper-medium into <data>/smoke
    res = train.main(["--env_id", "6", "--smoke", "--no_wandb", "--seed", "5", "--data_dir", str(data),
                      "--runs_dir", str(runs)])
    source = gen.dataset_path(data / "smoke", "hopper-medium")
    mean, std = state_stats(mujoco_store(source, "hopper", data / "smoke" / "stores" / "hopper-medium"))
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

