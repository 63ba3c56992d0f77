"""Transformer-XL building blocks: relative-position attention and the TrXL / TrXL-I / GTrXL layers.

Attention goes through ``torch.nn.functional.scaled_dot_product_attention``; the Transformer-XL
position term is handed to it as an additive bias. Every layer returns the keys and values of its
own input tokens so the same code serves full-segment training and incremental (KV-cached) decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]  # keys (content + position features) [B, S, H, d_head + d_model], values [B, S, H, d_head]


def sinusoid_table(n: int, d: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal embeddings of the distances 0..n-1: sines then cosines, [n, d]."""
    s, c = sincos(torch.arange(n, device=device), d)
    return torch.cat([s, c], dim=-1)


def sincos(pos: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """sin(p·ω), cos(p·ω) for positions ``pos`` [n] and ω_i = 10000^(-2i/d): two [n, d/2] tensors."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0, device=pos.device) / d))
    angles = pos.float()[:, None] * inv_freq[None, :]
    return angles.sin(), angles.cos()


class RelMultiHeadAttention(nn.Module):
    """Transformer-XL relative attention: scores = ((q+u)·k_j + (q+v)·r_{i-j}) / sqrt(d_head), r = W_r pos(i-j).

    The position term is computed exactly in factorised form: with pos(Δ) = [sin Δω, cos Δω] and
    Δ = i - j, the angle-difference identities give (q_i+v)·W_r pos(i-j) = Q'_i · K'_j with
    K'_j = [cos jω, sin jω] and Q'_i built from sin iω, cos iω and W_rᵀ(q_i+v). Appending Q' to the
    query and K' to the key turns the whole score into one dot product, so attention runs in the
    fused ``scaled_dot_product_attention`` kernel with a boolean mask: no [B, H, q, k] position
    tensor, no gather, and nothing quadratic kept for the backward pass.
    """

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float):
        super().__init__()
        self.n_head, self.d_head, self.d_model, self.dropatt = n_head, d_head, d_model, dropatt
        self.qkv = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of ``x`` [B, S, d], each [B, S, H, d_head]."""
        B, S, _ = x.shape
        return self.qkv(x).view(B, S, 3, self.n_head, self.d_head).unbind(2)

    def position_keys(self, k: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        """Append K'_j = [cos jω, sin jω] to content keys k [B, S, H, d_head] -> [B, S, H, d_head + d]."""
        B, S, H, _ = k.shape
        feat = torch.cat([cos, sin], -1).to(k.dtype)
        return torch.cat([k, feat[None, :, None, :].expand(B, S, H, -1)], -1)

    def forward(self, x: Tensor, past: KV | None, sin: Tensor, cos: Tensor, allowed: Tensor,
                u: Tensor, v: Tensor) -> tuple[Tensor, KV]:
        """Attend from the tokens ``x`` [B, q, d] to ``past`` + ``x``.

        sin, cos: [q, d/2] at the new tokens' positions; allowed: [B, q, k] bool (True = may attend).
        Returns the output [B, q, d] and the new tokens' keys and values.
        """
        B, Q, _ = x.shape
        H, dh = self.n_head, self.d_head
        q, k, val = self.project(x)
        k_new = self.position_keys(k, sin, cos)
        if past is not None:
            k_new_all, val_all = torch.cat([past[0], k_new], 1), torch.cat([past[1], val], 1)
        else:
            k_new_all, val_all = k_new, val
        # W_rᵀ(q+v) split into the coefficients of sin Δω (a) and cos Δω (b)
        w = self.r_net.weight.view(H, dh, self.d_model)
        ab = torch.einsum("bqhe,hed->bqhd", q + v, w.to(q.dtype))
        a, b = ab.chunk(2, dim=-1)
        s, c = sin.to(q.dtype)[None, :, None, :], cos.to(q.dtype)[None, :, None, :]
        q_full = torch.cat([q + u, a * s + b * c, b * s - a * c], -1)  # [B, q, H, d_head + d]
        # the fused CPU/CUDA kernels want equal query and value widths: pad values with zeros
        val_pad = F.pad(val_all, (0, q_full.shape[-1] - dh))
        att = F.scaled_dot_product_attention(
            q_full.transpose(1, 2), k_new_all.transpose(1, 2), val_pad.transpose(1, 2),
            attn_mask=allowed[:, None], dropout_p=self.dropatt if self.training else 0.0, scale=dh ** -0.5,
        )[..., :dh]  # [B, H, q, dh]
        out = self.drop(self.out(att.transpose(1, 2).reshape(B, Q, H * dh)))
        return out, (k_new, val)


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

    def kv(self, h: Tensor, sin: Tensor, cos: Tensor) -> KV:
        """Keys and values of cached layer inputs ``h`` [B, S, d] (Transformer-XL ``mems``) at the
        positions whose sin/cos are given."""
        _, k, v = self.attn.project(self.norm1(h) if self.pre_norm else h)
        return self.attn.position_keys(k, sin, cos), v

    def forward(self, x: Tensor, past: KV | None, sin: Tensor, cos: Tensor, allowed: Tensor,
                u: Tensor, v: Tensor) -> tuple[Tensor, KV]:
        if not self.pre_norm:
            a, kv = self.attn(x, past, sin, cos, allowed, u, v)
            y = self.norm1(x + a)
            if self.ffn is not None:
                y = self.norm2(y + self.ffn(y))
            return y, kv
        a, kv = self.attn(self.norm1(x), past, sin, cos, allowed, u, v)
        a = F.relu(a)
        y = self.gate1(x, a) if self.arch_mode == "GTrXL" else x + a
        if self.ffn is not None:
            f = F.relu(self.ffn(self.norm2(y)))
            y = self.gate2(y, f) if self.arch_mode == "GTrXL" else y + f
        return y, kv
