"""Inspecting runs: validation seeds, evaluation during training and best.pt, the run record, the memory
ablation and attention maps."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from RATE_model import envs
from RATE_model.config import TrainConfig
from RATE_model.data import Trajectories
from RATE_model.model import State
from RATE_model.rollout import Decoder, noised, rollout, split_seeds
from RATE_model.tools import attention
from RATE_model.trainer import Trainer
from tests.helpers import crash_at, random_batch, tiny_model
from TMaze_new.TMaze_new_src import train_tmaze
from TMaze_new.TMaze_new_src.tmaze_env import TMazeVecEnv
from TMaze_new.TMaze_new_src.tmaze_eval import eval_seeds


def _env(name):
    try:
        return envs.get(name)
    except envs.EnvError as e:
        pytest.skip(str(e))


# ------------------------------------------------------------------------------------ seed splits
@pytest.mark.parametrize("name", envs.names())
def test_validation_seeds_never_overlap_test_seeds(name):
    env = _env(name)
    n = 5000
    test, val = env.seeds(n, "test"), env.seeds(n, "validation")
    assert len(set(test)) == n and not set(test) & set(val)
    assert env.seeds(10) == test[:10]  # "test" is the default


def test_tmaze_validation_episodes_have_the_test_episodes_goal_sides():
    (goals, seeds), (val_goals, val_seeds) = eval_seeds(100), eval_seeds(100, "validation")
    assert list(goals) == list(val_goals) and not set(seeds) & set(val_seeds)


def test_split_seeds_refuse_overlap_and_unknown_split():
    assert split_seeds(3, "validation", 0, 100) == [100, 101, 102]
    with pytest.raises(ValueError, match="overlap"):
        split_seeds(101, "test", 0, 100)
    with pytest.raises(ValueError, match="split"):
        split_seeds(3, "train", 0, 100)


# ------------------------------------------------------------------- validation inside the trainer
SCORES = {3: 0.1, 6: 0.7, 9: 0.7, 12: 0.2, 15: 0.4, 16: 0.5}  # best: step 6 (the tie at 9 keeps the earlier)


def _trainer(run_dir: Path, validate: bool) -> Trainer:
    torch.manual_seed(0)
    model = tiny_model("RATE", dropout=0.1).train()
    cfg = TrainConfig(epochs=2, batch_size=4, warmup_steps=2, seed=7, eval_every=3 if validate else 0)
    stages = [Trajectories(random_batch(16, 12)), Trajectories(random_batch(16, 12))]
    calls = []

    def val(m):  # consumes every RNG: validation must leave training's streams as they were
        torch.randn(5), np.random.rand(), random.random()
        calls.append(trainer.step)
        return {"x": float(trainer.step)}, SCORES[trainer.step]

    trainer = Trainer(model, cfg, run_dir, {}, stages, validate=val)
    trainer.calls = calls
    return trainer


def test_validation_keeps_the_best_checkpoint_and_changes_no_training_step(tmp_path):
    plain = _trainer(tmp_path / "plain", validate=False)
    plain.fit(progress=False)
    t = _trainer(tmp_path / "val", validate=True)
    t.fit(progress=False)
    assert t.calls == [3, 6, 9, 12, 15, 16]  # every 3 steps, and the final model
    assert t.best == {"step": 6, "score": 0.7}
    best = torch.load(tmp_path / "val" / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == 6 and best["validation"]["best"] == {"step": 6, "score": 0.7}
    for (name, a), b in zip(plain.model.state_dict().items(), t.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # validation did not perturb the training computation


def test_resume_keeps_best_and_last(tmp_path):
    full = _trainer(tmp_path / "full", validate=True)
    full.fit(progress=False)
    crashed = _trainer(tmp_path / "crash", validate=True)
    crash_at(crashed, 10)
    best_before = (tmp_path / "crash" / "checkpoints" / "best.pt").read_bytes()
    resumed = _trainer(tmp_path / "crash", validate=True)
    resumed.load(tmp_path / "crash" / "checkpoints" / "last.pt")
    assert resumed.best == {"step": 6, "score": 0.7}
    resumed.fit(progress=False)
    assert resumed.calls == [12, 15, 16] and resumed.best == full.best
    assert (tmp_path / "crash" / "checkpoints" / "best.pt").read_bytes() == best_before  # not rewritten
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ----------------------------------------------------------------------- through a train script
TINY = ["--smoke", "--no_wandb", "--device", "cpu", "--epochs", "2"]


@pytest.fixture(scope="module")
def tmaze_run(tmp_path_factory):
    """A tiny T-Maze RATE run validated every 2 steps, with scripted validation scores (best: step 4)."""
    root = tmp_path_factory.mktemp("inspect")
    scores = iter([0.2, 0.9, 0.1, 0.3, 0.5, 0.4])
    mp = pytest.MonkeyPatch()
    mp.setattr(train_tmaze.ENV, "selection_score", lambda metrics: next(scores))
    try:
        out = train_tmaze.main(TINY + ["--runs_dir", str(root / "runs"), "--data_dir", str(root / "data"),
                                       "--eval_every", "2", "--val_episodes", "4", "--ckpt_folder", "r"])
    finally:
        mp.undo()
    return root / "runs" / "tmaze" / "r" / "seed_1", out


def test_train_script_reports_last_and_best_on_validation(tmaze_run):
    run, out = tmaze_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/score" in r]
    assert [r["step"] for r in val] == [2, 4, 6, 8, 10] and all("val/10" in r for r in val)
    best_row = max(val, key=lambda r: r["val/score"])
    result = json.loads((run / "results.json").read_text())
    best = result["best_on_validation"]
    assert best["step"] == best_row["step"] == 4 and best["score"] == 0.9
    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["step"] == 4
    assert set(best["metrics"]) == set(result["metrics"]) == {"10", "20"}
    assert result["eval_memory_noise"] == "none" and out["runs"]["1"]["best_on_validation"]["step"] == 4
    assert any("eval_best/10" in r for r in rows) and (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_config_records_command_code_versions_and_device(tmaze_run):
    cfg = json.loads((tmaze_run[0] / "config.json").read_text())
    assert cfg["command"] and set(cfg["git"]) == {"commit", "dirty"}
    assert len(cfg["git"]["commit"]) == 40 or cfg["git"]["commit"] == "unknown"
    assert cfg["versions"]["torch"] == torch.__version__.split("+")[0] or cfg["versions"]["torch"] == torch.__version__
    assert {"numpy", "gymnasium", "python"} <= set(cfg["versions"]) and cfg["device"]


# ------------------------------------------------------------------------------- memory ablation
def _state(with_memory: bool, with_cache: bool) -> State:
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(3, 5, 16, generator=g) * 2 + 1 if with_memory else None
    cache = [torch.randn(3, 7, 16, generator=g) - 3 for _ in range(2)] if with_cache else None
    return State(memory, cache, torch.ones(3, 7, dtype=torch.bool) if with_cache else None)


@pytest.mark.parametrize("which", ["none", "tokens", "cache", "both"])
def test_noise_replaces_only_what_it_names_with_the_same_statistics(which):
    s = _state(True, True)
    n = noised(s, which, torch.Generator().manual_seed(0))
    memory_changed = not torch.equal(n.memory, s.memory)
    cache_changed = not all(torch.equal(a, b) for a, b in zip(n.cache, s.cache, strict=True))
    assert memory_changed == (which in ("tokens", "both")) and cache_changed == (which in ("cache", "both"))
    assert torch.equal(n.cache_valid, s.cache_valid)
    pairs = ([(n.memory, s.memory)] if memory_changed else []) + (
        list(zip(n.cache, s.cache, strict=True)) if cache_changed else [])
    for new, old in pairs:
        assert new.shape == old.shape
        assert abs(new.mean() - old.mean()) < 0.25 * old.std() and abs(new.std() / old.std() - 1) < 0.2


def _tmaze_logits(model, noise: str) -> list[torch.Tensor]:
    env = TMazeVecEnv(12, np.array([1, -1]), np.array([0, 1]))
    obs, out = env.reset(), []
    dec = Decoder(model, 2, memory_noise=noise)
    for _ in range(12):
        logits = dec.act_logits(torch.ones(2), torch.as_tensor(obs))
        out.append(logits)
        a = logits.argmax(-1)
        dec.observe_action(a)
        obs, *_ = env.step(a.numpy())
    return out


def test_noise_changes_a_memory_model_and_leaves_dt_alone():
    torch.manual_seed(0)
    rate = tiny_model("RATE", dropout=0.0, env="tmaze")
    plain, tokens = _tmaze_logits(rate, "none"), _tmaze_logits(rate, "tokens")
    assert not torch.allclose(plain[0], tokens[0])  # the first segment reads noise in place of the initial memory
    assert torch.equal(torch.stack(_tmaze_logits(rate, "tokens")), torch.stack(tokens))  # seeded: reproducible
    dt = tiny_model("DT", dropout=0.0, env="tmaze")  # no memory tokens, no cache: nothing to replace
    assert torch.equal(torch.stack(_tmaze_logits(dt, "none")), torch.stack(_tmaze_logits(dt, "both")))
    with pytest.raises(ValueError, match="memory noise"):
        rollout(rate, TMazeVecEnv(12, np.array([1]), np.array([0])), 1.0, 12, memory_noise="all")


def test_memory_noise_applies_to_the_test_split_only():
    """--eval_memory_noise is the test evaluation's ablation; validation chooses checkpoints on the intact model."""
    env = envs.get("tmaze")
    args = argparse.Namespace(eval_memory_noise="tokens")
    assert env.memory_noise(args, "test") == "tokens" and env.memory_noise(args, "validation") == "none"
    assert env.memory_noise(argparse.Namespace(), "test") == "none"


