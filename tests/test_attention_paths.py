"""The attention's two implementations (fused scaled_dot_product_attention, explicit batched GEMMs) and its
dtype discipline, through the whole model: every mode × arch × attention form, padding, cache and memory
tokens, whole segments and incremental decoding, fp32 and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from RATE_model.layers import RelMultiHeadAttention, extended_queries
from RATE_model.rollout import Decoder
from tests.helpers import ARCHS, MODES, random_batch, tiny_model

ALL = [(m, a) for m in MODES for a in ARCHS]
FORMS = pytest.mark.parametrize("d_head", [8, 16], ids=["standard", "absorbed"])
PRECISIONS = pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])


def set_fused(model, fused: bool) -> None:
    for m in model.modules():
        if isinstance(m, RelMultiHeadAttention):
            m.fused = fused


def logits_and_grads(model, batch, bf16: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every segment's logits (memory and cache flowing) and the gradients of their squared sum."""
    model.zero_grad()
    K, state, out = model.cfg.context_length, None, []
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        for s in range(0, batch["obs"].shape[1], K):
            seg = {k: v[:, s:s + K] for k, v in batch.items()}
            logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state)
            out.append(logits.float())
    logits = torch.cat(out, 1)
    logits[batch["valid"]].square().sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@PRECISIONS
@FORMS
@pytest.mark.parametrize("mode,arch", ALL)
def test_fused_attention_equals_explicit_attention(mode, arch, d_head, bf16):
    """Outputs and gradients, with padded steps in a 3-segment batch (cache and memory tokens where the mode
    has them)."""
    torch.manual_seed(0)
    model = tiny_model(mode, arch, d_head=d_head, dropout=0.0)
    batch = random_batch(3, 12, valid_len=[12, 7, 2])
    set_fused(model, False)
    ref, ref_grads = logits_and_grads(model, batch, bf16)
    set_fused(model, True)
    out, grads = logits_and_grads(model, batch, bf16)
    valid = batch["valid"]
    if not bf16:
        torch.testing.assert_close(out[valid], ref[valid], rtol=1e-5, atol=1e-5)
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        return
    # bf16: the two kernels round differently (8 mantissa bits); they must agree to that precision
    torch.testing.assert_close(out[valid], ref[valid], rtol=0, atol=0.1)
    assert len(grads) == len(ref_grads)
    assert relative_error(torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref_grads])) < 0.05


@PRECISIONS
@FORMS
@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@pytest.mark.parametrize("mode,arch", ALL)
def test_decoding_equals_full_forward(mode, arch, fused, d_head, bf16):
    """Incremental decoding over the preallocated buffers equals whole segments, on both kernels."""
    torch.manual_seed(0)
    model = tiny_model(mode, arch, d_head=d_head)
    set_fused(model, fused)
    K = model.cfg.context_length
    T = K * (3 if K == 4 else 2)
    batch = random_batch(3, T)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        K, state, full = model.cfg.context_length, None, []
        for s in range(0, T, K):
            seg = {k: v[:, s:s + K] for k, v in batch.items()}
            logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state)
            full.append(logits.float())
        dec, inc = Decoder(model, 3), []
        for t in range(T):
            inc.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]).float())
            dec.observe_action(batch["action"][:, t])
    torch.testing.assert_close(torch.stack(inc, 1), torch.cat(full, 1), rtol=0, atol=0.1 if bf16 else 1e-5)


@FORMS
def test_attention_computes_in_the_autocast_dtype(d_head):
    """Under bf16 autocast the attention's tensors are bf16 from its input cast on (no op-by-op casts of
    activations), the decoding buffers too; without autocast everything stays fp32."""
    model = tiny_model("RATE", d_head=d_head)
    attn = model.layers[0].attn
    seen = []
    attn.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    batch = random_batch(2, 4)
    args = (batch["rtg"], batch["obs"], batch["action"], batch["valid"])
    with torch.no_grad():
        model(*args)
        with torch.autocast("cpu", torch.bfloat16):
            model(*args)
            dec = model.start(2)
    assert seen[0] == torch.float32 and set(seen[1:]) == {torch.bfloat16}  # start() runs the read slots
    buf = dec.buffers[0]
    assert buf.keys.dtype == buf.values.dtype == torch.bfloat16
    assert all(w is None or w.dtype == torch.bfloat16 for w in buf.weights)


def test_rotated_queries_and_their_gradient():
    """extended_queries' in-place rotation and hand-written backward against the plain formula and gradcheck."""
    torch.manual_seed(0)
    B, Q, H, e, d = 2, 3, 2, 4, 6
    proj = torch.randn(B * Q, H * (e + d), dtype=torch.double, requires_grad=True)
    q_sin, q_cos = torch.randn(Q, d // 2, dtype=torch.double), torch.randn(Q, d // 2, dtype=torch.double)
    out = extended_queries(proj * 1, q_sin, q_cos, H, e).view(B, Q, H, e + d)
    c, a, b = proj.view(B, Q, H, e + d).split([e, d // 2, d // 2], -1)
    s, co = q_sin[:, None], q_cos[:, None]
    torch.testing.assert_close(out, torch.cat([c, a * s + b * co, b * s - a * co], -1))
    assert torch.autograd.gradcheck(lambda p: extended_queries(p * 1, q_sin, q_cos, H, e), (proj,))
    with torch.no_grad():  # inference rotates the projections in place
        p = proj.detach().clone()
        assert extended_queries(p, q_sin, q_cos, H, e).data_ptr() == p.data_ptr()
