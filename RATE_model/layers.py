"""Transformer-XL building blocks: relative-position attention and the TrXL / TrXL-I / GTrXL layers.

Attention goes through ``torch.nn.functional.scaled_dot_product_attention``; the Transformer-XL
position term is handed to it as an additive bias. Every layer returns the keys and values of its
own input tokens so the same code serves full-segment training and incremental (KV-cached) decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]  # keys, values of past tokens, head-major: [B, H, S, d_head] each


class DecodeBuffer:
    """One layer's state during incremental decoding: its attention inputs so far and absorbed weights.

    With H·d_head > d (every paper configuration: d_head = d), keys and values are linear images of
    the d-wide attention input y, so decoding keeps y itself and folds the projections into the query
    and output sides (``RelMultiHeadAttention.absorbed``): (W_q x + u)·(W_k y) = (W_kᵀ(W_q x + u))·y
    and Σ_j p_j W_o W_v y_j = W_o W_v Σ_j p_j y_j. Each slot j holds [y_j, K'_j] (K'_j the key's
    position features, filled once), so content and position scores are one batched GEMM, and a step
    reads 2·d numbers per cached token and layer instead of 2·H·d_head (10× less for T-Maze).
    ``append`` writes only the new tokens.
    """

    def __init__(self, y: Tensor, key_feat: Tensor, weights: tuple[Tensor, Tensor, Tensor]):
        B, n, d = y.shape
        self.y = y.new_empty(B, key_feat.shape[0], 2 * d)
        self.y[:, :n, :d] = y
        self.y[:, :, d:] = key_feat.to(y.dtype)
        self.n, self.d, self.weights = n, d, weights

    def append(self, y_new: Tensor) -> Tensor:
        """Store the new tokens' inputs [B, q, d]; return every slot so far, [B, k, 2d]."""
        q = y_new.shape[1]
        if self.n + q > self.y.shape[1]:
            raise RuntimeError(f"decode buffer of {self.y.shape[1]} tokens overflows ({self.n} + {q})")
        self.y[:, self.n:self.n + q, :self.d] = y_new
        self.n += q
        return self.y[:, :self.n]


