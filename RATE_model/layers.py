"""Transformer-XL building blocks: relative-position attention and the TrXL / TrXL-I / GTrXL layers.

The attention (:class:`RelMultiHeadAttention`) is exact Transformer-XL attention in a factorised form
with no key/value projections: scores are one batched GEMM of 2d-wide queries against the layer's
attention inputs joined with their position features; on CUDA that GEMM is
``torch.nn.functional.scaled_dot_product_attention``. The same layers serve whole segments (training)
and incremental decoding over a :class:`DecodeBuffer` of cached inputs (evaluation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

class DecodeBuffer:
    """One layer's state during incremental decoding: [y_j, K'_j] (attention input, key position
    features) for every token so far, preallocated [B, capacity, 2d], and the layer's
    :meth:`RelMultiHeadAttention.absorbed` weights, formed once per segment. A step reads 2d numbers
    per cached token (T-Maze: 128, where cached keys and values would be 2·H·d_head = 1280);
    ``append`` writes only the new tokens and the position half is filled once.
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


def attention_bias(blocked: Tensor, n_head: int, dtype: torch.dtype) -> Tensor:
    """The mask of :class:`RelMultiHeadAttention` from blocked (True) pairs [B, q, k]: on CUDA the
    allowed pairs [B, 1, q, k] (bool, for the fused kernel); on CPU an additive bias (0 / -inf)
    [B, q·H, k] with rows ordered (query, head). Built once and shared by every layer."""
    if blocked.is_cuda:
        return ~blocked[:, None]
    B, Q, K = blocked.shape
    bias = torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill_(blocked, float("-inf"))
    return bias[:, :, None].expand(B, Q, n_head, K).reshape(B, Q * n_head, K)


