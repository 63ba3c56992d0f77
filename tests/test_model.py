"""Model invariants: causality, memory, padding, cached decoding, mode equivalences, config checks."""

from __future__ import annotations

import pytest
import torch

from RATE_model import RATE, ConfigError, ModelConfig
from RATE_model.model import CACHE, READ, REGULAR, WRITE, attention_mask
from RATE_model.rollout import Decoder
from tests.helpers import ARCHS, MODES, random_batch, run_segments, tiny_model

ALL = [(m, a) for m in MODES for a in ARCHS]
# d_head 8 < d 16: standard attention form; d_head 16 = d: absorbed form (RelMultiHeadAttention)
FORMS = pytest.mark.parametrize("d_head", [8, 16], ids=["standard", "absorbed"])


@FORMS
@pytest.mark.parametrize("mode,arch", ALL)
def test_no_position_attends_to_its_future(mode, arch, d_head):
    model = tiny_model(mode, arch, d_head=d_head)
    K = model.cfg.context_length
    T = 3 * 4  # every mode sees the same 12 steps (DT as one 12-step segment)
    batch = random_batch(2, T)
    base = torch.cat(run_segments(model, batch), 1)
    for t in (1, 5, 10):  # perturb the tokens of step t: R_t, o_t and a_t
        changed = {k: v.clone() for k, v in batch.items()}
        changed["obs"][:, t] += 3.0
        changed["rtg"][:, t] -= 2.0
        changed["action"][:, t] = (changed["action"][:, t] + 1) % 4
        out = torch.cat(run_segments(model, changed), 1)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        # o_t itself sees R_t and o_t, so step t's prediction must change (the test would be vacuous otherwise)
        assert not torch.allclose(out[:, t], base[:, t])
    assert K in (4, 12)


@FORMS
@pytest.mark.parametrize("mode", ["RATE", "RATEM", "RATE_wo_nmt"])
@pytest.mark.parametrize("arch", ARCHS)
def test_memory_carries_information_across_segments(mode, arch, d_head):
    # mem_len covers two whole segments, so the cache (TrXL) reaches back to the hint too
    model = tiny_model(mode, arch, mem_len=24 if mode != "RATEM" else 0, d_head=d_head)
    batch = random_batch(2, 12)
    base = run_segments(model, batch)
    hinted = {k: v.clone() for k, v in batch.items()}
    hinted["obs"][:, 0, 1] = -hinted["obs"][:, 0, 1] + 5.0  # only the first segment's hint changes
    out = run_segments(model, hinted)
    assert not torch.allclose(out[1], base[1]), "segment 2 ignores segment 1"
    assert not torch.allclose(out[2], base[2]), "segment 3 ignores segment 1"


