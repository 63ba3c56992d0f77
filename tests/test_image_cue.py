"""The image-cue T-Maze (MinigridMemory/diagnostics/image_cue.py): Minigrid frames, the task's rules,
the image encoder's initialisation, and the controlled learning test of issue 9 — RATE carries a one-frame
image cue across segments, a DT whose context ends after the cue stays at chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("minigrid")

from MinigridMemory.diagnostics import image_cue as ic  # noqa: E402
from MinigridMemory.MinigridMemory_src.minigrid_env import FORWARD, LEFT, RIGHT  # noqa: E402
from RATE_model.encoders import build_encoders  # noqa: E402


def test_frames_differ_only_where_the_cue_is():
    f = ic.frames()
    cue = f["cue"]
    assert cue.dtype == np.uint8 and cue.shape[0] == 2 and cue.shape[2:] == (3, 84, 84) and cue.shape[1] >= 4
    diff = (cue[0] != cue[1]).any(1)  # [V, 84, 84]: key vs ball in the same view
    assert diff.any(axis=(1, 2)).all(), "every view shows the cue"
    assert diff.mean() < 0.1, "key and ball frames differ only in the object's tile"
    assert not np.array_equal(f["hallway"], f["junction"])
    assert not any(np.array_equal(f["hallway"], c) for c in cue.reshape(-1, 3, 84, 84))


def test_expert_episodes_and_env_rules():
    eps = ic.expert_episodes(4, 6)
    for i, ep in enumerate(eps):
        cue = i % 2
        assert ep["obs"].shape == (6, 3, 84, 84)
        assert (ep["action"][:-1] == FORWARD).all() and ep["action"][-1] == (LEFT if cue == ic.KEY else RIGHT)
        assert ep["reward"].tolist() == [0] * 5 + [1] and (ep["rtg"] == 1).all()
        assert np.array_equal(ep["obs"][1], ep["obs"][4])  # no cue after t = 0
    env = ic.ImageCueVecEnv(3, np.array([ic.KEY, ic.BALL, ic.KEY, ic.BALL]), np.zeros(4, int))
    obs = env.reset()
    assert obs.shape == (4, 3, 84, 84) and obs.dtype == np.float32 and 0 <= obs.min() and obs.max() <= 1
    assert np.array_equal(obs[0] * 255, ic.frames()["cue"][ic.KEY, 0].astype(np.float32))
    for _ in range(2):
        _, r, done, _ = env.step(np.array([LEFT, LEFT, FORWARD, FORWARD]))
        assert not done.any() and not r.any()
    _, r, done, info = env.step(np.array([LEFT, RIGHT, RIGHT, FORWARD]))
    assert done.all() and r.tolist() == [1, 1, 0, 0] and info["success"].tolist() == [1, 1, 0, 0]


def test_image_encoder_starts_at_the_scale_of_the_other_tokens():
    """He initialisation: on Minigrid frames the image token is as large as the return-to-go token and
    key vs ball are far apart; PyTorch's layer defaults shrank both by more than an order of magnitude."""
    torch.manual_seed(0)
    enc = build_encoders("minigrid", 64)
    cue = torch.as_tensor(ic.frames()["cue"][:, 0]).float() / 255  # key, ball in the same view
    rtg = enc.rtg(torch.ones(1, 1)).norm()

    def scale(obs_enc: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            e = obs_enc(cue)
        return float(e.norm(dim=-1).mean()), float((e[0] - e[1]).norm())

    he_norm, he_dist = scale(enc.obs)
    assert he_norm > 0.2 * rtg
    for m in enc.obs.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
    default_norm, default_dist = scale(enc.obs)
    assert he_norm > 5 * default_norm and he_dist > 5 * default_dist


def test_diagnostics_report_gradients_and_probes():
    model = ic.cue_model("RATE", 2, 2, seed=0)
    d = ic.cue_diagnostics(model, n=40)
    assert 0 < d["p_correct"] < 1 and d["grad_cue"] > 0 and d["grad_junction"] > 0
    assert len(d["grad_memory"]) == 1 and d["grad_memory"][0] > 0 and len(d["probe_memory"]) == 1
    assert 0 <= d["probe_emb"] <= 1 and d["emb_norm"] > 0 and d["key_ball_dist"] > 0
    assert not any(p.grad is not None for p in model.parameters())
    # a DT has no memory: nothing to report for it but the embedding and the direct gradient
    assert ic.cue_diagnostics(ic.cue_model("DT", 2, 2), n=20)["grad_memory"] == []


def test_rate_carries_an_image_cue_across_segments_and_a_short_context_dt_cannot(tmp_path):
    """Corridor of 2 segments of K = 3: the key-or-ball frame at t = 0 decides the turn at t = 5. RATE (memory
    tokens only, no cache) learns it; a DT with a 3-step context never sees the cue at the junction."""
    K, N, seed = 3, 2, 4
    rate = ic.cue_model("RATE", K, N, seed=seed)
    losses, rate_success = ic.train_on_cue(rate, N, tmp_path / "rate", epochs=60, seed=seed)
    dt = ic.cue_model("DT", K, N, seed=seed)
    dt_losses, dt_success = ic.train_on_cue(dt, N, tmp_path / "dt", epochs=25, seed=seed)
    floor = ic.cue_floor(K, N)
    assert rate_success >= 0.95 and np.mean(losses[-20:]) < floor / 4
    assert 0.35 <= dt_success <= 0.65 and np.mean(dt_losses[-20:]) > floor / 2
