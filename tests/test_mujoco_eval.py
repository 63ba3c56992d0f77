"""MuJoCo's evaluation protocol: both return-to-go modes per target, every episode, stepped by hand; the rollout
engine feeds a replayed episode what training feeds it (diagnostics/diagnose_eval.py); the behaviour-policy
handover; ``ENV`` rebuilds the protocol from a run's flags, and ``tools.evaluate`` reproduces a run's results."""

from __future__ import annotations

import argparse
import json
from functools import partial

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

from MuJoCo.MuJoCo_src.mujoco_data import mujoco_store  # noqa: E402
from MuJoCo.MuJoCo_src.mujoco_env import (  # noqa: E402
    make_env,
    normalised_score,
)
from MuJoCo.MuJoCo_src.mujoco_eval import ENV, evaluate  # noqa: E402
from RATE_model import RATE, envs  # noqa: E402
from RATE_model.config import ConfigError  # noqa: E402
from RATE_model.rollout import Decoder, rollout  # noqa: E402
from RATE_model.vector import GymVectorEnv  # noqa: E402
from tests.helpers import check_attention_tool  # noqa: E402
from tests.mujoco_helpers import (  # noqa: E402
    mujoco_config,
    one_thread,  # noqa: F401 (module-wide fixture)
    write_d4rl_file,
)


# ------------------------------------------------------------------------------------------ evaluation
def play_by_hand(model: RATE, seed: int, target: float, max_steps: int, reset: bool) -> tuple[float, int]:
    """One hopper episode of ``model`` stepped without the vector env: the evaluation protocol by hand."""
    env = make_env("hopper")
    obs, _ = env.reset(seed=seed)
    decoder, total, K = Decoder(model, 1), 0.0, model.cfg.context_length
    rtg = target / 1000
    with torch.no_grad():
        for t in range(max_steps):
            if reset and t % K == 0:
                rtg = target / 1000
            action = decoder.act_logits(torch.tensor([rtg]), torch.as_tensor(obs[None], dtype=torch.float32))
            decoder.observe_action(action)
            obs, reward, term, trunc, _ = env.step(action[0].numpy())
            total, rtg = total + reward, rtg - reward / 1000
            if term or trunc:
                break
    env.close()
    return total, t + 1


def test_evaluate_reports_both_modes_per_target_with_every_episode():
    torch.manual_seed(0)
    model = RATE(mujoco_config(context_length=4, sections=3).validate()).eval()
    with torch.no_grad():  # the return-to-go matters a lot: the two modes act differently
        model.enc.rtg.weight.mul_(300.0)
    m = evaluate(model, "hopper", n_episodes=2, max_steps=30, progress=False)
    assert m["targets"] == [3600.0] and m["modes"] == ["decreasing", "reset"] and m["episodes_n"] == 2
    keys = {f"{kind}_{mode}_t3600{sem}" for kind in ("return", "score") for mode in ("decreasing", "reset")
            for sem in ("", "_sem")}
    assert keys <= set(m)
    assert [(e["mode"], e["target"], e["seed"]) for e in m["episodes"]] == [
        ("decreasing", 3600.0, 1_000_000), ("decreasing", 3600.0, 1_000_001),
        ("reset", 3600.0, 1_000_000), ("reset", 3600.0, 1_000_001)]
    returns = {mode: np.array([e["return"] for e in m["episodes"] if e["mode"] == mode])
               for mode in ("decreasing", "reset")}
    for mode, r in returns.items():
        assert m[f"return_{mode}_t3600"] == pytest.approx(r.mean())
        assert m[f"score_{mode}_t3600"] == pytest.approx(normalised_score("hopper", r).mean())
        assert m[f"return_{mode}_t3600_sem"] == pytest.approx(r.std(ddof=1) / np.sqrt(2))
        for i, seed in enumerate((1_000_000, 1_000_001)):  # each episode again, stepped by hand
            total, steps = play_by_hand(model, seed, 3600.0, 30, reset=mode == "reset")
            assert r[i] == pytest.approx(total, rel=1e-5, abs=1e-6)
            assert steps > model.cfg.context_length  # the return-to-go was reset at least once
    assert not np.allclose(returns["decreasing"], returns["reset"], rtol=0, atol=1e-9)
    with torch.no_grad():  # a policy that ignores the return-to-go: both modes are the same
        model.enc.rtg.weight.zero_()
        model.enc.rtg.bias.zero_()
    m = evaluate(model, "hopper", n_episodes=2, max_steps=30, progress=False)
    assert m["return_decreasing_t3600"] == m["return_reset_t3600"]
    custom = evaluate(model, "hopper", n_episodes=1, max_steps=5, targets=(100.0, 200.0), modes=("reset",),
                      progress=False)
    assert custom["targets"] == [100.0, 200.0] and custom["modes"] == ["reset"]
    assert {"return_reset_t100", "return_reset_t200"} <= set(custom) and "return_decreasing_t100" not in custom


