"""Runs that survive faults: kill -9 and resume, determinism, checkpoint triggers, non-finite loss, the
shared data readers, an unreachable or failing W&B, a full disk, and a run folder started twice."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from RATE_model.checkpoint import load
from RATE_model.config import TrainConfig
from RATE_model.data import DataError, Trajectories, check_array, load_hdf5, load_npz, load_pickle
from RATE_model.trainer import NonFiniteLossError, Trainer
from tests.helpers import cli_error, random_batch, tiny_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "TMaze_new/TMaze_new_src/train_tmaze.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def tiny_tmaze(tmp: Path, folder: str, *extra: str) -> list[str]:
    """A T-Maze run of ~60 optimizer steps in a couple of seconds."""
    return [sys.executable, SCRIPT, "--smoke", "--no_wandb", "--device", "cpu", "--runs_dir", str(tmp / "runs"),
            "--data_dir", str(tmp / "data"), "--ckpt_folder", folder, "--batch_size", "16", "--epochs", "6",
            "--dropout", "0.1", *extra]


def params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_kill_9_then_resume_latest_ends_bit_exact(tmp_path):
    flags = ["--memory_grad", "detach", "--ckpt_every", "3", "--log_every", "1", "--seed", "4"]
    subprocess.run(tiny_tmaze(tmp_path, "warm", "--epochs", "1"), cwd=ROOT, env=ENV, check=True,
                   capture_output=True)  # generates the shared data, so both runs below only train
    full = subprocess.Popen(tiny_tmaze(tmp_path, "full", *flags), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(tiny_tmaze(tmp_path, "killed", *flags), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "runs" / "tmaze" / "killed" / "seed_4"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few checkpoints exist
        log = run / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 8:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert full.wait(timeout=180) == 0
    killed_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    final = params(tmp_path / "runs" / "tmaze" / "full" / "seed_4" / "checkpoints" / "last.pt")
    total = torch.load(tmp_path / "runs/tmaze/full/seed_4/checkpoints/last.pt", weights_only=True)["step"]
    assert 3 <= killed_at["step"] < total and not killed_at["complete"], "kill must land mid-training"
    res = subprocess.run(tiny_tmaze(tmp_path, "killed", *flags, "--resume", "latest"), cwd=ROOT, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    resumed = params(run / "checkpoints" / "last.pt")
    for k, v in final.items():
        assert torch.equal(v, resumed[k]), k
    a = json.loads((tmp_path / "runs/tmaze/full/seed_4/results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert a["metrics"] == b["metrics"] and a["optimizer_steps"] == b["optimizer_steps"] == total
    assert a["resumed_from_step"] == 0 and b["resumed_from_step"] == killed_at["step"]  # what train_seconds covers
    # the log reads as one run: the rows the killed process wrote after its checkpoint were replaced
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x)["step"] for x in (tmp_path / "runs/tmaze/full/seed_4/metrics.jsonl").read_text().splitlines()]
    assert steps == ref
    # resuming a finished run only evaluates: nothing is trained and the checkpoint is not rewritten
    before = (run / "checkpoints" / "last.pt").read_bytes()
    res = subprocess.run(tiny_tmaze(tmp_path, "killed", *flags, "--resume", "latest"), cwd=ROOT, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    again = json.loads((run / "results.json").read_text())
    assert again["metrics"] == a["metrics"] and again["resumed_from_step"] == total


def test_same_seed_gives_identical_metrics(tmp_path):
    subprocess.run(tiny_tmaze(tmp_path, "warm", "--epochs", "1"), cwd=ROOT, env=ENV, check=True, capture_output=True)
    procs = [subprocess.Popen(tiny_tmaze(tmp_path, name, "--seed", "11", "--log_every", "1"), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()[-2000:]
    runs = [tmp_path / "runs" / "tmaze" / name / "seed_11" for name in ("a", "b")]
    rows = [map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) for d in runs]
    losses = [[(r["step"], r["losses/train_loss"]) for r in rs
               if "losses/train_loss" in r] for rs in rows]
    assert len(losses[0]) > 10 and losses[0] == losses[1]
    results = [json.loads((d / "results.json").read_text()) for d in runs]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["optimizer_steps"] == results[1]["optimizer_steps"]
    other = tiny_tmaze(tmp_path, "c", "--seed", "12", "--log_every", "1")
    subprocess.run(other, cwd=ROOT, env=ENV, check=True, capture_output=True)
    c = [(r["step"], r["losses/train_loss"]) for r in
         map(json.loads, (tmp_path / "runs/tmaze/c/seed_12/metrics.jsonl").read_text().splitlines())
         if "losses/train_loss" in r]
    assert c != losses[0]  # the seed matters


def _data(n=16, T=12):
    return Trajectories(random_batch(n, T, valid_len=[T if i % 2 else 7 for i in range(n)]))


def test_ckpt_every_fires_when_a_multiple_is_crossed_in_detach_mode(tmp_path):
    """3 segments per batch in detach mode: steps go 3, 6, 9, ...; --ckpt_every 2 must still save."""
    model = tiny_model("RATE", memory_grad="detach").train()
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=4, warmup_steps=1, ckpt_every=2), tmp_path, {},
                      [_data()])
    saved = []
    orig = trainer.save
    trainer.save = lambda name="last.pt": saved.append(trainer.step) or orig(name)
    trainer.fit(progress=False)
    assert saved == [3, 6, 9, 12, 12]  # every batch crosses a multiple of 2; the last save ends the run


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data = _data()
    trainer = Trainer(tiny_model("RATE").train(), TrainConfig(epochs=1, batch_size=4, warmup_steps=1, ckpt_every=1),
                      tmp_path, {}, [data])
    third = trainer._epoch_batches(len(data), 0, 0)[2]
    data.tensors["rtg"][third[0]] = float("nan")  # one window of the third batch
    with pytest.raises(NonFiniteLossError, match="optimizer step 3;"):
        trainer.fit(progress=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# ------------------------------------------------------------------------------ data readers
def test_check_array_names_file_and_field():
    a = np.zeros((3, 4), np.float32)
    assert check_array("obs", a, shape=(None, 4), dtype="floating", finite=True) is a
    with pytest.raises(DataError, match=r"f\.npz: obs has shape \(3, 4\), expected \(\*, 5\)"):
        check_array("obs", a, shape=(None, 5), source="f.npz")
    with pytest.raises(DataError, match="action has dtype float32, expected integer"):
        check_array("action", a, dtype="integer")
    with pytest.raises(DataError, match="obs has dtype float32, expected uint8"):
        check_array("obs", a, dtype=np.uint8)
    a[2, 1] = np.nan
    with pytest.raises(DataError, match=r"reward holds NaN or inf \(first at index \(2, 1\)\)"):
        check_array("reward", a, finite=True)
    with pytest.raises(DataError, match="is a list"):
        check_array("obs", [1, 2])


def test_readers_turn_any_failure_into_a_data_error_naming_the_file(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, obs=np.ones(3), action=np.arange(3))
    assert load_npz(good, ["obs"])["obs"].shape == (3,)
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:60])
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("trunc.npz", "junk.npz", "empty.npz", "missing.npz"):
        with pytest.raises(DataError, match=name):
            load_npz(tmp_path / name, ["obs"])
    with pytest.raises(DataError, match=r"good\.npz lacks fields \['reward'\]"):
        load_npz(good, ["obs", "reward"])

    pk = tmp_path / "d.pkl"
    pk.write_bytes(pickle.dumps([{"observations": np.zeros(2)}]))
    assert load_pickle(pk)[0]["observations"].shape == (2,)
    (tmp_path / "t.pkl").write_bytes(pk.read_bytes()[:10])
    (tmp_path / "g.pkl").write_bytes(b"\x00garbage")
    for name in ("t.pkl", "g.pkl", "none.pkl"):
        with pytest.raises(DataError, match=name):
            load_pickle(tmp_path / name)

    h5 = tmp_path / "d.hdf5"
    with h5py.File(h5, "w") as f:
        f["observations"] = np.zeros((5, 3), np.float32)
        f["actions"] = np.zeros((5, 2), np.float32)
    assert load_hdf5(h5, ["observations", "actions"])["actions"].shape == (5, 2)
    with pytest.raises(DataError, match=r"d\.hdf5 lacks datasets \['rewards'\]"):
        load_hdf5(h5, ["rewards"])
    (tmp_path / "t.hdf5").write_bytes(h5.read_bytes()[:500])
    (tmp_path / "j.hdf5").write_bytes(b"junk" * 100)
    for name in ("t.hdf5", "j.hdf5", "none.hdf5"):
        with pytest.raises(DataError, match=name):
            load_hdf5(tmp_path / name, ["observations"])


# ------------------------------------------------------------------ W&B, a full disk, a folder run twice
TRAIN = "TMaze_new.TMaze_new_src.train_tmaze"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once, no network needed


def in_process(tmp: Path, folder: str, *extra: str) -> list[str]:
    """tiny_tmaze's flags, for ``train_tmaze.main`` in this process."""
    return tiny_tmaze(tmp, folder, *extra)[2:]