def test_rollout_keeps_the_trajectory_it_played():
    torch.manual_seed(0)
    model = tiny_model("RATE", dropout=0.0, env="tmaze")
    env = TMazeVecEnv(9, np.array([1, -1]), np.array([0, 1]))
    res = rollout(model, env, 1.0, 9, keep_trajectory=True)
    assert res.trajectory["obs"].shape == (9, 2, 4) and res.trajectory["action"].shape == (9, 2)
    assert np.allclose(res.trajectory["rtg"][0], 1.0) and res.trajectory["obs"][0, :, 1].tolist() == [1, -1]


def test_rollout_returns_the_state_each_segment_hands_on_equal_to_the_forward_pass():
    """keep_states: the memory after each completed segment, as training's forward pass computes it."""
    torch.manual_seed(0)
    model = tiny_model("RATE", dropout=0.0, env="tmaze")  # K 4, cache 10
    env = TMazeVecEnv(14, np.array([1, -1]), np.array([0, 1]))
    res = rollout(model, env, 1.0, 13, keep_trajectory=True, keep_states=True)
    tr = {k: torch.as_tensor(v).transpose(0, 1) for k, v in res.trajectory.items()}  # [E, T, ...]
    assert len(res.states) == 3  # segments 1-3 completed; the 4th (step 12) is still open
    state = None
    with torch.no_grad():
        for i, s in enumerate(range(0, 12, 4)):
            valid = torch.ones(2, 4, dtype=torch.bool)
            _, state = model(tr["rtg"][:, s:s + 4, None], tr["obs"][:, s:s + 4], tr["action"][:, s:s + 4], valid, state)
            torch.testing.assert_close(res.states[i].memory, state.memory, rtol=1e-5, atol=1e-5)
    assert rollout(model, env, 1.0, 13).states == []  # only when asked