@pytest.mark.parametrize("mode", ("RATE", "DT"))
def test_evaluation_feeds_a_replayed_episode_what_training_feeds_it(mode, tmp_path):
    """The rollout engine playing back dataset episodes (target = each one's return) feeds the training
    windows' return-to-go and states at every step, across segment and window boundaries, and the model run
    as in training over the executed actions gives those actions."""
    from MuJoCo.diagnostics import diagnose_eval as diag

    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [9, 30, 17])
    store = mujoco_store(path, "hopper", tmp_path / "store")
    torch.manual_seed(0)
    model = RATE(mujoco_config(mode, mean=np.zeros(11), std=np.full(11, 2.0), context_length=4,
                               sections=3).validate()).eval()
    with torch.no_grad():
        model.enc.rtg.weight.mul_(30.0)  # the return-to-go moves the actions
    episodes = np.arange(3)
    got = diag.replay(model, store, episodes)
    assert got["steps"] == 9 + 30 + 17 and got["episodes"] == 3
    assert got["rtg_max_abs_diff"] < 1e-5 and got["obs_max_abs_diff"] == 0.0
    assert got["action_max_abs_diff"] < 1e-5
    errors = diag.teacher_forced(model, store, episodes)
    assert {k: v["steps"] for k, v in errors.items()} == {"step_0": 3, "steps_1_19": 8 + 19 + 16, "steps_20_59": 10}


class _Zeros:
    """A stand-in behaviour policy (SB3's predict) that always acts zero."""

    def predict(self, obs, deterministic=True):
        return np.zeros((len(obs), 3), np.float32), None


def test_handover_plays_the_behaviour_policy_first_then_the_model():
    from MuJoCo.diagnostics import diagnose_eval as diag

    torch.manual_seed(0)
    model = RATE(mujoco_config("RATE", context_length=4, sections=3).validate()).eval()
    seeds = [1_000_000, 1_000_001]
    with GymVectorEnv(partial(make_env, "hopper"), seeds, obs_scale=1.0) as venv:
        model_only = rollout(model, venv, 3.6, max_steps=15, reward_scale=1e-3)
    got = diag.handover(model, "hopper", seeds, 3600.0, _Zeros(), 0, max_steps=15)
    np.testing.assert_allclose(got["returns"], model_only.returns.round(1))
    zeros = diag.handover(model, "hopper", seeds, 3600.0, _Zeros(), 15, max_steps=15)
    by_hand = []
    for seed in seeds:
        env = make_env("hopper")
        env.reset(seed=seed)
        by_hand.append(sum(env.step(np.zeros(3))[1] for _ in range(15)))
    np.testing.assert_allclose(zeros["returns"], np.round(by_hand, 1))
    assert zeros["behaviour_steps"] == 15 and zeros["lengths"] == [15, 15]



# ------------------------------------------------------------------------------------------ ENV and tools.evaluate
def run_flags(**kw) -> argparse.Namespace:
    """The flags ENV.evaluate reads, as a train script parses them (config.yaml's values unless given)."""
    flags = dict(env_id=0, minari_dataset=None, rtg_mode="both", target_return=None, eval_episodes=10,
                 eval_max_steps=1000, eval_batch_size=None, val_episodes=None)
    return argparse.Namespace(**{**flags, **kw})