def sincos(pos: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """sin(p·ω), cos(p·ω) for positions ``pos`` [n] and ω_i = 10000^(-2i/d): two [n, d/2] tensors."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0, device=pos.device) / d))
    angles = pos.float()[:, None] * inv_freq[None, :]
    return angles.sin(), angles.cos()


def sinusoid_table(n: int, d: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal embeddings of the distances 0..n-1: sines then cosines, [n, d]."""
    s, c = sincos(torch.arange(n, device=device), d)
    return torch.cat([s, c], dim=-1)


class RelMultiHeadAttention(nn.Module):
    """Transformer-XL relative attention: scores = ((q_i+u)·k_j + (q_i+v)·r_{i-j}) / sqrt(d_head), r = W_r pos(i-j).

    The position term is computed exactly in factorised form. With pos(Δ) = [sin Δω, cos Δω] and
    Δ = i - j, the angle-difference identities give (q_i+v)·W_r pos(i-j) = Q'_i · K'_j where
    K'_j = [cos jω, sin jω] depends only on the key position and Q'_i = [a sin iω + b cos iω,
    b sin iω - a cos iω] with [a, b] = W_rᵀ(q_i+v). So the whole score is one dot product of
    [q+u, Q'] with [k, K']: no [q, k, H, d_head] table of r_{i-j}, no relative shift or gather, and the
    position term of all heads and batch rows is a single GEMM against the shared K'.
    """

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float):
        super().__init__()
        self.n_head, self.d_head, self.d_model, self.dropatt = n_head, d_head, d_model, dropatt
        self.qkv = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of ``x`` [B, S, d], each head-major [B, H, S, d_head] (views)."""
        B, S, _ = x.shape
        return self.qkv(x).view(B, S, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: Tensor, past: KV | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor, key_feat: Tensor,
                allowed: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, KV]:
        """Attend from the tokens ``x`` [B, q, d] to ``past`` + ``x``.

        q_sin, q_cos: [q, d/2] at the query positions; key_feat: [k, d] = [cos jω, sin jω] at every key
        position; allowed: [B, q, k] bool (True = may attend). Returns the output [B, q, d] and the
        new tokens' keys and values.
        """
        B, Q, _ = x.shape
        H, dh = self.n_head, self.d_head
        if isinstance(past, DecodeBuffer):
            return self._decode(x, past, q_sin, q_cos, allowed), None
        q, k_new, v_new = self.project(x)
        if past is None:
            k, val = k_new, v_new
        else:
            k, val = torch.cat([past[0], k_new], 2), torch.cat([past[1], v_new], 2)
        # [a, b] = W_rᵀ(q + v) per head, the coefficients of sin Δω and cos Δω. Since q = W_q x, this is
        # x·(W_qᵀW_r) + vᵀW_r: one d -> H·d GEMM on the layer input, and autograd keeps only x, not a
        # second [B, q, H, d_head] tensor.
        d = self.d_model
        w_r = self.r_net.weight.view(H, dh, d)
        w_q = self.qkv.weight[: H * dh].view(H, dh, d)
        m = torch.einsum("hed,hef->dhf", w_q, w_r).reshape(d, H * d)
        bias = torch.einsum("he,hef->hf", v, w_r).reshape(H * d)
        ab = torch.addmm(bias.to(x.dtype), x.reshape(B * Q, d), m.to(x.dtype)).view(B, Q, H, d).transpose(1, 2)
        a, b = ab.chunk(2, dim=-1)
        s, c = q_sin.to(q.dtype), q_cos.to(q.dtype)
        q_pos = torch.cat([a * s + b * c, b * s - a * c], -1)  # [B, H, q, d]
        q_content = q + u[:, None]
        key_feat = key_feat.to(q.dtype)
        if x.is_cuda:  # fused kernel; the boolean mask keeps it off the slow math path
            kk = torch.cat([k, key_feat.expand(B, H, -1, -1)], -1)
            att = F.scaled_dot_product_attention(
                torch.cat([q_content, q_pos], -1), kk, val, attn_mask=allowed[:, None],
                dropout_p=self.dropatt if self.training else 0.0, scale=dh ** -0.5)
        else:  # on CPU the explicit form is faster at these sizes (benchmarks/RESULTS.md)
            scores = torch.baddbmm((q_pos @ key_feat.T).flatten(0, 1), q_content.flatten(0, 1),
                                   k.flatten(0, 1).transpose(1, 2)).view(B, H, Q, -1)
            probs = (scores * dh ** -0.5).masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
            att = F.dropout(probs, self.dropatt, self.training) @ val  # [B, H, q, dh]
        out = self.drop(self.out(att.transpose(1, 2).reshape(B, Q, H * dh)))
        return out, (k_new, v_new)

    def absorbed(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Weights of the decoding form (see :class:`DecodeBuffer`), per head h and scaled by d_head^-½:
        w_in [d, H·2d] and b_in [H·2d] map x to [W_k,hᵀ(W_q,h x + u_h), W_r,hᵀ(W_q,h x + v_h)] (the
        content query against y and the coefficients [a, b] of the position term);
        w_ov [H·d, d] stacks the (W_o,h W_v,h)ᵀ."""
        H, dh, d = self.n_head, self.d_head, self.d_model
        w_q, w_k, w_v = self.qkv.weight.view(3, H, dh, d).unbind(0)
        w_r = self.r_net.weight.view(H, dh, d)
        scale = dh ** -0.5
        w_in = torch.stack([torch.einsum("hed,hef->dhf", w_q, w) for w in (w_k, w_r)], 2).reshape(d, H * 2 * d)
        b_in = torch.stack([torch.einsum("he,hef->hf", b, w) for b, w in ((u, w_k), (v, w_r))], 1).reshape(-1)
        w_ov = torch.einsum("ohe,hed->hdo", self.out.weight.view(d, H, dh), w_v).reshape(H * d, d)
        return w_in * scale, b_in * scale, w_ov

    def _decode(self, x: Tensor, buf: DecodeBuffer, q_sin: Tensor, q_cos: Tensor, mask: Tensor) -> Tensor:
        """The same attention as :meth:`forward` in the absorbed form; ``mask`` is the additive
        [B, q·H, k] bias of the blocked pairs, rows ordered (query, head), shared by all layers of a step."""
        B, Q, d = x.shape
        H = self.n_head
        y = buf.append(x)  # [B, k, 2d]: inputs and key position features
        w_in, b_in, w_ov = (w.to(x.dtype) for w in buf.weights)
        proj = torch.addmm(b_in, x.reshape(B * Q, d), w_in).view(B, Q, H, 2 * d)  # rows ordered (query, head)
        a, b = proj[..., d:].chunk(2, dim=-1)
        s, c = q_sin[:, None].to(x.dtype), q_cos[:, None].to(x.dtype)
        query = torch.cat([proj[..., :d], a * s + b * c, b * s - a * c], -1)  # [B, q, H, 2d]
        scores = torch.baddbmm(mask, query.view(B, Q * H, 2 * d), y.transpose(1, 2))
        probs = F.dropout(scores.softmax(-1), self.dropatt, self.training)
        pooled = torch.bmm(probs, y[..., :d])  # [B, q·H, d]
        return self.drop((pooled.reshape(B * Q, H * d) @ w_ov).view(B, Q, d))


