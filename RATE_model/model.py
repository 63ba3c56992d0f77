"""The RATE network (SPEC §1): one class serves RATE, DT, DTXL, RATEM, RATE_wo_nmt, RMT and TrXL, and
the behaviour-cloning baselines BC_MLP and BC_LSTM (the transformer replaced by :mod:`RATE_model.bc`).

Segment token layout: ``[read M_1..M_m] R_0 o_0 a_0 … R_{K-1} o_{K-1} a_{K-1} [write M_1..M_m]``.
The action a_t is predicted from the output at o_t.

Two ways to run the same layers:
* :meth:`RATE.forward` processes a whole segment (training, full recomputation);
* :meth:`RATE.start` / :meth:`RATE.extend` / :meth:`RATE.finish_segment` process it a few
  tokens at a time with per-layer key/value caches (evaluation rollouts). Both build their attention
  masks with :func:`attention_mask`, so they agree to float tolerance (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from RATE_model.bc import BCCore
from RATE_model.config import BC_MODES, ModelConfig
from RATE_model.encoders import ACTION_PAD, build_encoders
from RATE_model.layers import DecodeBuffer, DecoderLayer, attention_bias, sincos
from RATE_model.memory import Memory
from RATE_model.precision import compute_dtype

# Token types, used to build attention masks.
CACHE, READ, REGULAR, WRITE = 0, 1, 2, 3


def attention_mask(q_type: Tensor, q_pos: Tensor, k_type: Tensor, k_pos: Tensor, k_valid: Tensor) -> Tensor:
    """Blocked (True) query/key pairs, [B, q, k] (SPEC §1.4).

    q_type/q_pos: [q]; k_type/k_pos: [k] (positions in the concatenated [cache; segment] sequence);
    k_valid: [B, k], False for padded steps. Regular tokens: causal, see cache and read slots, never
    write slots. Read slots: each other only. Write slots: the whole segment, not the cache. Padded
    keys are blocked except for a token's own position (keeps every softmax row finite; a padded
    query's output is never used).
    """
    qt, kt = q_type[:, None], k_type[None, :]
    read_q = (qt == READ) & (kt != READ)
    regular_q = (qt == REGULAR) & ((kt == WRITE) | ((kt == REGULAR) & (k_pos[None, :] > q_pos[:, None])))
    write_q = (qt == WRITE) & (kt == CACHE)
    blocked = read_q | regular_q | write_q  # [q, k]
    self_key = k_pos[None, :] == q_pos[:, None]
    return blocked[None] | (~k_valid[:, None, :] & ~self_key[None])


@dataclass
class State:
    """What flows from one segment to the next: memory tokens and the hidden-state cache."""

    memory: Tensor | None  # [B, m, d]
    cache: list[Tensor] | None  # per layer input, [B, c, d], detached
    cache_valid: Tensor | None  # [B, c] bool


@dataclass
class Decoding:
    """Incremental-decoding state inside one segment (keys and values of everything seen so far)."""

    state: State  # the state the segment started from
    buffers: list[DecodeBuffer]  # per layer, keys and values so far (written in place by extend)
    inputs: list[list[Tensor]]  # per layer, the segment's layer inputs so far (for the next cache)
    k_type: Tensor  # [k]
    k_valid: Tensor  # [B, k]
    positions: tuple[Tensor, Tensor, Tensor]  # sin, cos, key features of every slot (position_table)


class RATE(nn.Module):
    """Recurrent Action Transformer with Memory."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        c = self.cfg = config.effective()
        self.enc = build_encoders(c.env, c.d_model, **c.env_kwargs)
        self.bc = c.model_mode in BC_MODES
        self.core = BCCore(c.model_mode, c.d_model, c.d_inner, c.n_layer, c.dropout) if self.bc else None
        self.layers = nn.ModuleList(
            DecoderLayer(c.arch_mode, c.d_model, c.n_head, c.d_head, c.d_inner, c.dropout, c.dropatt, c.skip_dec_ffn)
            for _ in range(0 if self.bc else c.n_layer)
        )
        # Transformer-XL position biases, shared by all layers, initialised here (not left to trainers).
        self.u = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_head, c.d_head)))
        self.v = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_head, c.d_head)))
        self.memory = (Memory(c.num_mem_tokens, c.d_model, c.n_head_ca, c.mrv_act, c.dropout)
                       if c.num_mem_tokens else None)
        self.drop = nn.Dropout(c.dropout)

    @property
    def m(self) -> int:
        return self.cfg.num_mem_tokens

    # ----------------------------------------------------------------------------------------- parts
    def embed(self, rtg: Tensor, obs: Tensor, actions: Tensor) -> Tensor:
        """Interleaved R, o, a token embeddings [B, 3T, d] (dropout applied)."""
        B, T = obs.shape[:2]
        r, o, a = self.enc.rtg(rtg), self.enc.embed_obs(obs), self.enc.embed_actions(actions)
        return self.drop(torch.stack([r, o, a], dim=2).view(B, 3 * T, -1))

    def position_table(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """sin jω, cos jω [n, d/2] and the key features [cos jω, sin jω] [n, d] of positions 0..n-1."""
        sin, cos = sincos(torch.arange(n, device=device), self.cfg.d_model)
        return sin, cos, torch.cat([cos, sin], -1)

    def _run_layers(self, x: Tensor, past: list[Tensor] | list[DecodeBuffer] | None, blocked: Tensor,
                    n_keys: int, grad_checkpoint: bool = False,
                    positions: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """All layers on the new tokens x [B, q, d], the last q of ``n_keys`` positions, attending to
        ``past`` (per layer: cached attention inputs or decoding buffers); returns the outputs and the
        layer inputs. ``positions``: a precomputed :meth:`position_table` of at least ``n_keys`` rows."""
        Q = x.shape[1]
        sin, cos, key_feat = (t[:n_keys] for t in positions or self.position_table(n_keys, x.device))
        q_sin, q_cos = sin[n_keys - Q:], cos[n_keys - Q:]
        attn = self.layers[0].attn
        mask = attention_bias(blocked, self.cfg.n_head, compute_dtype(x), attn.absorbed, attn.use_fused(x))
        inputs, h = [], x
        for i, layer in enumerate(self.layers):
            inputs.append(h)
            args = (h, None if past is None else past[i], q_sin, q_cos, key_feat, mask, self.u, self.v)
            if grad_checkpoint and torch.is_grad_enabled():  # keep only layer inputs; recompute in backward
                h = checkpoint(layer, *args, use_reentrant=False)
            else:
                h = layer(*args)
        return self.drop(h), inputs

    def initial_state(self, batch_size: int) -> State:
        """State at the start of every trajectory (learnable memory, empty cache)."""
        mem = self.memory.initial(batch_size) if self.memory is not None else None
        return State(mem, None, None)

    def _next_state(self, state: State, written: Tensor | None, inputs: list[Tensor], valid: Tensor) -> State:
        memory = self.memory.update(state.memory, written) if self.memory is not None else None
        if self.cfg.mem_len == 0:
            return State(memory, None, None)
        keep = self.cfg.mem_len
        if state.cache is None:
            cache = [h.detach()[:, -keep:] for h in inputs]
            cache_valid = valid[:, -keep:]
        else:
            cache = [torch.cat([c, h.detach()], 1)[:, -keep:] for c, h in zip(state.cache, inputs, strict=True)]
            cache_valid = torch.cat([state.cache_valid, valid], 1)[:, -keep:]
        return State(memory, cache, cache_valid)

    def _layout(self, n_regular: int, device: torch.device) -> Tensor:
        m = self.m
        return torch.cat([torch.full((m,), READ), torch.full((n_regular,), REGULAR),
                          torch.full((m,), WRITE)]).to(device)

    # ------------------------------------------------------------------------------ whole segment
    def forward(self, rtg: Tensor, obs: Tensor, actions: Tensor, valid: Tensor,
                state: State | None = None, grad_checkpoint: bool = False) -> tuple[Tensor, State]:
        """One segment of K steps.

        rtg [B, K, 1]; obs [B, K, *obs_shape]; actions [B, K] (discrete, -10 = padding) or
        [B, K, act_dim]; valid [B, K] bool. Returns action logits [B, K, n_actions] (predicted at
        each o_t) and the state for the next segment. ``grad_checkpoint`` trades one extra forward
        pass for keeping only each layer's input for the backward pass.
        """
        if self.bc:
            return self._bc_forward(obs, actions, state)
        B, K = obs.shape[:2]
        dev = obs.device
        state = state if state is not None else self.initial_state(B)
        m = self.m
        tokens = self.embed(rtg, obs, actions)
        seg_valid = valid.repeat_interleave(3, dim=1)
        if m:
            mem_valid = torch.ones(B, m, dtype=torch.bool, device=dev)
            x = torch.cat([state.memory, tokens, state.memory], 1)
            seg_valid = torch.cat([mem_valid, seg_valid, mem_valid], 1)
        else:
            x = tokens
        seg_type = self._layout(3 * K, dev)
        c = 0 if state.cache is None else state.cache[0].shape[1]
        k_type = torch.cat([torch.full((c,), CACHE, device=dev), seg_type])
        k_valid = seg_valid if c == 0 else torch.cat([state.cache_valid, seg_valid], 1)
        k_pos = torch.arange(c + x.shape[1], device=dev)
        q_pos = k_pos[c:]
        blocked = attention_mask(seg_type, q_pos, k_type, k_pos, k_valid)
        past = None if c == 0 else [layer.attn_input(h) for layer, h in zip(self.layers, state.cache, strict=True)]
        out, inputs = self._run_layers(x, past, blocked, len(k_pos), grad_checkpoint)
        logits = self.enc.head(out[:, m + 1: m + 3 * K: 3])
        written = out[:, -m:] if m else None
        return logits, self._next_state(state, written, inputs, seg_valid)

    def no_action(self, batch_size: int) -> Tensor:
        """The embedding of "no action yet" [B, 1, d] (padding: a discrete env's extra row, zeros otherwise)."""
        spec, dev = self.enc.spec, self.u.device
        pad = (torch.full((batch_size, 1), ACTION_PAD, device=dev) if spec.discrete
               else torch.zeros(batch_size, 1, spec.n_actions, device=dev))
        return self.enc.embed_actions(pad)

    def _bc_forward(self, obs: Tensor, actions: Tensor, state: State | None) -> tuple[Tensor, State]:
        """BC_MLP / BC_LSTM on one segment (no return-to-go); the LSTM's state is ``State.memory``."""
        a = self.enc.embed_actions(actions)
        out, memory = self.core(self.drop(self.enc.embed_obs(obs)), a, self.no_action(obs.shape[0]),
                                None if state is None else state.memory)
        return self.enc.head(self.drop(out)), State(memory, None, None)

    # ------------------------------------------------------------------------ incremental decoding
    def start(self, batch_size: int, state: State | None = None) -> Decoding:
        """Begin decoding a segment: the cache, then the read memory slots."""
        state = state if state is not None else self.initial_state(batch_size)
        B, dev, c = batch_size, self.u.device, self.cfg
        if state.cache is not None:
            cache = state.cache
            k_type = torch.full((cache[0].shape[1],), CACHE, device=dev)
            k_valid = state.cache_valid
        else:
            cache = [torch.empty(B, 0, c.d_model, device=dev, dtype=self.u.dtype)] * len(self.layers)
            k_type = torch.empty(0, dtype=torch.long, device=dev)
            k_valid = torch.empty(B, 0, dtype=torch.bool, device=dev)
        capacity = k_type.shape[0] + 2 * self.m + 3 * c.context_length
        positions = self.position_table(capacity, dev)  # computed once per segment, sliced by every step
        buffers = [layer.decode_buffer(h, positions[2], self.u, self.v)
                   for layer, h in zip(self.layers, cache, strict=True)]
        dec = Decoding(state, buffers, [[] for _ in self.layers], k_type, k_valid, positions)
        if self.m:
            _, dec = self.extend(dec, state.memory, READ)
        return dec

    def extend(self, dec: Decoding, x: Tensor, token_type: int | Tensor, valid: Tensor | None = None
               ) -> tuple[Tensor, Decoding]:
        """Append token embeddings x [B, q, d] of one type (or a [q] type vector); return outputs [B, q, d].

        The per-layer buffers of ``dec`` are written in place."""
        B, Q, _ = x.shape
        dev = x.device
        q_type = token_type if isinstance(token_type, Tensor) else torch.full((Q,), token_type, device=dev)
        valid = torch.ones(B, Q, dtype=torch.bool, device=dev) if valid is None else valid
        n_past = dec.k_type.shape[0]
        k_type = torch.cat([dec.k_type, q_type])
        k_valid = torch.cat([dec.k_valid, valid], 1)
        k_pos = torch.arange(n_past + Q, device=dev)
        q_pos = k_pos[n_past:]
        blocked = attention_mask(q_type, q_pos, k_type, k_pos, k_valid)
        out, inputs = self._run_layers(x, dec.buffers, blocked, len(k_pos), positions=dec.positions)
        seg_inputs = [acc + [h] for acc, h in zip(dec.inputs, inputs, strict=True)]
        return out, Decoding(dec.state, dec.buffers, seg_inputs, k_type, k_valid, dec.positions)

    def finish_segment(self, dec: Decoding) -> State:
        """Close a segment whose 3K tokens are all in: run the write slots, return the next state."""
        if self.m:
            out, dec = self.extend(dec, dec.state.memory, WRITE)
            written = out
        else:
            written = None
        n_cache = 0 if dec.state.cache is None else dec.state.cache[0].shape[1]
        inputs = [torch.cat(hs, 1) for hs in dec.inputs]
        return self._next_state(dec.state, written, inputs, dec.k_valid[:, n_cache:])
