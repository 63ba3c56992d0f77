"""Transformer-XL building blocks: relative-position attention and the TrXL / TrXL-I / GTrXL layers.

Attention goes through ``torch.nn.functional.scaled_dot_product_attention``; the Transformer-XL
position term is handed to it as an additive bias. Every layer returns the keys and values of its
own input tokens so the same code serves full-segment training and incremental (KV-cached) decoding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]  # keys, values: [B, S, H, d_head] each


def sinusoid_table(n: int, d: int, device: torch.device | None = None) -> Tensor:
    """Sinusoidal embeddings of the distances 0..n-1: sines then cosines, [n, d]."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0, device=device) / d))
    angles = torch.arange(n, dtype=torch.float32, device=device)[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RelMultiHeadAttention(nn.Module):
    """Transformer-XL relative attention: scores = ((q+u)·k + (q+v)·r_{i-j}) / sqrt(d_head)."""

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float):
        super().__init__()
        self.n_head, self.d_head, self.dropatt = n_head, d_head, dropatt
        self.qkv = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of ``x`` [B, S, d], each [B, S, H, d_head]."""
        B, S, _ = x.shape
        return self.qkv(x).view(B, S, 3, self.n_head, self.d_head).unbind(2)

    def forward(
        self,
        x: Tensor,
        past: KV | None,
        pos_emb: Tensor,
        rel_idx: Tensor,
        blocked: Tensor,
        u: Tensor,
        v: Tensor,
    ) -> tuple[Tensor, KV]:
        """Attend from the tokens ``x`` [B, q, d] to ``past`` + ``x``.

        pos_emb: [D, d] embeddings of distances 0..D-1; rel_idx: [q, k] long, the distance of each
        (query, key) pair; blocked: [B, q, k] bool, True where attention is forbidden.
        Returns the output [B, q, d] and the new tokens' (k, v).
        """
        B, Q, _ = x.shape
        q, k_new, v_new = self.project(x)
        k, val = (k_new, v_new) if past is None else (torch.cat([past[0], k_new], 1), torch.cat([past[1], v_new], 1))
        r = self.r_net(pos_emb).view(-1, self.n_head, self.d_head)  # [D, H, dh]
        # Position term (q+v)·r for every distance, then picked per (query, key) pair.
        pos_scores = torch.einsum("bqhd,khd->bhqk", q + v, r)  # [B, H, q, D]
        pos_scores = pos_scores.gather(-1, rel_idx.expand(B, self.n_head, Q, -1))
        bias = (pos_scores / math.sqrt(self.d_head)).masked_fill(blocked[:, None], float("-inf"))
        att = F.scaled_dot_product_attention(
            (q + u).transpose(1, 2),
            k.transpose(1, 2),
            val.transpose(1, 2),
            attn_mask=bias,
            dropout_p=self.dropatt if self.training else 0.0,
        )  # [B, H, q, dh]
        out = self.drop(self.out(att.transpose(1, 2).reshape(B, Q, -1)))
        return out, (k_new, v_new)


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

    def kv(self, h: Tensor) -> KV:
        """Keys and values of cached layer inputs ``h`` [B, S, d] (Transformer-XL ``mems``)."""
        _, k, v = self.attn.project(self.norm1(h) if self.pre_norm else h)
        return k, v

    def forward(self, x: Tensor, past: KV | None, pos_emb: Tensor, rel_idx: Tensor, blocked: Tensor,
                u: Tensor, v: Tensor) -> tuple[Tensor, KV]:
        if not self.pre_norm:
            a, kv = self.attn(x, past, pos_emb, rel_idx, blocked, u, v)
            y = self.norm1(x + a)
            if self.ffn is not None:
                y = self.norm2(y + self.ffn(y))
            return y, kv
        a, kv = self.attn(self.norm1(x), past, pos_emb, rel_idx, blocked, u, v)
        a = F.relu(a)
        y = self.gate1(x, a) if self.arch_mode == "GTrXL" else x + a
        if self.ffn is not None:
            f = F.relu(self.ffn(self.norm2(y)))
            y = self.gate2(y, f) if self.arch_mode == "GTrXL" else y + f
        return y, kv
