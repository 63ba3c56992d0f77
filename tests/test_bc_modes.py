"""The behaviour-cloning baselines ``--model_mode BC_MLP | BC_LSTM`` (RATE_model.bc): segment-wise training
equals step-by-step decoding, the LSTM carries its state across segments, both build on every env's encoders,
and on a tiny memory task the LSTM learns what the MLP cannot."""

from __future__ import annotations

import pytest
import torch

from RATE_model import RATE, ModelConfig
from RATE_model.encoders import ENCODERS
from RATE_model.rollout import Decoder
from RATE_model.trainer import action_loss
from tests.helpers import run_segments

BC = ("BC_MLP", "BC_LSTM")
SPACES = {"discrete": dict(obs_nvec=[2, 4, 0], n_actions=4, discrete=True),
          "continuous": dict(obs_nvec=[0, 0], n_actions=1, discrete=False, action_high=2.0)}


def bc_model(mode: str, space: str = "discrete", **kw: object) -> RATE:
    cfg = dict(env="popgym", model_mode=mode, context_length=4, sections=3, n_layer=2, n_head=2, d_model=16,
               d_head=8, d_inner=16, dropout=0.0, env_kwargs=SPACES[space])
    return RATE(ModelConfig(**{**cfg, **kw})).eval()


def popgym_batch(B: int, T: int, space: str) -> dict[str, torch.Tensor]:
    if space == "discrete":
        obs = torch.stack([torch.randint(0, 2, (B, T)).float(), torch.randint(0, 4, (B, T)).float(),
                           torch.randn(B, T)], -1)
        action = torch.randint(0, 4, (B, T))
    else:
        obs, action = torch.randn(B, T, 2), torch.rand(B, T, 1) * 4 - 2
    return {"obs": obs, "rtg": torch.randn(B, T, 1), "action": action, "valid": torch.ones(B, T, dtype=torch.bool)}


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("mode", BC)
def test_segments_equal_step_by_step_decoding(mode, space):
    torch.manual_seed(0)
    model, batch = bc_model(mode, space), popgym_batch(3, 12, space)
    with torch.no_grad():
        full = torch.cat(run_segments(model, batch), 1)
        dec, steps = Decoder(model, 3), []
        for t in range(12):
            steps.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]))
            dec.observe_action(batch["action"][:, t])
    assert full.shape == (3, 12, 4 if space == "discrete" else 1)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", BC)
def test_only_the_lstm_sees_earlier_segments_and_neither_sees_the_return(mode):
    torch.manual_seed(0)
    model, batch = bc_model(mode), popgym_batch(2, 12, "discrete")
    other = {k: v.clone() for k, v in batch.items()}
    other["obs"][:, 0, 1] = (other["obs"][:, 0, 1] + 1) % 4  # first segment's observation changed
    other["rtg"] = torch.randn_like(other["rtg"])
    with torch.no_grad():
        a, b = run_segments(model, batch)[2], run_segments(model, other)[2]  # the third segment's logits
    assert torch.equal(a, b) == (mode == "BC_MLP")
    same_obs = {**batch, "rtg": other["rtg"]}
    with torch.no_grad():
        assert torch.equal(torch.cat(run_segments(model, batch), 1), torch.cat(run_segments(model, same_obs), 1))


def test_lstm_state_is_the_memory_the_trainer_detaches():
    model = bc_model("BC_LSTM")
    batch = popgym_batch(2, 4, "discrete")
    _, state = model(batch["rtg"], batch["obs"], batch["action"], batch["valid"])
    assert state.memory.shape == (2, 2 * 2 + 1, 16) and state.cache is None  # (h, c) of 2 layers + last action
    assert bc_model("BC_MLP")(batch["rtg"], batch["obs"], batch["action"], batch["valid"])[1].memory is None
    assert not hasattr(model, "memory") or model.memory is None
    assert len(model.layers) == 0  # no transformer layers are built


@pytest.mark.parametrize("env", sorted(ENCODERS))
@pytest.mark.parametrize("mode", BC)
def test_bc_modes_run_on_every_environment(env, mode):
    cfg = ModelConfig(env=env, model_mode=mode, context_length=2, sections=1, n_layer=1, n_head=1, d_model=16,
                      d_head=8, d_inner=16)
    model = RATE(cfg).eval()
    spec = model.enc.spec
    obs = torch.rand(2, 2, *spec.obs_shape)
    action = torch.randint(0, spec.n_actions, (2, 2)) if spec.discrete else torch.rand(2, 2, spec.n_actions)
    logits, _ = model(torch.zeros(2, 2, 1), obs, action, torch.ones(2, 2, dtype=torch.bool))
    assert logits.shape == (2, 2, spec.n_actions)


def _accuracy_after_training(mode: str, steps: int = 40) -> float:
    """RepeatFirst in miniature: 6 steps of random cards 0..3, every action is the first card."""
    torch.manual_seed(0)
    model = bc_model(mode, context_length=3, sections=2, d_model=32, d_inner=32, n_layer=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)

    def batch(n: int) -> dict[str, torch.Tensor]:
        cards = torch.randint(0, 4, (n, 6), generator=gen)
        obs = torch.stack([torch.zeros(n, 6), cards.float(), torch.zeros(n, 6)], -1)
        return {"obs": obs, "rtg": torch.zeros(n, 6, 1), "action": cards[:, :1].expand(n, 6).clone(),
                "valid": torch.ones(n, 6, dtype=torch.bool)}

    for _ in range(steps):
        b = batch(64)
        loss = sum(action_loss(lo, b["action"][:, s:s + 3], b["valid"][:, s:s + 3])[0]
                   for lo, s in zip(run_segments(model, b), (0, 3), strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    b = batch(256)
    with torch.no_grad():
        pred = torch.cat(run_segments(model, b), 1).argmax(-1)
    return float((pred == b["action"]).float().mean())


def test_lstm_learns_a_tiny_memory_task_the_mlp_cannot():
    lstm, mlp = _accuracy_after_training("BC_LSTM"), _accuracy_after_training("BC_MLP")
    assert lstm > 0.95  # remembers the first card across the segment boundary
    assert mlp < 0.55  # sees only the current card: right at step 0 and by chance (1/4) after


def test_memory_noise_is_refused_for_bc_modes(tmp_path, capsys):
    from RATE_model.cli import run_main
    from TMaze_new.TMaze_new_src import train_tmaze

    with pytest.raises(SystemExit) as e:
        run_main(train_tmaze.main, ["--model_mode", "BC_LSTM", "--eval_memory_noise", "tokens", "--smoke",
                                    "--no_wandb", "--runs_dir", str(tmp_path), "--data_dir", str(tmp_path / "data")])
    assert e.value.code == 2 and "does not have" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any data or run folder is made
