"""Image-cue T-Maze: the controlled diagnostic for Minigrid-Memory's image path (issue 9).

A passive corridor of L steps seen through Minigrid-Memory's own renderer: the first frame shows the
cue (a key or a ball in the start room, from one of the views the env can produce), every later frame
is the hallway, and the last one is the T-junction. Whatever the agent does before the last step,
the corridor advances; at the junction the agent must turn LEFT for a key and RIGHT for a ball
(reward 1; anything else 0). The cue frame is the only one that differs between the two cases, so a
model can act right only by carrying one 3×84×84 frame's worth of information across the segments,
through the same CNN encoder, memory and trainer as Minigrid-Memory.

The expert data is one episode per (cue, view) draw: FORWARD until the junction, then the right turn;
return-to-go 1 throughout.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from MinigridMemory.MinigridMemory_src.minigrid_data import OBS_SHAPE
from MinigridMemory.MinigridMemory_src.minigrid_env import FORWARD, LEFT, RIGHT, MinigridMemory
from RATE_model.config import ModelConfig, TrainConfig
from RATE_model.data import WindowDataset, consecutive, uint8_to_float, with_returns_to_go
from RATE_model.model import RATE
from RATE_model.rollout import rollout
from RATE_model.store import EpisodeStore
from RATE_model.trainer import Trainer

KEY, BALL = 0, 1
GRID = 11  # the grid the frames are rendered on (any MemoryEnv size gives the same 3×3 views)


@cache
def frames() -> dict[str, np.ndarray]:
    """Every frame the task uses, rendered by minigrid: ``cue`` [2, V, 3, 84, 84] (key, ball) for the V
    start-room states that see the cue, ``hallway`` and ``junction`` [3, 84, 84] (facing east)."""
    env = MinigridMemory(GRID)
    cue = []
    for seed_obj in ("key", "ball"):
        seed = next(s for s in range(100) if _cue_type(env, s) == seed_obj)
        env.reset(seed)
        g, mid = env.env, GRID // 2
        views = []
        for x in range(1, 4):
            for y in range(mid - 1, mid + 2):
                for d in range(4):
                    if g.grid.get(x, y) is not None:
                        continue
                    g.agent_pos, g.agent_dir = np.array((x, y)), d
                    if g.in_view(1, mid - 1):
                        views.append(env.render())
        cue.append(np.stack(views))
    g = env.env
    g.agent_pos, g.agent_dir = np.array((5, GRID // 2)), 0
    hallway = env.render()
    g.agent_pos = np.array((GRID - 2, GRID // 2))
    junction = env.render()
    return {"cue": np.stack(cue), "hallway": hallway, "junction": junction}


def _cue_type(env: MinigridMemory, seed: int) -> str:
    env.reset(seed)
    return env.env.grid.get(1, GRID // 2 - 1).type


def episode_obs(cue: int, view: int, length: int) -> np.ndarray:
    """uint8 [length, 3, 84, 84]: the cue frame, hallway frames, the junction frame."""
    f = frames()
    obs = np.repeat(f["hallway"][None], length, 0)
    obs[0], obs[-1] = f["cue"][cue, view], f["junction"]
    return obs


def expert_episodes(n: int, length: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` expert episodes (half keys, half balls; views drawn from ``seed``) with return-to-go."""
    if length < 2:
        raise ValueError(f"the image-cue corridor needs length >= 2, got {length}")
    rng = np.random.default_rng(seed)
    n_views = frames()["cue"].shape[1]
    episodes = []
    for i in range(n):
        cue = i % 2
        action = np.full(length, FORWARD, np.int64)
        action[-1] = LEFT if cue == KEY else RIGHT
        reward = np.zeros(length, np.float32)
        reward[-1] = 1.0
        obs = episode_obs(cue, int(rng.integers(n_views)), length)
        episodes.append(with_returns_to_go({"obs": obs, "action": action, "reward": reward}))
    return episodes


