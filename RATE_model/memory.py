"""Memory tokens and the Memory Retention Valve (SPEC §1.5)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "no_act": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


class Memory(nn.Module):
    """Learnable initial memory and the rule that turns write-slot outputs into the next memory.

    h_ca = 0: M_next = H_w (RMT). h_ca > 0: M_next = MHA(query=M_prev, key=value=act(H_w)), the
    Memory Retention Valve, with biased projections, no residual and no norm.
    """

    def __init__(self, num_tokens: int, d_model: int, n_head_ca: int, mrv_act: str, dropout: float):
        super().__init__()
        # Independent tokens (the reference repeats one random vector, so all slots start equal).
        self.init = nn.Parameter(torch.randn(num_tokens, d_model))
        self.act = ACTIVATIONS[mrv_act]()
        self.mrv = (nn.MultiheadAttention(d_model, n_head_ca, dropout=dropout, batch_first=True)
                    if n_head_ca > 0 else None)

    def initial(self, batch_size: int) -> Tensor:
        """[B, m, d] starting memory of every trajectory."""
        return self.init.unsqueeze(0).expand(batch_size, -1, -1)

    def update(self, prev: Tensor, written: Tensor) -> Tensor:
        """Next memory [B, m, d] from the previous one and the final-layer write-slot outputs."""
        if self.mrv is None:
            return written
        c = self.act(written)
        return self.mrv(prev, c, c, need_weights=False)[0]
