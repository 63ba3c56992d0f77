"""Batched evaluation rollouts with incremental decoding (SPEC §3).

All episodes of a batch step together. Inside a segment each env step appends the tokens
``a_{t-1}, R_t, o_t`` to per-layer key/value caches, so a step costs O(window), and every
observation is encoded exactly once. When a segment's K steps are done, its last action is appended,
the write slots run over the complete segment and the next segment starts from the new memory and
hidden-state cache — exactly what training sees. Actions fed back are the executed ones, aligned with
their observations.

Evaluation seeds come in two disjoint splits (:func:`split_seeds`): ``test`` (the protocol's reported
episodes) and ``validation`` (what evaluation during training and best-checkpoint selection see).
``rollout(..., memory_noise=...)`` is the memory ablation: every segment then reads Gaussian noise in place
of its memory tokens and/or hidden-state cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from RATE_model import distributed
from RATE_model.config import MEMORY_NOISE
from RATE_model.model import RATE, REGULAR, Decoding, State

SPLITS = ("test", "validation")


def split_seeds(n: int, split: str, test_offset: int, validation_offset: int) -> list[int]:
    """The ``n`` fixed env seeds of an evaluation split: ``test_offset + i`` or ``validation_offset + i``.
    The two ranges never overlap (checked), so validation never sees a test episode."""
    if split not in SPLITS:
        raise ValueError(f"evaluation split {split!r} is not one of {', '.join(SPLITS)}")
    lo, hi = sorted((test_offset, validation_offset))
    if n > hi - lo:
        raise ValueError(f"{n} evaluation episodes would make the test and validation seeds overlap "
                         f"(at most {hi - lo})")
    start = test_offset if split == "test" else validation_offset
    return list(range(start, start + n))


def _like(x: Tensor, gen: torch.Generator) -> Tensor:
    """Gaussian noise of the shape, mean and standard deviation (over all elements) of ``x``."""
    x = x.float()
    noise = torch.randn(x.shape, generator=gen, device=x.device)
    return (noise * x.std() + x.mean()).to(x.dtype)


def noised(state: State, which: str, gen: torch.Generator) -> State:
    """``state`` with its memory tokens (``tokens``), cache (``cache``) or both replaced by noise."""
    memory, cache = state.memory, state.cache
    if which in ("tokens", "both") and memory is not None:
        memory = _like(memory, gen)
    if which in ("cache", "both") and cache is not None:
        cache = [_like(c, gen) for c in cache]
    return replace(state, memory=memory, cache=cache)


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
    trajectory: dict[str, np.ndarray] = field(default_factory=dict)  # keep_trajectory: rtg, obs, action [T, E, ...]
    states: list[State] = field(default_factory=list)  # keep_states: the state after each completed segment


@dataclass
class Episode:
    """One evaluation episode of an env's protocol, to play with :func:`rollout` (attention maps)."""

    env: VectorEnv  # a single env (num_envs 1)
    target_return: float
    max_steps: int
    sample: bool = False
    reward_scale: float = 1.0
    reset_rtg_each_segment: bool = False
    cue_steps: tuple[int, ...] = ()  # steps whose observation holds what later decisions depend on
    close: Callable[[], None] | None = None  # releases worker processes


