"""Runs that survive what clusters do to them: an unreachable or failing W&B server, a full disk at
each kind of file a run or a generator writes, and the same run started twice (docs/errors.md)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from RATE_model.checkpoint import load
from tests.helpers import ROOT, SUBPROCESS_ENV, TMAZE_SCRIPT, cli_error, params, tiny_tmaze

ENV = SUBPROCESS_ENV
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
    res = subprocess.run([cmd[0], str(ROOT / TMAZE_SCRIPT), *cmd[2:]], cwd=tmp_path, env=env, capture_output=True,
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
    # without a key: offline from the start, no warning, where the offline run is on stdout
    (tmp_path / "nokey").mkdir()
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "nokey", env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr[-3000:]
    assert res.stdout.startswith(f"W&B: offline, upload with wandb sync {tmp_path / 'probe' / 'wandb'}/offline-run-")


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
                    "set a folder on another disk); it holds no row from this process; the checkpoints are unaffected")


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


def test_a_real_full_disk_stops_in_one_line_and_resume_is_bit_exact(tmp_path):
    """The run folder on a tmpfs that holds one checkpoint but not the second (an atomic rewrite needs room
    for both): the kernel's ENOSPC, one line, no temporary file; grown, --resume latest ends bit-exact."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    cmd = tiny_tmaze(tmp_path, "r", "--ckpt_every", "4", "--seed", "4")
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True)  # uninterrupted, on the real disk
    full = tmp_path / "runs" / "tmaze" / "r" / "seed_4" / "checkpoints" / "last.pt"
    small, run = tmp_path / "small", tmp_path / "small" / "tmaze" / "r" / "seed_4"
    small.mkdir()
    line = shlex.join([*cmd, "--runs_dir", str(small)])
    script = f"""
mount -t tmpfs -o size={full.stat().st_size * 3 // 2 // 1024}k tmpfs {small} || exit 99
{line} >/dev/null 2>{tmp_path}/err; echo $? >{tmp_path}/rc
ls -A {run}/checkpoints >{tmp_path}/ls
cp {run}/checkpoints/last.pt {tmp_path}/cut.pt
mount -o remount,size=64m {small}
{line} --resume latest >/dev/null 2>{tmp_path}/err2 || exit 98
cp {run}/checkpoints/last.pt {tmp_path}/resumed.pt
"""
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
    if res.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    assert res.returncode == 0, (res.stderr + (tmp_path / "err2").read_text() if (tmp_path / "err2").exists() else "")
    step = load(tmp_path / "cut.pt")["step"]
    assert 0 < step < load(full)["step"]
    assert (tmp_path / "rc").read_text().strip() == "2" and (tmp_path / "ls").read_text().split() == ["last.pt"]
    assert (tmp_path / "err").read_text().strip() == (
        f"error: could not write {run / 'checkpoints' / 'last.pt'}: No space left on device (free some space or set a "
        f"folder on another disk); checkpoints/last.pt of optimizer step {step} is intact: free space, then "
        "--resume latest continues from it")
    final, resumed = params(full), params(tmp_path / "resumed.pt")
    assert all(torch.equal(final[k], resumed[k]) for k in final)