def image_cue_dataset(n: int, length: int, window: int, seed: int = 0) -> WindowDataset:
    """Training windows of ``window`` steps over ``n`` expert corridors of ``length`` steps (an in-RAM
    episode store)."""
    episodes = expert_episodes(n, length, seed)
    return consecutive(EpisodeStore.from_episodes(episodes), window, obs_transform=uint8_to_float)


class ImageCueVecEnv:
    """E image-cue corridors stepped together (the rollout engine's ``VectorEnv``); episode i shows
    cue ``cues[i]`` (0 key, 1 ball) in view ``views[i]``. Observations float32 [E, 3, 84, 84] in [0, 1]."""

    def __init__(self, length: int, cues: np.ndarray, views: np.ndarray):
        self.length, self.cues, self.views = length, np.asarray(cues), np.asarray(views)
        self.num_envs = len(self.cues)

    def _obs(self) -> np.ndarray:
        f, t = frames(), min(self.t, self.length - 1)
        if t == 0:
            obs = f["cue"][self.cues, self.views]
        else:
            obs = np.broadcast_to(f["junction" if t == self.length - 1 else "hallway"], (self.num_envs, *OBS_SHAPE))
        return obs.astype(np.float32) / 255.0

    def reset(self) -> np.ndarray:
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        self.t += 1
        done = np.full(self.num_envs, self.t >= self.length)
        right = np.where(self.cues == KEY, LEFT, RIGHT)
        success = (done & (np.asarray(actions) == right)).astype(np.float32)
        return self._obs(), success, done, {"success": success}


def eval_envs(n: int, length: int, seed: int = 10_000) -> ImageCueVecEnv:
    """``n`` fixed evaluation corridors: half keys, half balls, views drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return ImageCueVecEnv(length, np.arange(n) % 2, rng.integers(frames()["cue"].shape[1], size=n))


# ------------------------------------------------------------------------------------------ diagnostics
def linear_probe(x: Tensor, y: Tensor, seed: int = 0) -> float:
    """Held-out accuracy (30 % of the rows) of a logistic regression of labels y [n] in {0, 1} on
    features x [n, f], fitted by L-BFGS on standardised features."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    cut = len(y) * 7 // 10
    tr, te = perm[:cut], perm[cut:]
    x = x.detach().float().flatten(1)
    x = (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x[tr] @ w + b, y[tr].float()) + 1e-4 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[te] @ w + b > 0).long() == y[te]).float().mean())


def cue_diagnostics(model: RATE, n: int = 200, seed: int = 123) -> dict[str, float | list[float]]:
    """How the cue travels through ``model`` on ``n`` fresh corridors of K·N steps (eval mode):

    * ``p_correct``: mean probability of the right turn at the junction;
    * ``emb_norm`` / ``rtg_norm``: mean norm of the cue frame's and the return-to-go's token embedding;
      ``key_ball_dist``: distance between the mean key and mean ball cue embeddings;
    * ``grad_cue`` / ``grad_junction``: mean norm of the gradient of the right turn's log-probability
      with respect to the cue frame's embedding (segment 1) and the junction frame's (last segment);
      ``grad_memory``: with respect to the memory after each segment but the last;
    * ``probe_emb`` / ``probe_memory``: held-out accuracy of a linear key-vs-ball probe on the cue
      embedding and on the memory after each segment but the last.
    """
    K, N = model.cfg.context_length, model.cfg.sections
    b = image_cue_dataset(n, K * N, K * N, seed).batch(np.arange(n))
    cue = (b["action"][:, -1] == RIGHT).long()  # 0 key, 1 ball
    embedded: list[Tensor] = []

    def keep(_m: nn.Module, _i: object, out: Tensor) -> None:
        out.retain_grad()
        embedded.append(out)

    hook = model.enc.obs.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    state, memories = None, []
    try:
        for s in range(0, K * N, K):
            seg = {k: v[:, s:s + K] for k, v in b.items()}
            logits, state = model(seg["rtg"], seg["obs"], seg["action"], seg["valid"], state)
            if state.memory is not None:
                state.memory.retain_grad()
                memories.append(state.memory)
    finally:
        hook.remove()
        model.train(was_training)
    logp = torch.log_softmax(logits[:, -1], -1).gather(1, b["action"][:, -1:]).squeeze(1)
    logp.sum().backward()
    first, last = (e.view(n, K, -1) for e in (embedded[0], embedded[-1]))
    g_first, g_last = (e.grad.view(n, K, -1) for e in (embedded[0], embedded[-1]))
    emb = first[:, 0].detach()
    model.zero_grad(set_to_none=True)
    return {
        "p_correct": float(logp.detach().exp().mean()),
        "emb_norm": float(emb.norm(dim=-1).mean()),
        "rtg_norm": float(model.enc.rtg(b["rtg"][:, :1]).detach().norm(dim=-1).mean()),
        "key_ball_dist": float((emb[cue == 0].mean(0) - emb[cue == 1].mean(0)).norm()),
        "grad_cue": float(g_first[:, 0].norm(dim=-1).mean()),
        "grad_junction": float(g_last[:, -1].norm(dim=-1).mean()),
        "grad_memory": [float(m.grad.norm(dim=-1).mean()) for m in memories[:-1]],
        "probe_emb": linear_probe(emb, cue),
        "probe_memory": [linear_probe(m, cue) for m in memories[:-1]],
    }


