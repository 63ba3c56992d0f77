"""POPGym: every family's observation / action encoding, the episode files (paper layout, generator resume,
loader errors), evaluation seeds, the train script's flags and each README ``--smoke`` line, and the grid."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("popgym")

from POPGym import run_grid  # noqa: E402
from POPGym import train_popgym as train  # noqa: E402
from POPGym.get_data.gen_popgym_data import generate, play_episode, select_tasks  # noqa: E402
from POPGym.paper_results import PAPER, paper_value  # noqa: E402
from POPGym.POPGym_src.popgym_data import load_episode, popgym_store, task_files  # noqa: E402
from POPGym.POPGym_src.popgym_env import (  # noqa: E402
    FAMILIES,
    REACTIVE,
    TASKS,
    PopgymVecEnv,
    env_action,
    family_of,
    flat_action,
    flat_obs,
    make,
    spec_of,
    task_id,
)
from POPGym.POPGym_src.popgym_eval import ENV  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.encoders import build_encoders  # noqa: E402
from tests.helpers import check_attention_tool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EASY = [task_id(f, "Easy") for f in FAMILIES]


def test_task_table_matches_the_paper():
    assert len(TASKS) == 48 and len(set(TASKS)) == 48 and len(PAPER) == 48
    reactive = [t for t in TASKS if family_of(t) in REACTIVE]
    assert len(reactive) == 15  # the paper's 15 CartPole / Pendulum tasks, 33 memory tasks
    assert round(sum(paper_value(t, "RATE") for t in TASKS), 2) == 9.53  # the paper's "all 48" aggregate
    assert round(sum(paper_value(t, "data") for t in reactive), 2) == 12.82


@pytest.mark.parametrize("task", EASY)
def test_observation_and_action_encoding(task):
    env = make(task)
    spec = spec_of(env)
    obs, _ = env.reset(seed=0)
    x = flat_obs(obs)
    assert x.dtype == np.float32 and x.shape == (spec.obs_dim,)
    enc = build_encoders("popgym", 16, **spec.env_kwargs())
    comp = enc.obs[0]
    onehot = comp(torch.as_tensor(x)[None])
    assert onehot.shape == (1, sum(spec.obs_nvec) + spec.obs_nvec.count(0))
    offset = 0
    for j, n in enumerate(spec.obs_nvec):  # one hot entry per categorical component, at the observed value
        if n:
            block = onehot[0, offset:offset + n]
            assert block.sum() == 1 and block[int(x[j])] == 1
            offset += n
    reals = [j for j, n in enumerate(spec.obs_nvec) if n == 0]
    assert torch.equal(onehot[0, offset:], torch.as_tensor(x[reals]))  # no statistics given: as they are
    mean, std = np.linspace(-1, 1, len(reals)), np.linspace(0.5, 2, len(reals))
    std_enc = build_encoders("popgym", 16, **spec.env_kwargs(), obs_mean=mean.tolist(), obs_std=std.tolist())
    scaled = std_enc.obs[0](torch.as_tensor(x)[None])
    assert torch.equal(scaled[0, :offset], onehot[0, :offset])  # categorical parts untouched, reals standardised
    torch.testing.assert_close(scaled[0, offset:], torch.as_tensor((x[reals] - mean) / std, dtype=torch.float32))
    env.action_space.seed(0)
    for _ in range(20):
        a = env.action_space.sample()
        stored = flat_action(spec, a)
        back = env_action(spec, stored)
        if spec.discrete:
            assert 0 <= int(stored) < spec.n_actions
            assert np.array_equal(np.asarray(back), np.asarray(a))
            if spec.action_nvec:  # MultiDiscrete [x, y] -> x·Y + y
                assert int(stored) == int(a[0]) * spec.action_nvec[1] + int(a[1])
        else:
            assert np.allclose(back, a)
        if env.step(back)[2]:
            env.reset(seed=1)
    logits = enc.head(torch.zeros(1, 16))
    assert logits.shape == (1, spec.n_actions)


def test_multidiscrete_and_tuple_spaces_are_flattened():
    bs = spec_of(make("popgym-BattleshipEasy-v0"))
    assert bs.action_nvec == (8, 8) and bs.n_actions == 64 and bs.obs_nvec == (2,)
    ae = spec_of(make("popgym-AutoencodeEasy-v0"))
    assert ae.obs_nvec == (2, 4) and ae.n_actions == 4
    pend = spec_of(make("popgym-PositionOnlyPendulumEasy-v0"))
    assert not pend.discrete and pend.n_actions == 1 and pend.action_high == 2.0 and pend.obs_nvec == (0, 0)
    enc = build_encoders("popgym", 8, **pend.env_kwargs())
    assert enc.head(torch.full((3, 8), 50.0)).abs().max() <= 2.0  # continuous head bounded by the env's limit


def test_vector_env_matches_single_envs_and_freezes_finished_episodes():
    venv = PopgymVecEnv("popgym-RepeatPreviousEasy-v0", [3, 4])
    obs = venv.reset()
    env = make("popgym-RepeatPreviousEasy-v0")
    o, _ = env.reset(seed=4)
    assert np.array_equal(obs[1], flat_obs(o))
    done = np.zeros(2, bool)
    for _ in range(200):
        obs, r, d, _ = venv.step(np.array([0, 1]))
        assert not (r[done] != 0).any()
        done |= d
        if done.all():
            break
    assert done.all()


def test_evaluation_seeds_are_disjoint_from_training_and_each_other():
    test, val = set(ENV.seeds(100, "test")), set(ENV.seeds(100, "validation"))
    assert not test & val and min(test | val) >= 1_000_000


# ---------------------------------------------------------------- episode files


def test_generator_writes_the_paper_layout_and_resumes(tmp_path):
    task = "popgym-BattleshipEasy-v0"
    generate([task], 4, tmp_path, workers=1, progress=False)
    folder = tmp_path / task
    files = task_files(folder)
    assert [p.name for p in files] == [f"train_data_{i}.npz" for i in range(4)]
    with np.load(files[0]) as f:
        assert set(f.files) == {"obs", "action", "reward", "done"}
        assert f["obs"].dtype == np.float32 and f["obs"].shape[1] == 1
        assert f["action"].dtype == np.int64 and f["action"].max() < 64
        assert f["done"][-1] and not f["done"][:-1].any() and len(f["reward"]) == len(f["obs"])
    before = {p.name: p.stat().st_mtime_ns for p in files}
    kept = files[2].read_bytes()
    files[2].unlink()
    summary = generate([task], 5, tmp_path, workers=2, progress=False)[0]
    after = task_files(folder)
    assert len(after) == 5 and summary["episodes"] == 5
    assert all(after[i].stat().st_mtime_ns == before[after[i].name] for i in (0, 1, 3))  # not rewritten
    with np.load(after[2]) as new, np.load(__import__("io").BytesIO(kept)) as old:
        assert all(np.array_equal(new[k], old[k]) for k in old.files)  # same seed, same episode
    assert json.loads((folder / "summary.json").read_text())["episodes"] == 5
    assert not list(folder.glob(".*tmp*"))


def test_episode_files_sort_by_index_and_bad_files_are_named(tmp_path):
    task = "popgym-RepeatFirstEasy-v0"
    folder = tmp_path / task
    folder.mkdir()
    ep = play_episode(task, 0)
    for i in (10, 2, 1):
        np.savez(folder / f"train_data_{i}.npz", **ep)
    assert [p.name for p in task_files(folder)] == ["train_data_1.npz", "train_data_2.npz", "train_data_10.npz"]
    spec = spec_of(make(task))
    store = popgym_store(folder, spec, progress=False)
    assert store.n_episodes == 3 and store.path is None  # read into RAM
    assert np.array_equal(store.episode(0)["obs"], ep["obs"])
    np.savez(folder / "train_data_2.npz", **{**ep, "action": ep["action"] + 4})
    with pytest.raises(DataError, match="train_data_2.*outside"):
        load_episode(folder / "train_data_2.npz", spec)
    np.savez(folder / "train_data_2.npz", obs=ep["obs"], action=ep["action"])
    with pytest.raises(DataError, match="train_data_2.*lacks"):
        popgym_store(folder, spec, progress=False)
    with pytest.raises(DataError, match="gen_popgym_data.py"):
        popgym_store(tmp_path / "none", spec, progress=False)


def test_select_tasks():
    assert select_tasks("easy") == EASY
    assert select_tasks("RepeatFirst") == [task_id("RepeatFirst", lv) for lv in ("Easy", "Medium", "Hard")]
    assert len(select_tasks("all")) == 48
    with pytest.raises(Exception, match="NoSuchTask"):
        select_tasks("NoSuchTask")


# ---------------------------------------------------------------- train script and grid


def readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in re.findall(r"^\s*(python3 POPGym/\S+\.py[^\n]*)$", text, re.M)]


def test_flags_and_bad_values(tmp_path, capsys):
    args, _ = train.parse_args(["--task", "popgym-LabyrinthEscapeEasy-v0", "--epochs", "2"])
    assert args.epochs == 2 and args.context_length == 0 and args.sections == 3
    for argv, msg in ((["--task", "popgym-NoSuchTaskEasy-v0"], "unknown POPGym task"),
                      (["--context_length", "-1"], "context_length")):
        with pytest.raises(SystemExit) as e:
            train.run_main(train.main, argv + ["--runs_dir", str(tmp_path), "--data_dir", str(tmp_path)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        train.run_main(train.main, ["--data_dir", str(tmp_path / "none"), "--runs_dir", str(tmp_path)])
    assert e.value.code == 2 and "gen_popgym_data.py" in capsys.readouterr().err


@pytest.mark.parametrize("task,mode", [("popgym-RepeatFirstEasy-v0", "RATE"), ("popgym-BattleshipEasy-v0", "BC_LSTM"),
                                       ("popgym-PositionOnlyPendulumEasy-v0", "DT"),
                                       ("popgym-CountRecallEasy-v0", "BC_MLP")])
def test_smoke_runs_every_kind_of_space(tmp_path, task, mode):
    res = train.main(["--task", task, "--model_mode", mode, "--smoke", "--no_wandb", "--runs_dir",
                      str(tmp_path / "runs"), "--data_dir", str(tmp_path / "data")])
    m = res["runs"]["1"]["metrics"]
    assert len(m["episodes"]) == 4 and m["return"] == pytest.approx(np.mean(m["episodes"]))
    saved = tmp_path / "runs" / "popgym" / task / mode / "seed_1" / "results.json"
    assert saved.exists()
    cfg = json.loads((saved.parent / "config.json").read_text())["model"]
    store = popgym_store(tmp_path / "data" / "smoke" / task, spec_of(make(task)), progress=False)
    assert cfg["context_length"] == -(-int(store.lengths.max()) // 2)  # auto K: N = 2 segments hold the longest
    assert cfg["env_kwargs"]["n_actions"] == spec_of(make(task)).n_actions
    reals = [j for j, n in enumerate(spec_of(make(task)).obs_nvec) if n == 0]
    if reals:  # the encoder standardises real components with the training data's statistics
        obs = np.concatenate([store.episode(i)["obs"] for i in range(store.n_episodes)])[:, reals]
        np.testing.assert_allclose(cfg["env_kwargs"]["obs_mean"], obs.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cfg["env_kwargs"]["obs_std"], obs.std(0), rtol=1e-4, atol=1e-5)
    else:
        assert "obs_mean" not in cfg["env_kwargs"]


def test_tools_evaluate_reproduces_a_runs_results_from_its_checkpoint(tmp_path):
    """ENV rebuilds the protocol from the run's recorded flags (--task, the budget): ``python -m
    RATE_model.tools.evaluate CKPT`` gives the run's metrics exactly, and flags given to it replace the recorded."""
    from RATE_model import envs
    from RATE_model.tools import evaluate as tool

    assert envs.get("popgym") is ENV and ENV.validation_episodes == 50
    task = "popgym-RepeatFirstEasy-v0"
    res = train.main(["--task", task, "--smoke", "--no_wandb", "--runs_dir", str(tmp_path / "runs"), "--data_dir",
                      str(tmp_path / "data")])
    metrics = res["runs"]["1"]["metrics"]
    ckpt = tmp_path / "runs" / "popgym" / task / "RATE" / "seed_1" / "checkpoints" / "last.pt"
    rows = tool.main([str(ckpt), "--out", str(tmp_path / "eval.jsonl")])
    assert len(rows) == 1 and rows[0]["env"] == "popgym" and "episodes" not in rows[0]
    full = json.loads((tmp_path / "eval.jsonl").read_text())
    assert {k: full[k] for k in metrics} == metrics
    check_attention_tool(ckpt, tmp_path / "attention", 12)
    tool.main([str(ckpt), "--eval_episodes", "3", "--eval_batch_size", "2", "--out", str(tmp_path / "three.jsonl")])
    assert len(json.loads((tmp_path / "three.jsonl").read_text())["episodes"]) == 3


