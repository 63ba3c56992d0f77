"""Batched evaluation rollouts with incremental decoding (SPEC §3).

All episodes of a batch step together. Inside a segment each env step appends the tokens
``a_{t-1}, R_t, o_t`` to per-layer key/value caches, so a step costs O(window), and every
observation is encoded exactly once. When a segment's K steps are done, its last action is appended,
the write slots run over the complete segment and the next segment starts from the new memory and
hidden-state cache — exactly what training sees. Actions fed back are the executed ones, aligned with
their observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from RATE_model.model import RATE, REGULAR, Decoding


class VectorEnv(Protocol):
    """E environments stepped together. Observations are arrays with a leading E axis."""

    num_envs: int

    def reset(self) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Returns obs [E, ...], reward [E], done [E] bool, info dict of [E] arrays."""
        ...


def sem(x: np.ndarray) -> float:
    """Standard error of the mean of per-episode values (0 for fewer than two)."""
    x = np.asarray(x, np.float64)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


@dataclass
class RolloutResult:
    """Per-episode outcome of a batched rollout."""

    returns: np.ndarray  # [E] float, sum of rewards until done
    lengths: np.ndarray  # [E] int, steps taken
    infos: dict[str, np.ndarray]  # last info value of each episode (e.g. "success")


class Decoder:
    """Incremental policy over a batch of episodes: feed (R_t, o_t), get logits for a_t."""

    def __init__(self, model: RATE, batch_size: int):
        self.model, self.K, self.batch_size = model, model.cfg.context_length, batch_size
        self.t = 0  # steps consumed in this episode
        self.dec: Decoding = model.start(batch_size)
        self.prev_action: Tensor | None = None

    def act_logits(self, rtg: Tensor, obs: Tensor) -> Tensor:
        """rtg [B], obs [B, *obs_shape] -> logits (or continuous action) for the current step [B, A]."""
        enc, model = self.model.enc, self.model
        r = enc.rtg(rtg.view(-1, 1, 1).float())
        o = enc.embed_obs(obs.unsqueeze(1))
        if self.t > 0 and self.t % self.K == 0:  # segment complete: its last action, then write slots
            state = model.finish_segment(self._extend(self._embed_prev()))
            self.dec = model.start(self.batch_size, state)
            x = torch.cat([r, o], 1)
        elif self.t > 0:
            x = torch.cat([self._embed_prev(), r, o], 1)
        else:
            x = torch.cat([r, o], 1)
        out = self._extend_out(x)
        self.t += 1
        return enc.head(out[:, -1])

    def observe_action(self, action: Tensor) -> None:
        """Record the action actually executed for the last observation."""
        self.prev_action = action

    def _embed_prev(self) -> Tensor:
        assert self.prev_action is not None, "observe_action must follow every act_logits"
        a = self.prev_action.unsqueeze(1)
        return self.model.enc.embed_actions(a)

    def _extend(self, x: Tensor) -> Decoding:
        return self.model.extend(self.dec, x, REGULAR)[1]

    def _extend_out(self, x: Tensor) -> Tensor:
        out, self.dec = self.model.extend(self.dec, x, REGULAR)
        return out


@torch.no_grad()
def rollout(model: RATE, env: VectorEnv, target_return: float | np.ndarray, max_steps: int,
            sample: bool = False, reward_scale: float = 1.0, reset_rtg_each_segment: bool = False,
            generator: torch.Generator | None = None, progress: bool | str = False) -> RolloutResult:
    """Run ``env.num_envs`` episodes to the end (or ``max_steps``) with the model as policy.

    The return-to-go starts at ``target_return`` and falls by ``reward * reward_scale`` each step;
    ``reset_rtg_each_segment`` restores it at every segment start (the paper's MuJoCo evaluation).
    Discrete actions are the argmax, or sampled when ``sample``; continuous actions are the head output.
    """
    was_training = model.training
    model.eval()
    dev = model.u.device
    E = env.num_envs
    discrete = model.enc.spec.discrete
    target = torch.tensor(np.broadcast_to(target_return, (E,)), dtype=torch.float32, device=dev)
    rtg = target.clone()
    obs = env.reset()
    dec = Decoder(model, E)
    returns, lengths = np.zeros(E), np.zeros(E, dtype=np.int64)
    done = np.zeros(E, dtype=bool)
    infos: dict[str, np.ndarray] = {}
    steps = range(max_steps)
    if progress:
        steps = tqdm(steps, desc=progress if isinstance(progress, str) else "rollout", leave=False)
    for t in steps:
        if reset_rtg_each_segment and t % dec.K == 0:
            rtg = target.clone()
        out = dec.act_logits(rtg, torch.as_tensor(obs, device=dev)).float()  # bf16 under autocast
        if not discrete:
            action = out
        elif sample:
            action = torch.multinomial(torch.softmax(out, -1), 1, generator=generator).squeeze(1)
        else:
            action = out.argmax(-1)
        dec.observe_action(action)
        obs, reward, step_done, info = env.step(action.cpu().numpy())
        live = ~done
        returns[live] += reward[live]
        lengths[live] += 1
        for k, val in info.items():
            infos.setdefault(k, np.zeros_like(val))[live] = val[live]
        rtg = rtg - torch.as_tensor(reward * reward_scale, dtype=torch.float32, device=dev)
        done |= step_done
        if done.all():
            break
    model.train(was_training)
    return RolloutResult(returns, lengths, infos)
