"""The behaviour-cloning baselines of ``--model_mode BC_MLP | BC_LSTM``: what replaces RATE's transformer.

Neither sees the return-to-go. BC_MLP maps each step's observation embedding to the action head's input
on its own (a reactive policy). BC_LSTM runs an LSTM over the steps, its input the observation embedding
plus the embedding of the action taken the step before (the "no action yet" embedding at an episode's
start), so it can know where it shot or what it answered; its state — (h, c) of every layer and that
last action — travels between segments as the model's ``State.memory`` [B, 2·L + 1, d], so the trainer's
segment loop (back-propagation through it, or ``--memory_grad detach``) and the rollout engine treat it as
they treat RATE's memory tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BCCore(nn.Module):
    """MLP (``BC_MLP``) or LSTM (``BC_LSTM``) from step embeddings [B, K, d] to head inputs [B, K, d]."""

    def __init__(self, mode: str, d: int, d_inner: int, n_layer: int, dropout: float):
        super().__init__()
        self.recurrent = mode == "BC_LSTM"
        if self.recurrent:
            self.net: nn.Module = nn.LSTM(d, d, n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0)
        else:
            layers: list[nn.Module] = []
            width = d
            for _ in range(n_layer):
                layers += [nn.Linear(width, d_inner), nn.ReLU(), nn.Dropout(dropout)]
                width = d_inner
            self.net = nn.Sequential(*layers, nn.Linear(width, d))

    def forward(self, obs: Tensor, actions: Tensor, no_action: Tensor, memory: Tensor | None
                ) -> tuple[Tensor, Tensor | None]:
        """obs, actions: embeddings [B, K, d] of the segment's observations and actions; no_action [B, 1, d]
        the embedding of "no action yet"; memory: the state after the previous segment (None at the start).
        Returns the outputs [B, K, d] and the state after this segment (None for the MLP)."""
        if not self.recurrent:
            return self.net(obs), None
        L, (B, _, d) = self.net.num_layers, obs.shape
        if memory is None:
            h = c = obs.new_zeros(L, B, d)
            first = no_action
        else:
            h, c = memory[:, :L].transpose(0, 1).contiguous(), memory[:, L:2 * L].transpose(0, 1).contiguous()
            first = memory[:, 2 * L:]
        x = obs + torch.cat([first.to(actions.dtype), actions[:, :-1]], 1)
        out, (h, c) = self.net(x, (h.to(x.dtype), c.to(x.dtype)))
        state = torch.cat([h.transpose(0, 1), c.transpose(0, 1), actions[:, -1:].to(h.dtype)], 1)
        return out, state

    def with_last_action(self, memory: Tensor | None, action: Tensor) -> Tensor | None:
        """``memory`` whose remembered last action is ``action`` [B, 1, d] (the rollout engine learns the
        executed action only after the step that chose it)."""
        if memory is None:
            return None
        return torch.cat([memory[:, :-1], action.to(memory.dtype)], 1)