def test_readme_smoke_lines_run(tmp_path):
    lines = [ln for ln in readme_lines() if "--smoke" in ln]
    assert lines, "README has no POPGym --smoke line"
    for line in lines:
        argv = shlex.split(line)[1:]
        argv += ["--runs_dir", str(tmp_path / "runs"), "--data_dir", str(tmp_path / "data")]
        out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]


def test_grid_skips_finished_runs_and_aggregates(tmp_path, capsys):
    argv = ["--tasks", "popgym-RepeatFirstEasy-v0,popgym-VelocityOnlyCartpoleEasy-v0", "--models", "RATE,BC_MLP",
            "--seeds", "1", "--smoke", "--runs_dir", str(tmp_path / "runs"), "--data_dir", str(tmp_path / "data")]
    text = run_grid.main(argv)
    assert "**memory** (1 of 1 tasks, sum)" in text and "**reactive** (1 of 1 tasks, sum)" in text
    data = json.loads((tmp_path / "runs" / "popgym" / "grid.json").read_text())
    row = data["tasks"]["popgym-RepeatFirstEasy-v0"]
    assert set(row["ours"]) == {"RATE", "BC_MLP"} and row["paper"]["RATE"] == 1.0
    total = data["aggregates"]["all"]
    assert total["RATE (ours)"] == pytest.approx(sum(r["ours"]["RATE"] for r in data["tasks"].values()))
    sems = [r["sem"]["RATE"] or 0.0 for r in data["tasks"].values()]  # SEM of a sum of independent means
    assert total["sem"]["RATE (ours)"] == pytest.approx(float(np.sqrt(np.sum(np.square(sems)))))
    results = tmp_path / "runs" / "popgym" / "popgym-RepeatFirstEasy-v0" / "RATE" / "seed_1" / "results.json"
    stamp = results.stat().st_mtime_ns
    capsys.readouterr()
    run_grid.main(argv)
    assert results.stat().st_mtime_ns == stamp and "[grid]" not in capsys.readouterr().out  # nothing retrained


