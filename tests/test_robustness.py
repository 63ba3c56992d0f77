"""Runs that survive faults: kill -9 and resume, determinism, checkpoint triggers, non-finite loss,
and the shared data readers (tests/test_faults.py: W&B, a full disk, a run folder started twice)."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
import torch

from RATE_model.config import TrainConfig
from RATE_model.data import DataError, Trajectories, check_array, load_hdf5, load_npz, load_pickle
from RATE_model.trainer import NonFiniteLossError, Trainer
from tests.helpers import ROOT, SUBPROCESS_ENV, params, random_batch, tiny_model, tiny_tmaze

ENV = SUBPROCESS_ENV


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