# ------------------------------------------------------------------------------------------ training
def cue_model(mode: str, K: int, N: int, init: str = "he", seed: int = 0) -> RATE:
    """The small network the diagnostic trains: 2 layers, d 32, through the Minigrid encoder.

    mode 'RATE' (2 memory tokens, MRV, no cache: only the memory tokens can carry the cue) or 'DT' (one
    K-step context, no memory: the cue is out of reach after the first segment). init 'he' is the
    encoder's own; 'pytorch' re-initialises the image encoder with PyTorch's layer defaults (the first
    version's init)."""
    if mode not in ("RATE", "DT"):
        raise ValueError(f"mode must be RATE or DT, got {mode!r}")
    memory = dict(num_mem_tokens=2, n_head_ca=2, mrv_act="relu") if mode == "RATE" else \
        dict(num_mem_tokens=0, n_head_ca=0, mrv_act="no_act")
    torch.manual_seed(seed)
    model = RATE(ModelConfig(env="minigrid", model_mode="RATE", context_length=K, sections=N if mode == "RATE" else 1,
                             n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=32, skip_dec_ffn=True, mem_len=0,
                             dropout=0.0, **memory))
    if init == "pytorch":
        for m in model.enc.obs.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
    elif init != "he":
        raise ValueError(f"init must be 'he' or 'pytorch', got {init!r}")
    return model


def cue_floor(K: int, N: int) -> float:
    """Training loss of a cue-blind policy on K·N-step corridors: ln 2 at the one junction step, averaged
    over the last segment's K steps and then over the N segments (the trainer's averaging)."""
    return float(np.log(2) / (K * N))


def train_on_cue(model: RATE, N: int, run_dir: Path, epochs: int, n: int = 200, lr: float = 1e-3,
                 seed: int = 1) -> tuple[list[float], float]:
    """Train on ``n`` corridors of K·N steps with the project's trainer; return the per-step training
    losses and the success rate on 100 fixed evaluation corridors (argmax actions)."""
    K = model.cfg.context_length
    L = K * N
    data = image_cue_dataset(n, L, K * model.cfg.sections, seed=seed)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=lr, warmup_steps=10, seed=seed, num_workers=0, log_every=1)
    losses = LossLog()
    Trainer(model.train(), cfg, run_dir, {}, [data]).fit(progress=False, logger=losses)
    res = rollout(model, eval_envs(100, L), 1.0, L)
    return losses.values, float(res.infos["success"].mean())


class LossLog:
    """The trainer's logger for :func:`train_on_cue`: keeps the training loss of every optimizer step."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "losses/train_loss" in metrics:
            self.values.append(metrics["losses/train_loss"])