class RelMultiHeadAttention(nn.Module):
    """Transformer-XL relative attention: scores = ((q_i+u)·k_j + (q_i+v)·r_{i-j}) / sqrt(d_head), r = W_r pos(i-j),
    computed exactly in a factorised form in which keys and values are never formed.

    Position term: with pos(Δ) = [sin Δω, cos Δω] and Δ = i - j, the angle-difference identities give
    (q_i+v)·W_r pos(i-j) = Q'_i · K'_j, where K'_j = [cos jω, sin jω] depends only on the key position
    and Q'_i = [a sin iω + b cos iω, b sin iω - a cos iω] with [a, b] = W_rᵀ(q_i+v): no table of
    r_{i-j}, no relative shift.
    Content term and values, per head, with y_j the d-wide attention input of key j:
    (W_q x_i + u)·(W_k y_j) = (W_kᵀ(W_q x_i + u))·y_j and Σ_j p_ij W_o W_v y_j = (W_o W_v) Σ_j p_ij y_j.
    So each head scores one 2d-wide query [W_kᵀ(q+u), Q'] against [y_j, K'_j] and pools the raw y_j;
    the d×d products W_qᵀW_k, W_qᵀW_r and W_o W_v are formed once per call (:meth:`absorbed`).
    For H·d_head ≥ d (every paper configuration; T-Maze 10·64 vs 64) this costs fewer FLOPs than
    projecting keys and values, saves fewer activations for backward, and makes the decoding cache
    d wide instead of 2·H·d_head. (With H·d_head < d the score and pooling products cost up to
    d/d_head times more than a key/value form would.)
    """

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float):
        super().__init__()
        self.n_head, self.d_head, self.d_model, self.dropatt = n_head, d_head, d_model, dropatt
        self.qkv = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def absorbed(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per head h, scaled by d_head^-½: w_in [d, H·2d] and b_in [H·2d] map x to
        [W_k,hᵀ(W_q,h x + u_h), W_r,hᵀ(W_q,h x + v_h)] (the content query against y and the
        coefficients [a, b] of the position term); w_ov [H·d, d] stacks the (W_o,h W_v,h)ᵀ."""
        H, dh, d = self.n_head, self.d_head, self.d_model
        w_q, w_k, w_v = self.qkv.weight.view(3, H, dh, d).unbind(0)
        w_r = self.r_net.weight.view(H, dh, d)
        scale = dh ** -0.5
        w_in = torch.stack([torch.einsum("hed,hef->dhf", w_q, w) for w in (w_k, w_r)], 2).reshape(d, H * 2 * d)
        b_in = torch.stack([torch.einsum("he,hef->hf", b, w) for b, w in ((u, w_k), (v, w_r))], 1).reshape(-1)
        w_ov = torch.einsum("ohe,hed->hdo", self.out.weight.view(d, H, dh), w_v).reshape(H * d, d)
        return w_in * scale, b_in * scale, w_ov

    def forward(self, x: Tensor, past: Tensor | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor,
                key_feat: Tensor, mask: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Attend from the tokens ``x`` [B, q, d] (attention inputs) to ``past`` + ``x``; returns [B, q, d].

        past: None, the cached attention inputs [B, c, d], or a :class:`DecodeBuffer` (x is appended
        to it and its precomputed weights are used). q_sin, q_cos: [q, d/2] at the query positions;
        key_feat: [k, d] = [cos jω, sin jω] at every key position; mask: from :func:`attention_bias`.
        """
        B, Q, d = x.shape
        H = self.n_head
        if isinstance(past, DecodeBuffer):
            keys, weights = past.append(x), past.weights  # [B, k, 2d] = [y_j, K'_j]
            values = keys[..., :d]
        else:
            values = x if past is None else torch.cat([past, x], 1)
            keys, weights = torch.cat([values, key_feat.to(x.dtype).expand(B, -1, -1)], -1), self.absorbed(u, v)
        w_in, b_in, w_ov = (w.to(x.dtype) for w in weights)
        proj = torch.addmm(b_in, x.reshape(B * Q, d), w_in).view(B, Q, H, 2 * d)
        content, a, b = proj.split([d, d // 2, d // 2], -1)  # split, not slices: no zero-filled grads
        s, c = q_sin[:, None].to(x.dtype), q_cos[:, None].to(x.dtype)
        query = torch.cat([content, a * s + b * c, b * s - a * c], -1)  # [B, q, H, 2d]
        dropatt = self.dropatt if self.training else 0.0
        if x.is_cuda:  # fused kernel over [B, H, q, 2d] queries and head-broadcast keys/values
            pooled = F.scaled_dot_product_attention(
                query.transpose(1, 2), keys[:, None].expand(-1, H, -1, -1), values[:, None].expand(-1, H, -1, -1),
                attn_mask=mask, dropout_p=dropatt, scale=1.0).transpose(1, 2)
        else:  # rows (query, head): one batched GEMM per batch row for scores, one for pooling
            scores = torch.baddbmm(mask, query.view(B, Q * H, 2 * d), keys.transpose(1, 2))
            pooled = torch.bmm(F.dropout(scores.softmax(-1), dropatt, self.training), values)
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
        """What the attention sub-block sees of layer inputs ``h`` [B, S, d] (the cache it needs)."""
        return self.norm1(h) if self.pre_norm else h

    def decode_buffer(self, h: Tensor, key_feat: Tensor, u: Tensor, v: Tensor) -> DecodeBuffer:
        """A decoding buffer holding cached layer inputs ``h`` [B, c, d] (c may be 0), with room for
        as many tokens as ``key_feat`` [capacity, d] has positions."""
        return DecodeBuffer(self.attn_input(h), key_feat, self.attn.absorbed(u, v))

    def forward(self, x: Tensor, past: Tensor | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor,
                key_feat: Tensor, mask: Tensor, u: Tensor, v: Tensor) -> Tensor:
        pos = (q_sin, q_cos, key_feat, mask, u, v)
        if not self.pre_norm:
            y = self.norm1(x + self.attn(x, past, *pos))
            if self.ffn is not None:
                y = self.norm2(y + self.ffn(y))
            return y
        a = F.relu(self.attn(self.norm1(x), past, *pos))
        y = self.gate1(x, a) if self.arch_mode == "GTrXL" else x + a
        if self.ffn is not None:
            f = F.relu(self.ffn(self.norm2(y)))
            y = self.gate2(y, f) if self.arch_mode == "GTrXL" else y + f
        return y