class GRUGate(nn.Module):
    """GTrXL gate G(x, y) = (1-z)⊙x + z⊙h; the bias b_g = 2 starts it close to the identity."""

    def __init__(self, d: int, bias_init: float = 2.0):
        super().__init__()
        self.w = nn.Linear(d, 3 * d, bias=False)
        self.u_rz = nn.Linear(d, 2 * d, bias=False)
        self.u_g = nn.Linear(d, d, bias=False)
        self.b_g = nn.Parameter(torch.full((d,), bias_init))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u_rz(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.b_g)
        h = torch.tanh(wg + self.u_g(r * x))
        return (1 - z) * x + z * h


class FeedForward(nn.Sequential):
    """Position-wise FFN: Linear, ReLU, Dropout, Linear, Dropout."""

    def __init__(self, d: int, d_inner: int, dropout: float):
        super().__init__(
            nn.Linear(d, d_inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_inner, d), nn.Dropout(dropout)
        )


class DecoderLayer(nn.Module):
    """One decoder layer in one of the three ``arch_mode`` variants.

    TrXL:   y = LN(x + Attn(x)),  out = LN(y + FFN(y))        (post-norm; the reference adds x twice)
    TrXL-I: y = x + ReLU(Attn(LN(x))),  out = y + ReLU(FFN(LN(y)))
    GTrXL:  TrXL-I with both residual sums replaced by GRU gates.
    ``skip_ffn`` removes the FFN sub-block in every variant.
    """

    def __init__(self, arch_mode: str, d_model: int, n_head: int, d_head: int, d_inner: int,
                 dropout: float, dropatt: float, skip_ffn: bool):
        super().__init__()
        self.arch_mode = arch_mode
        self.attn = RelMultiHeadAttention(d_model, n_head, d_head, dropout, dropatt)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = None if skip_ffn else FeedForward(d_model, d_inner, dropout)
        self.norm2 = None if skip_ffn else nn.LayerNorm(d_model)
        if arch_mode == "GTrXL":
            self.gate1 = GRUGate(d_model)
            self.gate2 = None if skip_ffn else GRUGate(d_model)

    @property
    def pre_norm(self) -> bool:
        return self.arch_mode != "TrXL"

    def attn_input(self, h: Tensor) -> Tensor:
        """What the attention sub-block sees of layer inputs ``h`` [B, S, d]."""
        return self.norm1(h) if self.pre_norm else h

    def kv(self, h: Tensor) -> KV:
        """Keys and values of cached layer inputs ``h`` [B, S, d] (Transformer-XL ``mems``)."""
        _, k, v = self.attn.project(self.attn_input(h))
        return k, v

    def decode_buffer(self, h: Tensor, key_feat: Tensor, u: Tensor, v: Tensor) -> DecodeBuffer:
        """A decoding buffer holding cached layer inputs ``h`` [B, c, d] (c may be 0), with room for
        as many tokens as ``key_feat`` [capacity, d] has positions."""
        return DecodeBuffer(self.attn_input(h), key_feat, self.attn.absorbed(u, v))

    def forward(self, x: Tensor, past: KV | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor, key_feat: Tensor,
                allowed: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, KV]:
        pos = (q_sin, q_cos, key_feat, allowed, u, v)
        if not self.pre_norm:
            a, kv = self.attn(x, past, *pos)
            y = self.norm1(x + a)
            if self.ffn is not None:
                y = self.norm2(y + self.ffn(y))
            return y, kv
        a, kv = self.attn(self.norm1(x), past, *pos)
        a = F.relu(a)
        y = self.gate1(x, a) if self.arch_mode == "GTrXL" else x + a
        if self.ffn is not None:
            f = F.relu(self.ffn(self.norm2(y)))
            y = self.gate2(y, f) if self.arch_mode == "GTrXL" else y + f
        return y, kv
