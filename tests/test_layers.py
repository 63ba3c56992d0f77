"""The fast attention path against the plain Transformer-XL computation."""

from __future__ import annotations

import math

import pytest
import torch

from RATE_model.layers import RelMultiHeadAttention, attention_bias, sincos


def reference_attention(attn: RelMultiHeadAttention, x, past_h, allowed, u, v):
    """Transformer-XL attention written out: explicit r_{i-j} for every pair, masked softmax."""
    B, Q, d = x.shape
    H, dh = attn.n_head, attn.d_head
    h_all = x if past_h is None else torch.cat([past_h, x], 1)
    Kn = h_all.shape[1]
    q = attn.qkv(x).view(B, Q, 3, H, dh)[:, :, 0]
    _, k, val = attn.qkv(h_all).view(B, Kn, 3, H, dh).unbind(2)
    q_pos = torch.arange(Kn - Q, Kn)
    dist = q_pos[:, None] - torch.arange(Kn)[None, :]  # signed distance i - j
    s, c = sincos(dist.flatten(), d)
    r = attn.r_net(torch.cat([s, c], -1).double()).view(Q, Kn, H, dh)
    ac = torch.einsum("bqhe,bkhe->bhqk", q + u, k)
    bd = torch.einsum("bqhe,qkhe->bhqk", q + v, r)
    scores = ((ac + bd) / math.sqrt(dh)).masked_fill(~allowed[:, None], float("-inf"))
    out = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), val).reshape(B, Q, H * dh)
    return attn.out(out)


def _inputs(with_past: bool, absorbed: bool = False):
    torch.manual_seed(1)
    d, H, dh, B, Q, P = 16, 3, 16 if absorbed else 5, 2, 7, 4
    attn = RelMultiHeadAttention(d, H, dh, dropout=0.0, dropatt=0.0).double()
    assert attn.absorbed == absorbed
    u, v = torch.randn(H, dh, dtype=torch.double), torch.randn(H, dh, dtype=torch.double)
    x = torch.randn(B, Q, d, dtype=torch.double)
    past_h = torch.randn(B, P, d, dtype=torch.double) if with_past else None
    n_past = P if with_past else 0
    allowed = torch.rand(B, Q, n_past + Q) > 0.3
    allowed[:, torch.arange(Q), n_past + torch.arange(Q)] = True  # every query may attend to itself
    s, c = sincos(torch.arange(n_past + Q), d)
    pos = (s[n_past:].double(), c[n_past:].double(), torch.cat([c, s], -1).double(), allowed, u, v)
    return attn, x, past_h, pos


def _call(attn, x, past_h, pos):
    q_sin, q_cos, key_feat, allowed, u, v = pos
    mask = attention_bias(~allowed, attn.n_head, x.dtype, attn.absorbed, attn.use_fused(x))
    return attn(x, past_h, q_sin, q_cos, key_feat, mask, u, v)


FORMS = pytest.mark.parametrize("absorbed", [False, True], ids=["standard", "absorbed"])


@FORMS
@pytest.mark.parametrize("with_past", [False, True])
def test_factorised_attention_equals_explicit_relative_attention(with_past, absorbed):
    attn, x, past_h, pos = _inputs(with_past, absorbed)
    fast = _call(attn, x, past_h, pos)
    ref = reference_attention(attn, x, past_h, pos[3], pos[4], pos[5])
    # the sin/cos tables are float32 in both paths, so agreement is to float32 rounding of the tables
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)


@FORMS
def test_factorised_attention_gradients_equal_explicit_gradients(absorbed):
    """Keys and values are never formed, so W_q, W_k, W_v, W_r, W_o, u and v get their gradients through
    the absorbed products; they must equal those of the plain computation."""
    attn, x, past_h, pos = _inputs(True, absorbed)
    u, v = (t.requires_grad_() for t in pos[4:])
    wrt = [x.requires_grad_(), past_h.requires_grad_(), u, v, *attn.parameters()]
    g_fast = torch.autograd.grad(_call(attn, x, past_h, pos).square().sum(), wrt)
    g_ref = torch.autograd.grad(reference_attention(attn, x, past_h, pos[3], u, v).square().sum(), wrt)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@FORMS
@pytest.mark.parametrize("with_past", [False, True])
def test_fused_sdpa_path_equals_explicit_path(with_past, absorbed):
    """The CUDA branch (scaled_dot_product_attention on [W_kᵀ(q+u), Q'] · [y, K']) run on CPU tensors."""
    attn, x, past_h, pos = _inputs(with_past, absorbed)
    explicit = _call(attn, x, past_h, pos)
    attn.fused = True
    fused = _call(attn, x, past_h, pos)
    torch.testing.assert_close(fused, explicit, rtol=1e-9, atol=1e-9)


def test_sincos_gives_sines_and_cosines_of_the_distances():
    s, c = sincos(torch.arange(5), 8)
    assert s.shape == c.shape == (5, 4)
    assert torch.allclose(s[3, 0], torch.tensor(math.sin(3.0))) and torch.allclose(c[3, 0], torch.tensor(math.cos(3.0)))
    assert torch.allclose(s[2, 1], torch.tensor(math.sin(2 * 10000 ** (-2 / 8))))
