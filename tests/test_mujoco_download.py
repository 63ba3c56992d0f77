"""download_d4rl_datasets.py: local D4RL files converted to the reference's pickles, the missing ones listed with
the command that generates each, where it looks (D4RL_DATASET_DIR, then ~/.d4rl), and the README line verbatim."""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

import download_d4rl_datasets as download  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_data import (  # noqa: E402
    DATA_DIR,
    d4rl_filename,
    data_folder,
    read_d4rl,
    read_dataset,
    split_d4rl,
)
from MuJoCo.MuJoCo_src.mujoco_env import split_name  # noqa: E402
from tests.mujoco_helpers import (  # noqa: E402
    PAPER_TABLE,
    QUIET,
    ROOT,
    assert_same_episodes,
    one_line,
    one_thread,  # noqa: F401 (module-wide fixture)
    write_d4rl_file,
)

DOWNLOAD_LINE = "python download_d4rl_datasets.py"  # the MuJoCo download line of the paper README, verbatim


# ------------------------------------------------------------------------------------------ download script
def test_download_converts_local_d4rl_files_and_lists_the_rest(tmp_path, capsys):
    src, out = tmp_path / "d4rl", tmp_path / "out"
    src.mkdir()
    write_d4rl_file(src / "hopper_medium-v2.hdf5", [6, 8, 5], ["terminal", "timeout", "terminal"], tail=4)
    report = download.main(["--source", str(src), "--out_dir", str(out)])
    assert report == {"converted": ["hopper-medium"], "present": [],
                      "missing": [n for n in PAPER_TABLE if n != "hopper-medium"]}
    with open(out / "hopper-medium-v2.pkl", "rb") as f:
        trajectories = pickle.load(f)
    want = split_d4rl(src / "hopper_medium-v2.hdf5", download.PICKLE_FIELDS)
    assert len(trajectories) == 3
    for got, w in zip(trajectories, want, strict=True):
        assert list(got) == list(download.PICKLE_FIELDS)
        for k in download.PICKLE_FIELDS:
            np.testing.assert_array_equal(got[k], w[k])
    assert_same_episodes(read_dataset(out / "hopper-medium-v2.pkl", "hopper"),
                         read_d4rl(src / "hopper_medium-v2.hdf5", "hopper"))
    printed = capsys.readouterr().out
    assert "hopper-medium: " in printed and "(3 episodes, 19 transitions" in printed
    for name in report["missing"]:
        env, kind = split_name(name)
        assert f"python3 MuJoCo/get_data/generate_d4rl.py --env {env} --dataset {kind} --out_dir {out}" in printed
    assert "--env hopper --dataset medium --out_dir" not in printed  # converted: no command
    # a second run finds it; a newer source file is converted again
    again = download.main(["--source", str(src), "--out_dir", str(out), "--datasets", "hopper-medium"])
    assert again == {"converted": [], "present": ["hopper-medium"], "missing": []}
    stamp = (out / "hopper-medium-v2.pkl").stat().st_mtime_ns
    os.utime(src / "hopper_medium-v2.hdf5", ns=(stamp + 10**9, stamp + 10**9))
    assert download.main(["--source", str(src), "--out_dir", str(out),
                          "--datasets", "hopper-medium"])["converted"] == ["hopper-medium"]


def test_download_of_a_corrupt_file_is_a_one_line_error_leaving_no_pickle(tmp_path, capsys):
    src, out = tmp_path / "d4rl", tmp_path / "out"
    src.mkdir()
    (src / "hopper_expert-v2.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(SystemExit) as e:
        download.main(["--source", str(src), "--out_dir", str(out), "--datasets", "hopper-expert"])
    assert e.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: ") and "hopper_expert-v2.hdf5 is corrupt or unreadable" in err
    assert list(out.iterdir()) == []


def test_download_reads_d4rl_dataset_dir_then_home(tmp_path, monkeypatch, capsys):
    src, out = tmp_path / "env_src", tmp_path / "out"
    src.mkdir()
    write_d4rl_file(src / "walker2d_expert-v2.hdf5", [4, 4], state_dim=17, act_dim=6)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(src))
    report = download.main(["--out_dir", str(out), "--datasets", "walker2d-expert,hopper-expert"])
    assert report == {"converted": ["walker2d-expert"], "present": [], "missing": ["hopper-expert"]}
    assert len(read_dataset(out / "walker2d-expert-v2.pkl", "walker2d")) == 2
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.default_source() == tmp_path / ".d4rl" / "datasets"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        download.main(["--out_dir", str(out), "--datasets", "hopper-random"])
    assert e.value.code == 2 and "unknown datasets ['hopper-random']" in one_line(capsys.readouterr().err)


def test_download_readme_line_runs_verbatim(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    words = shlex.split(DOWNLOAD_LINE)
    assert words[0] == "python"
    r = subprocess.run([sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True,
                       env={**QUIET, "D4RL_DATASET_DIR": str(empty), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert " -> " not in r.stdout  # nothing converted
    out = data_folder(None) if (ROOT / "wandb_config.yaml").exists() else DATA_DIR
    missing = [n for n in PAPER_TABLE if not (out / f"{n}-v2.pkl").is_file()]
    commands = [line.strip() for line in r.stdout.splitlines() if "generate_d4rl.py" in line]
    assert commands == [f"python3 MuJoCo/get_data/generate_d4rl.py --env {split_name(n)[0]} "
                        f"--dataset {split_name(n)[1]} --out_dir {out}" for n in missing]
    assert f"no {', '.join(d4rl_filename(n) for n in missing)} in {empty}" in r.stdout