def test_env_rebuilds_the_protocol_from_a_runs_flags():
    assert envs.get("mujoco") is ENV and ENV.several_targets
    assert ENV.seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    assert ENV.seeds(2, "validation") == [2_000_000, 2_000_001]
    torch.manual_seed(0)
    model = RATE(mujoco_config(context_length=4, sections=3).validate()).eval()
    args = run_flags(env_id=6, rtg_mode="reset", target_return=[100.0, 200.0], eval_episodes=2, eval_max_steps=8,
                     eval_batch_size=1)
    got = ENV.evaluate(model, args)
    assert got == evaluate(model, "hopper", 2, 8, (100.0, 200.0), ("reset",), 1, progress=False)
    assert ENV.selection_score(got) == pytest.approx(np.mean([got["score_reset_t100"], got["score_reset_t200"]]))
    val = ENV.evaluate(model, run_flags(env_id=6, eval_max_steps=3), "validation")  # --val_episodes unset: 5
    assert val["episodes_n"] == 5 and val["modes"] == ["decreasing", "reset"] and val["targets"] == [3600.0]
    assert {e["seed"] for e in val["episodes"]} == set(ENV.seeds(5, "validation"))
    cheetah = ENV.evaluate(model_for("halfcheetah"), run_flags(eval_episodes=1, eval_max_steps=3))  # --env_id 0
    assert cheetah["targets"] == [6000.0, 12000.0] and "score_reset_t12000" in cheetah
    ENV.check_eval_flags(run_flags())
    with pytest.raises(ConfigError, match="--eval_max_steps must be <= 1000"):
        ENV.check_eval_flags(run_flags(eval_max_steps=1001))


def model_for(env: str) -> RATE:
    state_dim, act_dim = {"halfcheetah": (17, 6), "hopper": (11, 3)}[env]
    return RATE(mujoco_config(state_dim=state_dim, act_dim=act_dim, context_length=4, sections=3).validate()).eval()


def test_tools_evaluate_reproduces_a_runs_results_from_its_checkpoint(tmp_path):
    """A run trained on a hand-written hopper file (the --smoke sizes, no SAC data): ``python -m
    RATE_model.tools.evaluate CKPT`` rebuilds the protocol from the flags the checkpoint recorded and gives the
    run's metrics exactly; flags given to it replace the recorded ones."""
    from MuJoCo.train_rate_mujoco_ca import SMOKE, main
    from RATE_model.tools import evaluate as tool

    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [30, 40, 25, 35])
    small = [f"--{k}={v}" for k, v in SMOKE.items()]
    res = main([*small, "--env_id", "6", "--dataset_file", str(path), "--eval_max_steps", "20", "--seed", "1",
                "--no_wandb", "--runs_dir", str(tmp_path / "runs"), "--store_dir", str(tmp_path / "store")])
    metrics = res["runs"]["1"]["metrics"]
    ckpt = tmp_path / "runs" / "mujoco" / "RATE" / "seed_1" / "checkpoints" / "last.pt"
    rows = tool.main([str(ckpt), "--out", str(tmp_path / "eval.jsonl")])
    assert len(rows) == 1 and rows[0]["env"] == "mujoco" and "episodes" not in rows[0]
    full = json.loads((tmp_path / "eval.jsonl").read_text())
    assert {k: full[k] for k in metrics} == metrics  # every metric and episode, exactly
    check_attention_tool(ckpt, tmp_path / "attention", 12)
    other = tool.main([str(ckpt), "--target_return", "100,200", "--rtg_mode", "decreasing", "--eval_episodes", "1",
                       "--eval_max_steps", "5"])
    assert len(other) == 1 and other[0]["targets"] == [100.0, 200.0] and other[0]["modes"] == ["decreasing"]
    assert other[0]["episodes_n"] == 1 and "return_decreasing_t200" in other[0]