# ------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("d_head", [16, 8])  # the absorbed (d_head >= d) and the standard form
def test_asking_a_layer_for_its_attention_changes_no_output_and_rows_are_distributions(d_head):
    torch.manual_seed(0)
    model = tiny_model("RATE", dropout=0.0, d_head=d_head)
    b = random_batch(1, 4)
    ref, _ = model(b["rtg"], b["obs"], b["action"], b["valid"])
    asked = []
    hook = model.layers[0].attn.register_forward_hook(lambda attn, inputs, _: asked.append(attn.probabilities(*inputs)))
    out, _ = model(b["rtg"], b["obs"], b["action"], b["valid"])
    hook.remove()
    assert torch.equal(ref, out)
    p = asked[0]
    assert p.shape == (1, 2, 2 * 2 + 12, 2 * 2 + 12) and torch.allclose(p.sum(-1), torch.ones(1, 2, 16))


@pytest.mark.parametrize("mode", ["RATE", "DT"])
def test_attention_tool_writes_maps_and_shares(tmaze_run, tmp_path, mode):
    ckpt = tmaze_run[0] / "checkpoints" / "last.pt"
    if mode == "DT":  # a DT checkpoint of the same run layout
        payload = torch.load(ckpt, weights_only=True)
        dt = tiny_model("DT", env="tmaze", context_length=5, sections=2, n_layer=2, n_head=2, d_model=32,
                        d_head=16, d_inner=32)
        payload["model"], payload["model_config"] = dt.state_dict(), {**payload["model_config"], **{
            k: getattr(dt.config, k) for k in payload["model_config"]}}
        ckpt = tmp_path / "dt.pt"
        torch.save(payload, ckpt)
    out = tmp_path / "maps"
    summary = attention.main([str(ckpt), "--seed", "1", "--length", "12", "-o", str(out)])
    assert summary["steps"] >= 10 and summary["cue_steps"] == [0]
    assert summary["pngs"] and all((out / p).read_bytes()[:4] == b"\x89PNG" for p in summary["pngs"])
    lines = (out / "attention_share.csv").read_text().splitlines()
    assert lines[0] == "step,segment,layer,memory,cache,segment,cue" and len(lines) == 1 + 2 * summary["steps"]
    for line in lines[1:]:
        memory, cache, seg, _ = map(float, line.split(",")[3:])
        assert memory + cache + seg == pytest.approx(1.0, abs=1e-4)  # regular tokens never see write slots
        if mode == "DT":
            assert memory == 0.0 and cache == 0.0
    assert summary["cue"]["0"]["cue"] > 0  # o_0 attends to itself
    assert json.loads((out / "summary.json").read_text())["decision"]["step"] == summary["steps"] - 1