class Decoder:
    """Incremental policy over a batch of episodes: feed (R_t, o_t), get logits for a_t.

    With ``memory_noise`` (``tokens``, ``cache`` or ``both``; see :func:`noised`) each segment starts from a
    noised state (seeded: the ablation is reproducible). The BC baselines run one step at a time through
    ``model.forward`` (an MLP has no past; an LSTM's state is carried step to step, the executed action
    written into it by :meth:`observe_action`) and ignore memory noise."""

    def __init__(self, model: RATE, batch_size: int, keep_states: bool = False, memory_noise: str = "none"):
        if memory_noise not in MEMORY_NOISE:
            raise ValueError(f"memory noise {memory_noise!r} is not one of {', '.join(MEMORY_NOISE)}")
        self.model, self.K, self.batch_size = model, model.cfg.context_length, batch_size
        self.states: list[State] | None = [] if keep_states else None  # the state each finished segment leaves
        self.t = 0  # steps consumed in this episode
        self.noise = memory_noise
        self.gen = torch.Generator(device=model.u.device).manual_seed(0) if self.noise != "none" else None
        self.bc_state: State | None = None
        self.dec: Decoding | None = None if model.bc else self._start(None)
        self.prev_action: Tensor | None = None

    def _start(self, state: State | None) -> Decoding:
        state = state if state is not None else self.model.initial_state(self.batch_size)
        if self.noise != "none":
            state = noised(state, self.noise, self.gen)
        return self.model.start(self.batch_size, state)

    def act_logits(self, rtg: Tensor, obs: Tensor) -> Tensor:
        """rtg [B], obs [B, *obs_shape] -> logits (or continuous action) for the current step [B, A]."""
        enc, model = self.model.enc, self.model
        if model.bc:
            B, dev = obs.shape[0], obs.device
            # the step's own action is not known yet; observe_action writes it into the LSTM's state
            own = (torch.zeros(B, 1, dtype=torch.long, device=dev) if enc.spec.discrete
                   else torch.zeros(B, 1, enc.spec.n_actions, device=dev))
            valid = torch.ones(B, 1, dtype=torch.bool, device=dev)
            logits, self.bc_state = model(rtg.view(-1, 1, 1).float(), obs.unsqueeze(1), own, valid, self.bc_state)
            self.t += 1
            return logits[:, 0]
        r = enc.rtg(rtg.view(-1, 1, 1).float())
        o = enc.embed_obs(obs.unsqueeze(1))
        if self.t > 0 and self.t % self.K == 0:  # segment complete: its last action, then write slots
            state = model.finish_segment(self._extend(self._embed_prev()))
            if self.states is not None:
                self.states.append(state)
            self.dec = self._start(state)
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
        if self.bc_state is not None:
            a = self.model.enc.embed_actions(action.unsqueeze(1))
            self.bc_state = State(self.model.core.with_last_action(self.bc_state.memory, a), None, None)

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
            generator: torch.Generator | None = None, progress: bool | str = False,
            keep_trajectory: bool = False, keep_states: bool = False, memory_noise: str = "none",
            override: Callable[[int, np.ndarray], Tensor | None] | None = None) -> RolloutResult:
    """Run ``env.num_envs`` episodes to the end (or ``max_steps``) with the model as policy.

    The return-to-go starts at ``target_return`` and falls by ``reward * reward_scale`` each step;
    ``reset_rtg_each_segment`` restores it at every segment start (the paper's MuJoCo evaluation).
    Discrete actions are the argmax, or sampled when ``sample``; continuous actions are the head output.
    ``keep_trajectory``: the result also holds every step's return-to-go, observation and action;
    ``keep_states``: the state (memory tokens, cache) each completed segment hands to the next (a segment's
    write slots run when the next segment's first step is taken); ``memory_noise``: the memory ablation
    (:class:`Decoder`).
    ``override(t, obs)``: where it returns an action, that action is executed in place of the model's (and
    observed by it, as in its data) — e.g. a behaviour policy playing an episode's first steps.
    """
    was_training = model.training
    model.eval()
    dev = model.u.device
    E = env.num_envs
    discrete = model.enc.spec.discrete
    target = torch.tensor(np.broadcast_to(target_return, (E,)), dtype=torch.float32, device=dev)
    rtg = target.clone()
    obs = env.reset()
    dec = Decoder(model, E, keep_states, memory_noise)
    returns, lengths = np.zeros(E), np.zeros(E, dtype=np.int64)
    done = np.zeros(E, dtype=bool)
    infos: dict[str, np.ndarray] = {}
    kept: dict[str, list[np.ndarray]] = {"rtg": [], "obs": [], "action": []}
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
        if override is not None and (forced := override(t, obs)) is not None:
            action = forced.to(action.device, action.dtype)
        dec.observe_action(action)
        if keep_trajectory:
            for k, v in (("rtg", rtg), ("obs", obs), ("action", action)):
                kept[k].append(np.array(v.cpu().numpy() if isinstance(v, Tensor) else v))
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
    trajectory = {k: np.stack(v) for k, v in kept.items()} if keep_trajectory else {}
    return RolloutResult(returns, lengths, infos, trajectory, dec.states or [])



def play_runs(model: RATE, make_env: Callable[[list[int]], VectorEnv], seeds: Sequence[int], max_steps: int,
              runs: dict[str, dict[str, Any]], batch_size: int | None = None, sample_seed: int = 0,
              memory_noise: str = "none", info_keys: Sequence[str] = (),
              desc: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """One episode per env seed of ``seeds`` for each run of ``runs`` (name -> :func:`rollout`'s settings:
    ``target_return`` and any of ``sample``, ``reward_scale``, ``reset_rtg_each_segment``). ``batch_size``
    (default: all) episodes step together in the vector env ``make_env(batch_seeds)``, which every run replays
    (reset with the same seeds) before it is closed. Under torchrun each rank plays a contiguous share and the
    shares are gathered, so every rank returns, per run, the arrays ``seed``, ``return``, ``length`` and the last
    value of each of ``info_keys`` over all ``seeds``, in order. Sampled actions draw from one generator seeded
    ``sample_seed + 7919 * rank``; ``desc`` names the progress bars (main rank)."""
    mine = list(distributed.shard(list(seeds)))
    batch_size = batch_size or max(1, len(mine))
    gen = torch.Generator(device=model.u.device).manual_seed(sample_seed + 7919 * distributed.rank())
    show = desc is not None and distributed.is_main()
    out = {name: {k: [np.zeros(0)] for k in ("return", "length", *info_keys)} for name in runs}
    for i in tqdm(range(0, len(mine), batch_size), desc=f"{desc} eval batches", disable=not show, leave=False):
        env = make_env(mine[i:i + batch_size])
        try:
            for name, settings in runs.items():
                res = rollout(model, env, max_steps=max_steps, generator=gen, memory_noise=memory_noise,
                              progress=f"{desc} eval {name}".rstrip() if show else False, **settings)
                for k, v in (("return", res.returns), ("length", res.lengths), *((k, res.infos[k]) for k in info_keys)):
                    out[name][k].append(np.asarray(v))
        finally:
            if hasattr(env, "close"):
                env.close()
    parts = distributed.gather((np.asarray(mine, np.int64),
                                {name: {k: np.concatenate(v) for k, v in r.items()} for name, r in out.items()}))
    all_seeds = np.concatenate([p[0] for p in parts])
    return {name: {"seed": all_seeds, **{k: np.concatenate([p[1][name][k] for p in parts]) for k in out[name]}}
            for name in runs}


def play_seeds(model: RATE, make_env: Callable[[list[int]], VectorEnv], seeds: Sequence[int],
               target_return: float | np.ndarray, max_steps: int, batch_size: int | None = None, sample: bool = True,
               sample_seed: int = 0, memory_noise: str = "none", info_keys: Sequence[str] = (),
               desc: str | None = None) -> dict[str, np.ndarray]:
    """:func:`play_runs` with one run (``target_return``, sampled actions unless ``sample`` is False)."""
    return play_runs(model, make_env, seeds, max_steps, {"": {"target_return": target_return, "sample": sample}},
                     batch_size, sample_seed, memory_noise, info_keys, desc)[""]
