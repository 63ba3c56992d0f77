"""Transformer-XL building blocks: relative-position attention and the TrXL / TrXL-I / GTrXL layers.

The attention (:class:`RelMultiHeadAttention`) is exact Transformer-XL attention in a factorised form
with no relative-position table: one extended query [content, rotated position] per head against one
extended key [content, position features], so the scores are a single dot product. On CPU they are batched
GEMMs; on CUDA one ``torch.nn.functional.scaled_dot_product_attention`` call (``fused``). The CPU's fused
kernel was measured and loses at these shapes (benchmarks/RESULTS.md, "Measured and dropped"): its flash
kernel needs equal query and value widths (ours are e + d and e), and one T-Maze paper layer ran 2.9× slower
forward + backward in bf16 (``python -m benchmarks.bench_attention``). Where d_head ≥ d the key and value
projections are folded into the query and output sides. Under autocast everything inside the attention runs
in the autocast dtype from one cast of its input per layer, so no activation is cast op by op. The same
layers serve whole segments (training) and incremental decoding over a :class:`DecodeBuffer` (evaluation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from RATE_model.precision import compute_dtype

Weights = tuple[Tensor, Tensor | None, Tensor]  # w_in, w_kv, w_out (RelMultiHeadAttention.weights)


class DecodeBuffer:
    """One layer's keys and values during incremental decoding, preallocated for a whole segment.

    Absorbed form: keys [B, capacity, 2d] = [y_j, K'_j] (the position half filled once), shared by all
    heads, values a view of their first half. Standard form: keys and values [B, H, capacity, d_head].
    ``append`` writes only the new tokens (whole rows). The layer's weights are formed once per segment and
    kept here, in the compute dtype.
    """

    def __init__(self, keys: Tensor, values: Tensor, weights: Weights):
        self.keys, self.values, self.weights, self.n = keys, values, weights, 0

    def append(self, k_new: Tensor, v_new: Tensor | None) -> tuple[Tensor, Tensor]:
        """Store new content keys [..., q, e] (and values, standard form); return the keys so far, transposed
        ([..., w, n], as the score GEMM reads them), and the values so far ([..., n, e])."""
        q, cap, e = k_new.shape[-2], self.keys.shape[-2], k_new.shape[-1]
        if self.n + q > cap:
            raise RuntimeError(f"decode buffer of {cap} tokens overflows ({self.n} + {q})")
        self.keys[..., self.n:self.n + q, :e] = k_new
        if v_new is not None:
            self.values[..., self.n:self.n + q, :] = v_new
        self.n += q
        return self.keys[..., :self.n, :].transpose(-1, -2), self.values[..., :self.n, :]


def sincos(pos: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """sin(p·ω), cos(p·ω) for positions ``pos`` [n] and ω_i = 10000^(-2i/d): two [n, d/2] tensors."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0, device=pos.device) / d))
    angles = pos.float()[:, None] * inv_freq[None, :]
    return angles.sin(), angles.cos()


def attention_bias(blocked: Tensor, n_head: int, dtype: torch.dtype, absorbed: bool, fused: bool = False) -> Tensor:
    """The mask of :class:`RelMultiHeadAttention` from blocked (True) pairs [B, q, k], built once and
    shared by every layer: for the fused kernel the allowed pairs [B, 1, q, k] (bool); for the explicit
    path an additive bias (0 / -inf) in the attention's compute dtype, [B, q·H, k] with rows (query, head)
    in the absorbed form, else [B·H, q, k]."""
    if fused:
        return ~blocked[:, None]
    B, Q, K = blocked.shape
    bias = torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill_(blocked, float("-inf"))
    if absorbed:
        return bias[:, :, None].expand(B, Q, n_head, K).reshape(B, Q * n_head, K)
    return bias[:, None].expand(B, n_head, Q, K).reshape(B * n_head, Q, K)


def _rotate_(t: Tensor, sin: Tensor, cos: Tensor, e: int) -> Tensor:
    """In place on t [B·q, H·(e + d)] = per head [c, a, b] (c e wide, a and b d/2 each): a <- a·sin + b·cos,
    b <- b·sin - a·cos, with sin, cos [q, H, d/2]. Contiguous sin/cos and in-place updates measured 2.7×
    faster than broadcasting [q, 1, d/2] into a new tensor (bf16, T-Maze paper shapes)."""
    Q, H, half = sin.shape
    a, b = t.view(-1, Q, H, e + 2 * half)[..., e:].chunk(2, -1)
    x = (a * sin).addcmul_(b, cos)
    b.mul_(sin).addcmul_(a, cos, value=-1)
    a.copy_(x)
    return t


class _RotatePositions(torch.autograd.Function):
    """:func:`_rotate_` with its gradient: the rotation's transpose, i.e. the same map with cos negated."""

    @staticmethod
    def forward(ctx, t: Tensor, sin: Tensor, cos: Tensor, e: int) -> Tensor:
        ctx.save_for_backward(sin, cos)
        ctx.e = e
        ctx.mark_dirty(t)
        return _rotate_(t, sin, cos, e)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        sin, cos = ctx.saved_tensors
        return _rotate_(grad.clone(memory_format=torch.contiguous_format), sin, -cos, ctx.e), None, None, None


def extended_queries(proj: Tensor, q_sin: Tensor, q_cos: Tensor, n_head: int, e: int) -> Tensor:
    """Extended queries [c_i, Q'_i] from the projections [c, a, b] of every head, [B·q, H·(e + d)] (rotated in
    place), and sin iω, cos iω [q, d/2] of the query positions: Q'_i = [a sin iω + b cos iω, b sin iω - a cos iω]."""
    sin, cos = (t[:, None].expand(-1, n_head, -1).to(proj.dtype).contiguous() for t in (q_sin, q_cos))
    if torch.is_grad_enabled() and proj.requires_grad:
        return _RotatePositions.apply(proj, sin, cos, e)
    return _rotate_(proj, sin, cos, e)


class RelMultiHeadAttention(nn.Module):
    """Transformer-XL relative attention: scores = ((q_i+u)·k_j + (q_i+v)·r_{i-j}) / sqrt(d_head), r = W_r pos(i-j),
    computed exactly in one of two factorised forms, whichever costs less for the shapes.

    Position term (both forms): with pos(Δ) = [sin Δω, cos Δω] and Δ = i - j, the angle-difference
    identities give (q_i+v)·W_r pos(i-j) = Q'_i · K'_j, where K'_j = [cos jω, sin jω] depends only on
    the key position and Q'_i = [a sin iω + b cos iω, b sin iω - a cos iω] with [a, b] = W_rᵀ(q_i+v):
    no table of r_{i-j}, no relative shift. A head's score is c_i·κ_j + Q'_i·K'_j.

    * standard form: c = q + u, κ = k, values v (per head, d_head wide), output projection W_o.
    * absorbed form, used when d_head ≥ d (every paper configuration): with y_j the d-wide attention
      input of key j, (W_q x_i + u)·(W_k y_j) = (W_kᵀ(W_q x_i + u))·y_j and Σ_j p_ij W_o W_v y_j =
      (W_o W_v) Σ_j p_ij y_j. So c = W_kᵀ(q + u), κ = y, values y, output W_o W_v: keys and values are
      never projected and all heads share one d-wide key/value tensor (T-Maze paper configuration:
      291 instead of 346 GFLOP per training iteration, fewer saved activations, a decoding cache of
      2d instead of 2·H·d_head numbers per token). Per (query, key) pair it costs 3·H·d against
      H·(2·d_head + d) for the standard form, hence the d_head ≥ d rule.
    """

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float):
        super().__init__()
        self.n_head, self.d_head, self.d_model, self.dropatt = n_head, d_head, d_model, dropatt
        self.absorbed = d_head >= d_model
        self.e = d_model if self.absorbed else d_head  # width of c, κ and the values
        self.qkv = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.out = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)
        self.fused: bool | None = None  # the fused kernel: None = on CUDA only (see the module docstring)

    def weights(self, u: Tensor, v: Tensor) -> Weights:
        """w_in [d + 1, H·(e+d)]: [x, 1] -> per head [c, a, b], scaled by d_head^-½ (the u / v bias terms are its
        last row: one GEMM with no bias pass; a ones column costs nothing at inner size 64); w_kv [d, H·2·d_head]:
        y -> per head [k, v] (standard form; None when absorbed); w_out [H·e, d]."""
        H, dh, d = self.n_head, self.d_head, self.d_model
        w_q, w_k, w_v = self.qkv.weight.view(3, H, dh, d).unbind(0)
        w_r = self.r_net.weight.view(H, dh, d)
        pos_w, pos_b = torch.einsum("hed,hef->dhf", w_q, w_r), torch.einsum("he,hef->hf", v, w_r)
        if self.absorbed:
            c_w, c_b = torch.einsum("hed,hef->dhf", w_q, w_k), torch.einsum("he,hef->hf", u, w_k)
            w_kv = None
            w_out = torch.einsum("ohe,hed->hdo", self.out.weight.view(d, H, dh), w_v).reshape(H * d, d)
        else:
            c_w, c_b = w_q.permute(2, 0, 1), u
            w_kv = torch.stack([w_k, w_v], 1).permute(3, 0, 1, 2).reshape(d, H * 2 * dh)
            w_out = self.out.weight.T
        scale = dh ** -0.5
        w_in = torch.cat([torch.cat([c_w, pos_w], -1).reshape(d, -1), torch.cat([c_b, pos_b], -1).reshape(1, -1)])
        return w_in * scale, w_kv, w_out

    def content_keys(self, y: Tensor, w_kv: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """κ and values of attention inputs y [B, S, d]: (y, None) absorbed, else per head k, v [B, H, S, d_head]."""
        if self.absorbed:
            return y, None
        B, S, _ = y.shape
        k, v = (y @ w_kv).view(B, S, self.n_head, 2, self.d_head).permute(3, 0, 2, 1, 4)
        return k, v

    def use_fused(self, x: Tensor) -> bool:
        """Whether :meth:`forward` on ``x`` takes the fused kernel (``fused``: None = on CUDA only)."""
        return x.is_cuda if self.fused is None else self.fused

    def decode_buffer(self, y: Tensor, key_feat: Tensor, u: Tensor, v: Tensor) -> DecodeBuffer:
        """A buffer holding the keys/values of cached attention inputs y [B, c, d] (c may be 0), with
        room for as many tokens as key_feat [capacity, d] has positions; keys, values and the formed
        weights are kept in the compute dtype."""
        dt = compute_dtype(y)
        y = y.to(dt)
        w = tuple(None if t is None else t.to(dt) for t in self.weights(u, v))
        B, cap = y.shape[0], key_feat.shape[0]
        if self.absorbed:
            keys = with_positions(y.new_empty(B, cap, self.e), key_feat)
            values = keys[..., :self.e]
        else:
            keys, values = (y.new_empty(B, self.n_head, cap, self.e) for _ in range(2))
        buf = DecodeBuffer(keys, values, w)
        buf.append(*self.content_keys(y, w[1]))
        return buf

    def forward(self, x: Tensor, past: Tensor | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor,
                key_feat: Tensor, mask: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Attend from the tokens ``x`` [B, q, d] (attention inputs) to ``past`` + ``x``; returns [B, q, d]
        in the compute dtype (:func:`compute_dtype`).

        past: None, the cached attention inputs [B, c, d], or a :class:`DecodeBuffer` (x is appended
        to it and its weights are used). q_sin, q_cos: [q, d/2] at the query positions;
        key_feat: [k, d] = [cos jω, sin jω] at every key position; mask: from :func:`attention_bias`.
        """
        B, Q, d = x.shape
        H, e = self.n_head, self.e
        query, keys_t, values, w_out = self._project(x, past, q_sin, q_cos, key_feat, u, v)
        dropatt = self.dropatt if self.training else 0.0
        if self.use_fused(x):  # one kernel over [B, H, q, e + d] queries
            keys = keys_t.transpose(-1, -2)
            if self.absorbed:
                keys, values = keys[:, None].expand(-1, H, -1, -1), values[:, None].expand(-1, H, -1, -1)
            else:
                keys = with_positions(keys, key_feat)
            pooled = F.scaled_dot_product_attention(query.transpose(1, 2), keys, values, attn_mask=mask,
                                                    dropout_p=dropatt, scale=1.0).transpose(1, 2)
        else:
            probs = self._probs(query, keys_t, key_feat, mask)
            if dropatt:
                probs = F.dropout(probs, dropatt)
            if self.absorbed:  # rows (query, head) against the shared values: one GEMM per batch row
                pooled = torch.bmm(probs, values)
            else:
                pooled = torch.bmm(probs, values.flatten(0, 1)).view(B, H, Q, e).transpose(1, 2)
        return self.drop((pooled.reshape(B * Q, H * e) @ w_out).view(B, Q, d))

    @torch.no_grad()
    def probabilities(self, x: Tensor, past: Tensor | None, q_sin: Tensor, q_cos: Tensor, key_feat: Tensor,
                      mask: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """The attention probabilities [B, H, q, k] that :meth:`forward` with these inputs computes (keys:
        ``past`` then ``x``), on the explicit path: what the attention tool draws."""
        if isinstance(past, DecodeBuffer):
            raise ValueError("attention probabilities are computed from whole segments, not a decoding buffer")
        B, Q, _ = x.shape
        query, keys_t, _, _ = self._project(x, past, q_sin, q_cos, key_feat, u, v)
        if mask.dtype == torch.bool:  # a fused layer's mask
            mask = attention_bias(~mask[:, 0], self.n_head, query.dtype, self.absorbed)
        probs = self._probs(query, keys_t, key_feat, mask).float()
        if self.absorbed:
            return probs.view(B, Q, self.n_head, -1).transpose(1, 2)
        return probs.view(B, self.n_head, Q, -1)

    def _project(self, x: Tensor, past: Tensor | DecodeBuffer | None, q_sin: Tensor, q_cos: Tensor,
                 key_feat: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Extended queries [c, Q'] [B, q, H, e + d], keys (transposed: token axis last) and values (of
        ``past`` + ``x``; a decoding buffer gets ``x`` appended) and the output weight, all in the compute dtype."""
        B, Q, d = x.shape
        dt = compute_dtype(x)
        x = x.to(dt)
        if isinstance(past, DecodeBuffer):
            w_in, w_kv, w_out = past.weights
            keys_t, values = past.append(*self.content_keys(x, w_kv))
        else:
            w_in, w_kv, w_out = (None if w is None else w.to(dt) for w in self.weights(u, v))
            keys, values = self.content_keys(x if past is None else torch.cat([past.to(dt), x], 1), w_kv)
            if self.absorbed:
                keys, values = with_positions(keys, key_feat), keys
            keys_t = keys.transpose(-1, -2)
        x1 = torch.cat([x.reshape(B * Q, d), x.new_ones(B * Q, 1)], 1)
        query = extended_queries(x1 @ w_in, q_sin, q_cos, self.n_head, self.e)
        return query.view(B, Q, self.n_head, self.e + d), keys_t, values, w_out

    def _probs(self, query: Tensor, keys_t: Tensor, key_feat: Tensor, mask: Tensor) -> Tensor:
        """Softmax attention: [B, q·H, k] rows (query, head) when absorbed, else [B·H, q, k]."""
        B, Q, H, w = query.shape
        if self.absorbed:  # rows (query, head) against the shared [y, K']: one GEMM per batch row
            return _softmax(torch.baddbmm(mask, query.view(B, Q * H, w), keys_t))
        # per head; the position scores of all heads and rows are one GEMM against the shared K'
        e = self.e
        c, q_pos = query.transpose(1, 2).split([e, w - e], -1)  # [B, H, q, ·]
        pos = (q_pos.reshape(-1, w - e) @ key_feat.to(query.dtype).T).view(B * H, Q, -1)
        return _softmax(torch.baddbmm(pos.add_(mask), c.reshape(B * H, Q, e), keys_t.flatten(0, 1)))


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over keys. Without gradients a bf16 softmax goes through fp32 (3× faster on CPU at decoding
    shapes, where rows hold < 100 keys); with them it stays in the scores' dtype (so does its backward)."""
    if torch.is_grad_enabled() or scores.dtype == torch.float32:
        return scores.softmax(-1)
    return torch.softmax(scores, -1, dtype=torch.float32).to(scores.dtype)


def with_positions(kappa: Tensor, key_feat: Tensor) -> Tensor:
    """[κ_j, K'_j]: content keys [..., k, e] joined with the key position features [k, d]."""
    return torch.cat([kappa, key_feat.to(kappa.dtype).expand(*kappa.shape[:-1], -1)], -1)


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
        return self.attn.decode_buffer(self.attn_input(h), key_feat, u, v)

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