def test_unreachable_wandb_server_costs_one_warning_line_and_the_timeout(tmp_path):
    """A W&B key and a server that does not answer (a compute node without internet): the smoke run trains,
    evaluates and writes everything, logs offline, and says so on one line; the wait is --wandb_timeout."""
    (tmp_path / "wandb_config.yaml").write_text("wandb_api: " + "ab" * 20 + "\n")
    env = {**ENV, "WANDB_BASE_URL": UNREACHABLE, "PYTHONPATH": str(ROOT)}
    env.pop("WANDB_MODE")
    cmd = tiny_tmaze(tmp_path, "wb", "--epochs", "1", "--wandb_timeout", "3")
    cmd.remove("--no_wandb")
    res = subprocess.run([cmd[0], str(ROOT / SCRIPT), *cmd[2:]], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: W&B did not start ("), res.stderr[-3000:]
    assert "connection refused" in lines[0] and "wandb sync" in lines[0]
    run = tmp_path / "runs" / "tmaze" / "wb" / "seed_1"
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and lines[0].endswith(str(offline[0]))
    assert list(offline[0].glob("*.wandb")), "the offline run holds the logged rows for wandb sync"
    assert (run / "results.json").is_file() and (tmp_path / "runs" / "tmaze" / "wb" / "results.json").is_file()
    # the delay is the timeout: RunLogger alone, in a fresh process, against the same server
    probe = ("import time; from pathlib import Path; from RATE_model.logger import RunLogger; t = time.time(); "
             f"log = RunLogger(Path({str(tmp_path / 'probe')!r}), {{}}, 'p', 'n', wandb_timeout=2); "
             "print(time.time() - t); log.log({'a': 1.0}, 1); log.close()")
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert float(res.stdout.split()[-1]) < 2 + 5  # the timeout, then the offline start (~0.3 s)


class FailingWandb:
    """A W&B run whose ``log`` raises from its third call on."""

    def __init__(self):
        self.logged, self.finished = 0, False

    def log(self, metrics, step):
        self.logged += 1
        if self.logged >= 3:
            raise ConnectionError("the W&B service died\nsecond line")

    def finish(self):
        self.finished = True


def test_wandb_failing_mid_run_is_one_warning_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from RATE_model import logger
    from TMaze_new.TMaze_new_src import train_tmaze

    fake = FailingWandb()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(logger, "_init_wandb", lambda *a: fake)
    argv = [a for a in in_process(tmp_path, "wb", "--epochs", "2", "--log_every", "1") if a != "--no_wandb"]
    train_tmaze.main(argv)
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert err == ["warning: W&B log failed (ConnectionError: the W&B service died); training goes on, "
                   f"{tmp_path / 'runs/tmaze/wb/seed_1/metrics.jsonl'} keeps every row and W&B gets no more of "
                   "this run"]
    assert fake.logged == 3 and not fake.finished  # no more calls after the failure
    run = tmp_path / "runs" / "tmaze" / "wb" / "seed_1"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "losses/train_loss" in r]) > 3 and any("eval/10" in r for r in rows)
    assert (run / "results.json").is_file()

    class FailingFinish(FailingWandb):
        def log(self, metrics, step):
            self.logged += 1

        def finish(self):
            raise TimeoutError("upload timed out")

    monkeypatch.setattr(logger, "_init_wandb", lambda *a: FailingFinish())
    train_tmaze.main([*argv, "--ckpt_folder", "wb2"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("warning: W&B finish failed (TimeoutError: upload timed out)")
    assert (tmp_path / "runs" / "tmaze" / "wb2" / "seed_1" / "results.json").is_file()


def test_full_disk_at_a_checkpoint_is_one_line_and_resume_continues_bit_exact(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the third checkpoint: one line naming the file and the intact checkpoint, no
    temporary file, the previous last.pt loads, and --resume latest ends exactly where an uninterrupted run does."""
    from TMaze_new.TMaze_new_src import train_tmaze

    flags = ["--ckpt_every", "4", "--seed", "3", "--epochs", "2"]
    train_tmaze.main(in_process(tmp_path, "full", *flags))
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    line = cli_error(train_tmaze.main, in_process(tmp_path, "cut", *flags), capsys)
    monkeypatch.setattr(torch, "save", real)
    ckpts = tmp_path / "runs" / "tmaze" / "cut" / "seed_3" / "checkpoints"
    assert line == (f"error: could not write {ckpts / 'last.pt'}: No space left on device (free some space or set a "
                    "folder on another disk); checkpoints/last.pt of optimizer step 8 is intact: free space, then "
                    "--resume latest continues from it")
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.pt"]
    assert load(ckpts / "last.pt")["step"] == 8
    train_tmaze.main(in_process(tmp_path, "cut", *flags, "--resume", "latest"))
    final = params(tmp_path / "runs" / "tmaze" / "full" / "seed_3" / "checkpoints" / "last.pt")
    resumed = params(ckpts / "last.pt")
    assert final.keys() == resumed.keys() and all(torch.equal(final[k], resumed[k]) for k in final)


def test_full_metrics_file_is_one_line_and_leaves_the_checkpoints(tmp_path, capsys):
    """A real ENOSPC from the kernel: metrics.jsonl is a link to /dev/full."""
    from TMaze_new.TMaze_new_src import train_tmaze

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    run = tmp_path / "runs" / "tmaze" / "m" / "seed_1"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").symlink_to("/dev/full")
    line = cli_error(train_tmaze.main, in_process(tmp_path, "m", "--epochs", "1"), capsys)
    assert line == (f"error: could not write {run / 'metrics.jsonl'}: No space left on device (free some space or "
                    "set a folder on another disk); it holds no row of this run; the checkpoints are unaffected")


def test_full_disk_while_generating_keeps_the_finished_episodes(tmp_path):
    """A real ENOSPC on the third episode's file: one error naming it and the episodes kept, no temporary
    file; the same call afterwards makes only the missing ones."""
    from RATE_model.collect import collect_episodes
    from RATE_model.files import WriteError

    out = tmp_path / "eps"

    def job(i, fail=True):
        if fail and i == 2:  # the file save_episode is about to write, made a link to a full device
            (out / f".episode_000002.npz.tmp{os.getpid()}").symlink_to("/dev/full")
        return {"obs": np.full((3, 2), i, np.float32)}, {}

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with pytest.raises(WriteError) as e:
        collect_episodes(out, 5, job, {"n": 1}, workers=1, progress=False)
    assert str(e.value) == (f"could not write {out / 'episode_000002.npz'}: No space left on device (free some "
                            f"space or set a folder on another disk); the 2 of 5 finished are kept in {out}: free "
                            "space, then rerun the same command to go on")
    assert sorted(p.name for p in out.iterdir()) == ["episode_000000.npz", "episode_000001.npz", "meta.json"]
    stats = collect_episodes(out, 5, lambda i: job(i, fail=False), {"n": 1}, workers=1, progress=False)
    assert (stats["written"], stats["skipped"]) == (3, 2)
    assert [float(np.load(out / f"episode_{i:06d}.npz")["obs"][0, 0]) for i in range(5)] == [0, 1, 2, 3, 4]


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_first_goes_on(tmp_path):
    subprocess.run(tiny_tmaze(tmp_path, "warm", "--epochs", "1"), cwd=ROOT, env=ENV, check=True, capture_output=True)
    first = subprocess.Popen(tiny_tmaze(tmp_path, "busy", "--epochs", "30"), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "tmaze" / "busy" / "seed_1"
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.01)
    second = subprocess.run(tiny_tmaze(tmp_path, "busy", "--epochs", "30"), cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert first.poll() is None, "the first run must still be going for this test to mean anything"
    assert second.returncode == 2 and second.stderr.strip() == (
        f"error: {run} is in use by another run that is still going (the same env, --ckpt_folder and seed started "
        "twice?); wait for it to end, or pick another --ckpt_folder or --seed")
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert json.loads((run / "results.json").read_text())["resumed_from_step"] == 0
    assert load(run / "checkpoints" / "last.pt")["complete"]
    assert not list(run.parent.glob("seed_1/checkpoints/*.replaced_*"))  # the second run set nothing aside


def test_the_folder_lock_ends_with_its_process_even_killed(tmp_path):
    from RATE_model.files import FolderBusy, hold_folder

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from RATE_model.files import hold_folder\n"
                               f"with hold_folder({str(tmp_path)!r}, wait=False):\n print('held', flush=True); "
                               "time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy), hold_folder(tmp_path, wait=False):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_folder(tmp_path, wait=False):
        assert list(tmp_path.iterdir()) == []  # the lock is the kernel's: no file left behind


def test_full_disk_at_the_curves_is_one_line_after_the_results(tmp_path, monkeypatch, capsys):
    from RATE_model.files import write_failure
    from RATE_model.tools import plots
    from TMaze_new.TMaze_new_src import train_tmaze

    def full(fig, path, dpi=100):
        raise write_failure(Path(path), OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))

    monkeypatch.setattr(plots, "save_figure", full)
    line = cli_error(train_tmaze.main, in_process(tmp_path, "c", "--epochs", "1"), capsys)
    run = tmp_path / "runs" / "tmaze" / "c" / "seed_1"
    assert line == (f"error: could not write {run / 'curves.png'}: Disk quota exceeded (free some space or set a "
                    "folder on another disk); results.json and the checkpoints are written: python -m "
                    f"RATE_model.tools.plots {run} --out {run / 'curves.png'} draws it again")
    assert json.loads((run / "results.json").read_text())["optimizer_steps"] > 0
