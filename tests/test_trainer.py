"""Trainer: loss masking, schedule, gradient flow through memory, exact resume, and learning."""

from __future__ import annotations

import math

import pytest
import torch

from RATE_model.config import TrainConfig
from RATE_model.data import Trajectories
from RATE_model.trainer import Trainer, action_loss, build_optimizer, build_scheduler
from tests.helpers import fit_tiny, random_batch, tiny_model
from TMaze_new.TMaze_new_src import train_tmaze


def test_loss_ignores_padding():
    logits = torch.randn(2, 3, 4)
    actions = torch.tensor([[0, 1, -10], [2, -10, -10]])
    valid = actions >= 0
    s, n = action_loss(logits, actions, valid)
    ref = sum(torch.nn.functional.cross_entropy(logits[b, t:t + 1], actions[b, t:t + 1])
              for b, t in [(0, 0), (0, 1), (1, 0)])
    assert n == 3 and torch.allclose(s, ref)


def test_continuous_loss_is_masked_mse():
    pred, act = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    s, n = action_loss(pred, act, torch.tensor([[True, False]]))
    assert n == 1 and s.item() == pytest.approx(1.0)


def test_schedule_warmup_then_linear_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_scheduler(opt, TrainConfig(lr=1.0, warmup_steps=4, lr_end_factor=0.1), total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[-1] == pytest.approx(0.1) and lrs[9] == pytest.approx(0.55)


def test_weight_decay_only_on_weights():
    model = tiny_model("RATE")
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.memory.init) not in decayed and id(model.u) not in decayed
    assert id(model.layers[0].attn.qkv.weight) in decayed


def _data(n=16, T=12):
    b = random_batch(n, T, valid_len=[T if i % 2 else 7 for i in range(n)])
    return Trajectories(b)


@pytest.mark.parametrize("memory_grad,mrv_gets_grad,steps", [("bptt", True, 1), ("detach", False, 3)])
def test_memory_gradient_modes(tmp_path, memory_grad, mrv_gets_grad, steps):
    model = tiny_model("RATE", memory_grad=memory_grad).train()
    trainer = Trainer(model, TrainConfig(batch_size=8, warmup_steps=1), tmp_path, {}, [_data()])
    trainer.train_batch(_data(8).batch(torch.arange(8)))
    grads = [p.grad for p in model.memory.mrv.parameters()]
    has = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert has == mrv_gets_grad
    assert trainer.step == steps  # bptt: one step per batch; detach: one per segment


def test_grad_checkpoint_step_equals_plain_step(tmp_path, monkeypatch):
    """--grad_checkpoint recomputes layers in backward; the optimizer step must be the same."""
    import RATE_model.model as model_module

    calls = []
    real = model_module.checkpoint
    monkeypatch.setattr(model_module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    params = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = tiny_model("RATE").eval()  # no dropout, so the recomputation is exact
        cfg = TrainConfig(batch_size=8, warmup_steps=1, grad_checkpoint=ckpt)
        Trainer(model, cfg, tmp_path / str(ckpt), {}, [_data()]).train_batch(_data(8).batch(torch.arange(8)))
        params.append([p.detach().clone() for p in model.parameters()])
        assert bool(calls) == ckpt
    for a, b in zip(*params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _fit(tmp_path, name, stop_after=None, resume=None):
    return fit_tiny(tmp_path / name, lambda: [_data(), _data()], stop_after, resume)


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    full = _fit(tmp_path, "full")
    crashed = _fit(tmp_path, "crash", stop_after=5)
    torch.manual_seed(123)  # resume must restore every RNG itself
    resumed = _fit(tmp_path, "crash", resume=tmp_path / "crash" / "checkpoints" / "last.pt")
    assert crashed.step == 5 and resumed.step == full.step == 16
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_resume_with_other_model_config_fails_clearly(tmp_path):
    from RATE_model.checkpoint import CheckpointError

    t = _fit(tmp_path, "a")
    other = tiny_model("RATE", n_layer=3)
    trainer = Trainer(other, TrainConfig(), tmp_path / "b", {}, [_data()])
    with pytest.raises(CheckpointError, match="n_layer"):
        trainer.load(t.run_dir / "checkpoints" / "last.pt")


def test_a_checkpoint_from_before_a_training_setting_existed_resumes_at_its_default(tmp_path):
    """A checkpoint written before a TrainConfig field was added (here ``pixel_norm``) trained at that field's
    default: resuming at the default continues it, resuming with another value is refused naming the field."""
    from dataclasses import asdict, replace

    from RATE_model.checkpoint import CheckpointError, check_resumable

    cfg = TrainConfig()
    old = {k: v for k, v in asdict(cfg).items() if k != "pixel_norm"}
    check_resumable({"train": old}, {"train": asdict(cfg)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="pixel_norm: checkpoint False vs run True"):
        check_resumable({"train": old}, {"train": asdict(replace(cfg, pixel_norm=True))}, tmp_path / "last.pt")


def test_rate_learns_two_segment_tmaze_and_segment_limited_dt_cannot(tmp_path):
    """Corridor of 2 segments: only memory can carry the hint from segment 1 to the junction in segment 2."""
    common = ["--no_wandb", "--runs_dir", str(tmp_path), "--data_dir", str(tmp_path / "data"), "--context_length", "5",
              "--max_n_final", "2", "--n_layer", "2", "--n_head", "2", "--d_model", "32", "--d_head", "16",
              "--d_inner", "32", "--skip_dec_ffn", "--trajectories_per_side", "100", "--epochs", "40", "--lr", "3e-3",
              "--warmup_steps", "10", "--batch_size", "32", "--eval_lengths", "10", "--eval_episodes", "100",
              "--dropout", "0"]
    rate = train_tmaze.main(common + ["--nmt", "2", "--n_head_ca", "2", "--mrv_act", "relu", "--ckpt_folder", "rate"])
    # RATE with no memory tokens and no cache is DT on one 5-step segment (tested in test_model)
    dt = train_tmaze.main(common + ["--nmt", "0", "--mem_len", "0", "--n_head_ca", "0", "--mrv_act", "no_act",
                                    "--ckpt_folder", "dt"])
    assert rate["mean"]["10"] >= 0.95
    assert dt["mean"]["10"] <= 0.7
    assert math.isfinite(rate["runs"]["1"]["optimizer_steps"])