def test_dt_restricted_to_later_segment_cannot_see_earlier_hint():
    model = tiny_model("DT", sections=1)  # DT whose context is one 4-step segment
    batch = random_batch(2, 12)
    hinted = {k: v.clone() for k, v in batch.items()}
    hinted["obs"][:, 0, 1] += 5.0
    later = {k: v[:, 4:8] for k, v in batch.items()}
    later_h = {k: v[:, 4:8] for k, v in hinted.items()}
    a = model(later["rtg"], later["obs"], later["action"], later["valid"])[0]
    b = model(later_h["rtg"], later_h["obs"], later_h["action"], later_h["valid"])[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@FORMS
@pytest.mark.parametrize("mode,arch", ALL)
def test_padding_never_changes_valid_outputs(mode, arch, d_head):
    model = tiny_model(mode, arch, d_head=d_head)
    lengths = [6, 12, 1]
    batch = random_batch(3, 12, valid_len=lengths)
    base = torch.cat(run_segments(model, batch), 1)
    junk = {k: v.clone() for k, v in batch.items()}
    pad = ~junk["valid"]
    junk["obs"][pad] = 100.0
    junk["rtg"][pad] = -50.0
    junk["action"][pad] = 3  # even a real action id in a padded slot must not leak
    out = torch.cat(run_segments(model, junk), 1)
    valid = batch["valid"]
    torch.testing.assert_close(out[valid], base[valid], rtol=0, atol=1e-5)


@FORMS
@pytest.mark.parametrize("mode,arch", ALL)
def test_kv_cached_rollout_equals_full_recomputation(mode, arch, d_head):
    model = tiny_model(mode, arch, d_head=d_head)
    K = model.cfg.context_length
    T = K * (3 if K == 4 else 2)
    batch = random_batch(3, T)
    full = torch.cat(run_segments(model, batch), 1)
    dec, inc = Decoder(model, 3), []
    with torch.no_grad():
        for t in range(T):
            inc.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]))
            dec.observe_action(batch["action"][:, t])
    torch.testing.assert_close(torch.stack(inc, 1), full.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_rate_without_memory_and_cache_equals_dt_on_same_window(arch):
    rate = tiny_model("RATE", arch, num_mem_tokens=0, mem_len=0, n_head_ca=0, mrv_act="no_act",
                      context_length=12, sections=1)
    dt = tiny_model("DT", arch, context_length=4, sections=3)  # DT window: 4 x 3 = 12 steps
    assert dt.cfg.context_length == 12
    dt.load_state_dict(rate.state_dict())
    batch = random_batch(2, 12, valid_len=[12, 7])
    a = rate(batch["rtg"], batch["obs"], batch["action"], batch["valid"])[0]
    b = dt(batch["rtg"], batch["obs"], batch["action"], batch["valid"])[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_attention_mask_rules():
    m, n_reg, c = 2, 6, 3
    seg = [READ] * m + [REGULAR] * n_reg + [WRITE] * m
    q_type = torch.tensor(seg)
    k_type = torch.tensor([CACHE] * c + seg)
    k_pos = torch.arange(len(k_type))
    q_pos = k_pos[c:]
    valid = torch.ones(1, len(k_type), dtype=torch.bool)
    blocked = attention_mask(q_type, q_pos, k_type, k_pos, valid)[0]
    reg = q_type == REGULAR
    # read slots see exactly the read slots
    assert (~blocked[q_type == READ] == (k_type == READ)).all()
    # regular tokens: whole cache, read slots, earlier-or-same regular tokens, never write slots
    assert not blocked[reg][:, k_type == CACHE].any()
    assert not blocked[reg][:, k_type == READ].any()
    assert blocked[reg][:, k_type == WRITE].all()
    causal = (k_pos[None, k_type == REGULAR] > q_pos[reg][:, None])
    assert (blocked[reg][:, k_type == REGULAR] == causal).all()
    # write slots: everything in the segment, never the cache
    assert blocked[q_type == WRITE][:, k_type == CACHE].all()
    assert not blocked[q_type == WRITE][:, k_type != CACHE].any()
    # a padded key is blocked for every query but itself
    valid[0, c + m + 2] = False
    blocked = attention_mask(q_type, q_pos, k_type, k_pos, valid)[0]
    col = blocked[:, c + m + 2]
    assert col.sum() == len(q_type) - 1 and not col[m + 2]


@pytest.mark.parametrize("arch", ARCHS)
def test_skip_ffn_valid_for_every_arch(arch):
    model = tiny_model("RATE", arch, skip_dec_ffn=True)
    assert all(layer.ffn is None for layer in model.layers)
    batch = random_batch(2, 12)
    out = run_segments(model, batch)
    assert out[0].shape == (2, 4, 4) and torch.isfinite(torch.cat(out, 1)).all()


def test_memory_tokens_start_distinct_and_position_biases_initialised():
    model = tiny_model("RATE")
    init = model.memory.init
    assert not torch.allclose(init[0], init[1])
    assert model.u.abs().sum() > 0 and model.v.abs().sum() > 0
    bound = (6 / sum(model.u.shape)) ** 0.5  # Xavier-uniform
    assert model.u.abs().max() <= bound


def test_mrv_dropout_obeys_eval_mode():
    model = tiny_model("RATE", dropout=0.5)
    batch = random_batch(2, 12)
    with torch.no_grad():
        a = run_segments(model, batch)
        b = run_segments(model, batch)
    torch.testing.assert_close(torch.cat(a, 1), torch.cat(b, 1), rtol=0, atol=0)


@pytest.mark.parametrize("act", ["no_act", "relu", "leaky_relu", "elu", "tanh"])
def test_every_mrv_activation(act):
    model = tiny_model("RATE", mrv_act=act)
    assert type(model.memory.act).__name__ == {"no_act": "Identity", "relu": "ReLU", "leaky_relu": "LeakyReLU",
                                                "elu": "ELU", "tanh": "Tanh"}[act]
    out = run_segments(model, random_batch(2, 12))
    assert torch.isfinite(torch.cat(out, 1)).all()


@pytest.mark.parametrize("kw,flag", [
    (dict(n_head_ca=3, d_model=16), "--n_head_ca 3"),
    (dict(num_mem_tokens=0, n_head_ca=2), "--nmt is 0"),
    (dict(model_mode="XYZ"), "--model_mode"),
    (dict(arch_mode="LSTM"), "--arch_mode"),
    (dict(mrv_act="gelu"), "--mrv_act"),
    (dict(memory_grad="none"), "--memory_grad"),
    (dict(n_layer=0), "--n_layer"),
    (dict(mem_len=-1), "--mem_len"),
    (dict(dropout=1.5), "--dropout"),
])
def test_invalid_combinations_rejected_with_flag_names(kw, flag):
    base = dict(model_mode="RATE", d_model=16, n_head=2, d_head=8, num_mem_tokens=2, n_head_ca=2)
    base.update(kw)
    with pytest.raises(ConfigError, match=flag.replace("-", r"\-")):
        RATE(ModelConfig(**base))


def test_modes_switch_parts_off():
    cfg = dict(context_length=4, sections=3, num_mem_tokens=5, mem_len=30, n_head_ca=2, d_model=16, n_head=2, d_head=8)
    eff = {m: ModelConfig(model_mode=m, **cfg).effective() for m in MODES}
    assert (eff["DT"].context_length, eff["DT"].sections, eff["DT"].num_mem_tokens, eff["DT"].mem_len) == (12, 1, 0, 0)
    assert (eff["DTXL"].context_length, eff["DTXL"].mem_len, eff["DTXL"].num_mem_tokens) == (12, 30, 0)
    assert (eff["RATEM"].mem_len, eff["RATEM"].num_mem_tokens) == (0, 5)
    assert (eff["RATE_wo_nmt"].num_mem_tokens, eff["RATE_wo_nmt"].mem_len, eff["RATE_wo_nmt"].n_head_ca) == (0, 30, 0)
    assert eff["RATE"] == ModelConfig(model_mode="RATE", **cfg)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_checkpointing_gives_identical_gradients(arch):
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = tiny_model("RATE", arch, dropout=0.1).train()
        batch = random_batch(2, 12, valid_len=[12, 9])
        torch.manual_seed(1)
        state, loss = None, 0
        for s in range(0, 12, 4):
            seg = {k: v[:, s:s + 4] for k, v in batch.items()}
            logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state, grad_checkpoint=ckpt)
            loss = loss + logits.square().mean()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@FORMS
def test_bf16_autocast_training_and_decoding_track_fp32(d_head):
    """--amp_bf16 / bench --bf16 paths: the same numbers to bf16 precision, in training and decoding."""
    model = tiny_model("RATE", d_head=d_head)
    batch = random_batch(2, 12)
    base = torch.cat(run_segments(model, batch), 1)
    with torch.autocast("cpu", torch.bfloat16):
        out = torch.cat(run_segments(model, batch), 1)
        dec, inc = Decoder(model, 2), []
        with torch.no_grad():
            for t in range(12):
                inc.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]))
                dec.observe_action(batch["action"][:, t])
    torch.testing.assert_close(out.float(), base, rtol=0, atol=0.1)
    torch.testing.assert_close(torch.stack(inc, 1).float(), base.detach(), rtol=0, atol=0.1)
