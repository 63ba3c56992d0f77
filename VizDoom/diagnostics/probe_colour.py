"""Where a trained ViZDoom model loses the pillar's colour: linear probes on its features.

    python3 VizDoom/diagnostics/probe_colour.py runs/cpu/vizdoom/RATE/seed_1/checkpoints/last.pt

Runs the checkpoint's model (eval mode) over the first 90 steps of ``--episodes`` dataset episodes
(even index: red pillar) and fits a logistic-regression probe for the colour on a train split of the
episodes, reporting accuracy on the held-out rest (chance 0.5):

* ``obs_step0``: the observation embedding of the first frame, where the pillar fills the view — can the
  encoder tell the colours apart at all? Also for the same architecture freshly initialised (control).
* ``memory_after_segment_s``: RATE / RMT's memory tokens after segment s (the pillar is gone after step 22,
  inside segment 1) — does the memory carry the colour to later segments?
* with ``--rollout_segments S``, ``rollout_memory_after_segment_s`` for s = 1..S: the memory tokens after
  segment s of the model's own closed-loop episodes on the validation seeds (``--rollout_episodes``, sampled
  actions, a floor that does not hurt so every episode lasts S segments) — does the colour survive past the
  training window, where the dataset's 90-step episodes cannot show it?

Prints and writes JSON (``--out``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from RATE_model import checkpoint
from RATE_model.cli import run_main
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.data import uint8_to_float
from RATE_model.model import RATE
from RATE_model.rollout import rollout
from RATE_model.vector import GymVectorEnv
from VizDoom.get_data.generate_iter_data import DATA_DIR
from VizDoom.VizDoom_src.scenario import ScenarioConfig
from VizDoom.VizDoom_src.vizdoom_data import vizdoom_dataset
from VizDoom.VizDoom_src.vizdoom_env import TwoColorsEnv, is_red
from VizDoom.VizDoom_src.vizdoom_eval import ENV, TARGET_RETURN

NO_DAMAGE = ScenarioConfig(floor_special=0)  # nobody dies: every probed episode lasts all its segments


def probe_accuracy(x: Tensor, y: Tensor, train_frac: float = 0.8, steps: int = 300, wd: float = 1e-3) -> float:
    """Held-out accuracy of a logistic regression of ``y`` (bool [n]) on ``x`` [n, f] (standardised)."""
    x, n_train = x.detach(), int(len(x) * train_frac)
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    target = y[:n_train].float()

    def closure() -> Tensor:
        opt.zero_grad()
        logit = x[:n_train] @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target) + wd * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((((x[n_train:] @ w + b) > 0) == y[n_train:]).float().mean())


@torch.no_grad()
def features(model: RATE, batch: dict[str, Tensor], K: int, N: int) -> dict[str, Tensor]:
    """The probed features of one batch of 90-step windows."""
    obs = uint8_to_float(batch["obs"])
    out = {"obs_step0": model.enc.embed_obs(obs[:, :1])[:, 0]}
    state = None
    for s in range(N):
        seg = slice(s * K, (s + 1) * K)
        _, state = model(batch["rtg"][:, seg], obs[:, seg], batch["action"][:, seg], batch["valid"][:, seg], state)
        if state.memory is not None:
            out[f"memory_after_segment_{s + 1}"] = state.memory.flatten(1)
    return out


@torch.no_grad()
def rollout_memory(model: RATE, n_episodes: int, segments: int, batch_size: int) -> tuple[Tensor, Tensor]:
    """The memory tokens after each of the first ``segments`` segments of closed-loop episodes on the first
    ``n_episodes`` validation seeds, [n, segments, m·d], and whether each episode's pillar is red [n]."""
    K = model.cfg.context_length
    seeds = ENV.seeds(n_episodes, "validation")
    steps = K * segments + 1  # a segment's write slots run when the next segment's first step is taken
    gen = torch.Generator().manual_seed(0)
    memories = []
    for i in range(0, len(seeds), batch_size):
        with GymVectorEnv(partial(TwoColorsEnv, timeout=steps, scenario=NO_DAMAGE), seeds[i:i + batch_size]) as env:
            res = rollout(model, env, TARGET_RETURN, max_steps=steps, sample=True, generator=gen, keep_states=True)
        memories.append(torch.stack([st.memory.flatten(1).float() for st in res.states[:segments]], 1))
    return torch.cat(memories), torch.tensor([is_red(s) for s in seeds])


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data_dir", type=Path, default=DATA_DIR)
    p.add_argument("--episodes", type=int, default=1000, help="dataset episodes probed (first N)")
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--rollout_segments", type=int, default=0,
                   help="also probe the memory after each of this many segments of closed-loop episodes (RATE, RMT)")
    p.add_argument("--rollout_episodes", type=int, default=200, help="closed-loop episodes (validation seeds)")
    p.add_argument("--out", type=Path, help="write the accuracies here as JSON")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "batch_size", "rollout_episodes"))
    if args.rollout_segments < 0:
        raise ConfigError(f"--rollout_segments must be >= 0, got {args.rollout_segments}")
    torch.manual_seed(0)
    ckpt = checkpoint.load(args.checkpoint)
    cfg = checkpoint.model_config_of(ckpt, args.checkpoint)
    trained, fresh = RATE(cfg), RATE(cfg)
    trained.load_state_dict(ckpt["model"])
    trained.eval(), fresh.eval()
    if args.rollout_segments and not trained.m:
        raise ConfigError(f"--rollout_segments: the {cfg.model_mode} model of {args.checkpoint} has no memory tokens")
    K, N = cfg.context_length, cfg.sections
    data = vizdoom_dataset(args.data_dir, K * N, args.episodes, progress=True)  # reuses a bigger store
    table = data.epoch_windows(0, 0)
    table = table[table[:, 1] == 0]  # each episode's first window
    rng = np.random.default_rng(0)
    table = table[rng.permutation(len(table))]  # the split must mix colours and episodes
    feats: dict[str, list[Tensor]] = {}
    for i in range(0, len(table), args.batch_size):
        batch = data[table[i: i + args.batch_size]]
        for k, v in features(trained, batch, K, N).items():
            feats.setdefault(k, []).append(v)
        with torch.no_grad():  # control: the same architecture, untrained
            first = fresh.enc.embed_obs(uint8_to_float(batch["obs"][:, :1]))[:, 0]
        feats.setdefault("obs_step0_fresh_init", []).append(first)
    is_red = torch.from_numpy(table[:, 0] % 2 == 0)
    acc = {k: probe_accuracy(torch.cat(v), is_red) for k, v in feats.items()}
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "episodes": len(table),
                              "held_out": len(table) - int(len(table) * 0.8), "accuracy": acc}
    if args.rollout_segments:
        memory, red = rollout_memory(trained, args.rollout_episodes, args.rollout_segments, args.batch_size)
        order = torch.from_numpy(rng.permutation(len(red)))  # mix colours between the probe's splits
        memory, red = memory[order], red[order]
        for s in range(memory.shape[1]):
            acc[f"rollout_memory_after_segment_{s + 1}"] = probe_accuracy(memory[:, s], red)
        result["rollout_episodes"] = len(red)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return acc


if __name__ == "__main__":
    run_main(main)
