"""Precision: bf16 autocast against fp32 (forward, gradients, decoding), the auto rule, exact resume in
bf16, learning in bf16, and the flag's plumbing into config.json."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from RATE_model import RATE
from RATE_model import precision as prec
from RATE_model.config import ConfigError, TrainConfig
from RATE_model.data import Trajectories
from RATE_model.rollout import Decoder
from RATE_model.trainer import Trainer
from tests.helpers import ARCHS, MODES, fit_tiny, random_batch, run_segments, tiny_model
from TMaze_new.TMaze_new_src import train_tmaze

CPU = torch.device("cpu")
REAL_NATIVE_BF16 = prec.native_bf16_cpu  # conftest replaces it in every test (auto = fp32 in the suite)


def _loss_and_grads(model, batch, precision):
    model.zero_grad(set_to_none=True)
    with prec.autocast(CPU, precision):
        logits = torch.cat(run_segments(model, batch), 1)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch["action"].flatten())
    loss.backward()
    return logits.float().detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("d_head", [8, 16], ids=["standard", "absorbed"])
@pytest.mark.parametrize("mode,arch", [(m, a) for m in MODES for a in ARCHS])
def test_bf16_forward_and_gradients_match_fp32(mode, arch, d_head):
    torch.manual_seed(0)
    model = tiny_model(mode, arch, d_head=d_head)  # eval(): no dropout, both runs see the same network
    batch = random_batch(3, 12, valid_len=[12, 12, 7])
    batch["action"] = batch["action"].clamp(min=0)
    ref_logits, ref_grads = _loss_and_grads(model, batch, "fp32")
    logits, grads = _loss_and_grads(model, batch, "bf16")
    scale = ref_logits.abs().max()
    assert (logits - ref_logits).abs().max() <= 0.03 * scale + 0.02
    assert grads.keys() == ref_grads.keys()
    flat, ref = torch.cat([g.flatten() for g in grads.values()]), torch.cat([g.flatten() for g in ref_grads.values()])
    assert (flat - ref).norm() <= 0.05 * ref.norm()  # bf16 keeps 8 mantissa bits: ~1 % per product
    assert torch.nn.functional.cosine_similarity(flat, ref, dim=0) > 0.998
    for p in model.parameters():
        assert p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)


@pytest.mark.parametrize("d_head", [8, 16], ids=["standard", "absorbed"])
@pytest.mark.parametrize("mode", ["RATE", "DT", "DTXL", "RATEM"])
def test_kv_decoding_in_bf16_matches_full_forward_in_bf16(mode, d_head):
    torch.manual_seed(0)
    model = tiny_model(mode, d_head=d_head)
    batch = random_batch(2, 12)
    with torch.no_grad(), prec.autocast(CPU, "bf16"):
        full = torch.cat(run_segments(model, batch), 1).float()
        dec, steps = Decoder(model, 2), []
        for t in range(12):
            steps.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]).float())
            dec.observe_action(batch["action"][:, t])
    inc = torch.stack(steps, 1)
    # the same bf16 products in a different grouping: within a few bf16 units of the logits' scale
    assert (inc - full).abs().max() <= 0.02 * full.abs().max() + 0.01
    assert (inc.argmax(-1) == full.argmax(-1)).float().mean() >= 0.9


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(prec, "native_bf16_cpu", lambda: False)
    assert prec.resolve_precision("auto", CPU) == "fp32"
    assert "no native bf16" in prec.describe_precision("auto", CPU)
    assert "emulated" in prec.describe_precision("bf16", CPU)
    assert prec.resolve_precision("bf16", CPU) == "bf16"  # forcing is honoured
    monkeypatch.setattr(prec, "native_bf16_cpu", lambda: True)
    assert prec.resolve_precision("auto", CPU) == "bf16"
    assert prec.resolve_precision("fp32", CPU) == "fp32"
    assert prec.resolve_precision("auto", torch.device("cuda")) == "fp32"  # launch-bound: fp32 on CUDA


def test_native_bf16_follows_the_cpu_capabilities(monkeypatch):
    for avx512_bf16, amx, native in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert REAL_NATIVE_BF16() is native


def test_bad_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="--precision"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ConfigError, match="--precision"):
        prec.resolve_precision("half", CPU)


def test_trainer_autocasts_forward_and_keeps_fp32_master_weights(tmp_path, monkeypatch):
    seen = []
    model = tiny_model("RATE").train()
    model.layers[0].attn.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    data = Trajectories(random_batch(8, 12))
    trainer = Trainer(model, TrainConfig(batch_size=8, warmup_steps=1, precision="bf16"), tmp_path, {}, [data])
    trainer.train_batch(data.batch(torch.arange(8)))
    assert trainer.precision == "bf16" and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for s in trainer.opt.state.values() for v in s.values() if v.dim())


def _fit(tmp_path, name, stop_after=None, resume=None):
    def stages():
        b = random_batch(16, 12, valid_len=[12 if i % 2 else 7 for i in range(16)])
        return [Trajectories(b)]
    return fit_tiny(tmp_path / name, stages, stop_after, resume, precision="bf16")


def test_bf16_resume_is_bit_exact(tmp_path):
    full = _fit(tmp_path, "full")
    crashed = _fit(tmp_path, "crash", stop_after=3)
    torch.manual_seed(99)
    resumed = _fit(tmp_path, "crash", resume=tmp_path / "crash" / "checkpoints" / "last.pt")
    assert crashed.step == 3 and resumed.step == full.step == 8
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


TINY_TMAZE = ["--no_wandb", "--context_length", "5", "--max_n_final", "2", "--n_layer", "2", "--n_head", "2",
              "--d_model", "32", "--d_head", "16", "--d_inner", "32", "--skip_dec_ffn", "--trajectories_per_side",
              "100", "--epochs", "40", "--lr", "3e-3", "--warmup_steps", "10", "--batch_size", "32",
              "--eval_lengths", "10", "--eval_episodes", "100", "--dropout", "0", "--nmt", "2", "--n_head_ca", "2",
              "--mrv_act", "relu"]


def test_tiny_tmaze_learns_in_bf16_as_in_fp32_and_records_the_choice(tmp_path, capsys):
    common = TINY_TMAZE + ["--runs_dir", str(tmp_path), "--data_dir", str(tmp_path / "data")]
    bf16 = train_tmaze.main(common + ["--amp_bf16", "--ckpt_folder", "bf16"])  # the old flag: an alias
    fp32 = train_tmaze.main(common + ["--precision", "fp32", "--ckpt_folder", "fp32"])
    assert bf16["mean"]["10"] >= 0.95 and bf16["mean"]["10"] == fp32["mean"]["10"]
    printed = capsys.readouterr().out
    assert "precision: bf16 autocast" in printed and "precision: fp32" in printed
    for name, chosen in (("bf16", "bf16"), ("fp32", "fp32")):
        config = json.loads((tmp_path / "tmaze" / name / "seed_1" / "config.json").read_text())
        assert config["precision"] == chosen and config["train"]["precision"] == chosen


@pytest.mark.parametrize("env", ["vizdoom", "memory_maze", "atari"])
def test_channels_last_image_encoder_equals_the_plain_nchw_computation(env):
    """The conv stack runs channels-last (and frames reach it in one copy); values and the flattened
    feature order must be those of plain NCHW convolutions, in the forward and in the gradients."""
    from RATE_model.encoders import ChannelsLast, build_encoders

    torch.manual_seed(0)
    enc = build_encoders(env, 32)
    conv = enc.obs[0]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in conv if isinstance(m, torch.nn.Conv2d))
    obs = torch.rand(2, 5, *enc.spec.obs_shape)[:, 1:4]  # a segment slice, as the trainer passes it
    out = enc.embed_obs(obs)
    ref = copy.deepcopy(enc.obs)
    ref[0] = torch.nn.Sequential(*[m for m in ref[0] if not isinstance(m, ChannelsLast)])
    ref.to(memory_format=torch.contiguous_format)
    assert ref[0][0].weight.is_contiguous()
    expected = ref(obs.reshape(6, *enc.spec.obs_shape).contiguous()).view(2, 3, -1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    g1 = torch.autograd.grad(out.square().sum(), conv[1].weight)[0]
    g2 = torch.autograd.grad(expected.square().sum(), ref[0][0].weight)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


class _Drift:
    """Two episodes of a 3-d state that moves by the action; reward = first action component."""

    num_envs = 2

    def reset(self):
        self.s = np.zeros((2, 3), np.float32)
        return self.s

    def step(self, actions):
        assert actions.dtype == np.float32 and actions.shape == (2, 2)
        self.s = self.s + actions.sum(1, keepdims=True)
        return self.s, actions[:, 0].astype(np.float64), np.zeros(2, bool), {}


def test_continuous_rollout_in_bf16_feeds_the_env_float32_actions():
    from RATE_model.rollout import rollout
    from tests.helpers import tiny_config

    torch.manual_seed(0)
    model = RATE(tiny_config("RATE", env="mujoco", env_kwargs={"state_dim": 3, "act_dim": 2})).eval()
    ref = rollout(model, _Drift(), 1.0, max_steps=9)
    with prec.autocast(CPU, "bf16"):
        res = rollout(model, _Drift(), 1.0, max_steps=9)
    assert res.lengths.tolist() == [9, 9]
    np.testing.assert_allclose(res.returns, ref.returns, atol=0.05 * (1 + np.abs(ref.returns).max()))