def test_attention_tool_bad_input_is_one_line(tmaze_run, tmp_path, capsys):
    ckpt = str(tmaze_run[0] / "checkpoints" / "last.pt")
    for argv, text in ([[ckpt, "--env", "vizdoom", "-o", str(tmp_path)], "trained on tmaze"],
                       [[str(tmp_path / "none.pt"), "-o", str(tmp_path)], "does not exist"],
                       [[ckpt, "--length", "0", "-o", str(tmp_path)], "--length"]):
        with pytest.raises(SystemExit) as e:
            attention.main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and text in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", envs.names())
def test_every_registered_env_implements_the_interface(name):
    env = _env(name)
    assert isinstance(env, envs.Environment) and env.name == name and env.validation_episodes >= 1
    for method in ("evaluate", "attention_episode"):  # what training and the tools call (the score defaults to return)
        assert getattr(type(env), method) is not getattr(envs.Environment, method), method
    assert (Path(__file__).resolve().parent.parent / env.train_script).is_file()


def test_tmaze_attention_notebook_runs_and_shows_maps(tmp_path):
    nbformat, nbclient = pytest.importorskip("nbformat"), pytest.importorskip("nbclient")
    root = Path(__file__).resolve().parent.parent
    nb = nbformat.read(root / "TMaze_new" / "notebooks" / "attention_maps.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # cue and decision segments of both models, and the per-step shares