REACTIVE_EASY = ",".join(t for t in EASY if family_of(t) in REACTIVE)
UNSOLVED_EASY = ",".join(task_id(f, "Easy") for f in ("Autoencode", "Battleship", "CountRecall"))


@pytest.mark.parametrize("records, models, tasks", [
    ("grid_results", "RATE,DT,BC_LSTM,BC_MLP", "easy"),  # the Easy grid
    ("grid_results/raw_obs", "RATE,DT,BC_LSTM,BC_MLP", REACTIVE_EASY),  # before real components were standardised
    ("grid_results/steps1000", "BC_LSTM", "easy"),  # BC_LSTM at about RATE's compute
    ("grid_results/steps1000", "RATE,BC_LSTM", UNSOLVED_EASY),  # RATE on the three tasks unsolved at 200 steps
])
def test_published_tables_regenerate_from_the_committed_run_records(tmp_path, records, models, tasks):
    """Every row of the grid tables in RESULTS_popgym.md is what ``--table_only`` prints from the committed
    ``results.json`` files (copied: the table is also written under the runs dir)."""
    runs = tmp_path / "runs"
    shutil.copytree(ROOT / "POPGym" / records / "popgym", runs / "popgym")
    text = run_grid.main(["--tasks", tasks, "--models", models, "--table_only", "--runs_dir", str(runs),
                          "--data_dir", str(ROOT / "POPGym" / "grid_results" / "data")])
    doc = (ROOT / "POPGym" / "RESULTS_popgym.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert len(rows) >= 4 and all(ln in doc for ln in rows), [ln for ln in rows if ln not in doc]


def test_measure_plays_the_history_only_expert_beside_the_paper(capsys):
    """``tools.measure --env popgym`` plays the data's expert on the test seeds (RepeatFirst: always right);
    ``diagnostics/measure_experts.py`` puts the same numbers beside the paper's."""
    from POPGym.diagnostics import measure_experts
    from RATE_model.tools import measure

    task = "popgym-RepeatFirstEasy-v0"
    (m,) = measure.main(["--env", "popgym", "--task", task, "--episodes", "4", "--workers", "2"])
    assert (m["policy"], m["return"], m["return_sem"], m["flags"]) == ("expert", 1.0, 0.0, {"task": task})
    (row,) = measure_experts.main(["--tasks", task, "--episodes", "4", "--workers", "1"])
    assert "| RepeatFirstEasy | +1.000 ± 0.000 | +1.00 | -0.49 |" in capsys.readouterr().out
    assert (row["return"], row["mean_length"]) == (m["return"], m["length"]) and row["ms_per_step"] > 0
