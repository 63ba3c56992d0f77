"""The environment interface: a tiny environment defined here, registered by name, goes through training,
``tools.evaluate``, ``tools.step_loss`` and ``tools.attention`` with nothing else than its Environment object
(the recipe of docs/adding_an_env.md)."""

from __future__ import annotations

import argparse
import json
from functools import partial

import numpy as np
import pytest

from RATE_model import envs
from RATE_model.config import ConfigError, add_eval_flags, split_args
from RATE_model.data import consecutive, with_returns_to_go
from RATE_model.envs import Environment
from RATE_model.experiment import parse_train_args, run_experiment, run_seeds
from RATE_model.rollout import Episode, play_seeds
from RATE_model.store import EpisodeStore
from RATE_model.tools import attention, evaluate, step_loss


class CueVecEnv:
    """E episodes of ``length`` steps: the cue (+1 or -1, from the seed's parity) is shown at step 0 only; the
    last action must name it (1 for +1, 0 for -1): reward 1 and success, else 0. Observation [cue now, t/length]."""

    def __init__(self, length: int, seeds):
        self.length, self.cue = length, np.where(np.asarray(seeds) % 2 == 0, 1.0, -1.0)
        self.num_envs = len(self.cue)

    def reset(self):
        self.t = 0
        return self._obs()

    def _obs(self):
        now = self.cue if self.t == 0 else np.zeros_like(self.cue)
        return np.stack([now, np.full_like(self.cue, self.t / self.length)], 1).astype(np.float32)

    def step(self, actions):
        self.t += 1
        last = self.t == self.length
        success = (last & (np.asarray(actions) == (self.cue > 0))).astype(np.float32)
        done = np.full(self.num_envs, last)
        return self._obs(), success, done, {"success": success}

    def expert(self):
        return np.where(self.t == self.length - 1, (self.cue > 0).astype(np.int64), 0)


def expert_store(length: int, seeds) -> EpisodeStore:
    env = CueVecEnv(length, seeds)
    obs, act, rew = [env.reset()], [], []
    for _ in range(length):
        a = env.expert()
        o, r, _, _ = env.step(a)
        act.append(a)
        rew.append(r)
        obs.append(o)
    o, a, r = np.stack(obs[:-1], 1), np.stack(act, 1), np.stack(rew, 1)
    return EpisodeStore.from_episodes([with_returns_to_go({"obs": o[i], "action": a[i], "reward": r[i]})
                                       for i in range(len(seeds))])


class Cue(Environment):
    name, title, train_script = "cue", "Cue (tests/test_envs.py)", "tests/test_envs.py"
    validation_episodes = 4

    def add_eval_flags(self, parser):
        g = parser.add_argument_group("Cue evaluation")
        add_eval_flags(g, episodes="evaluation episodes", batch=None)
        g.add_argument("--length", type=int, help="episode length")

    def check_eval_flags(self, args):
        super().check_eval_flags(args)
        if args.length < 2:
            raise ConfigError(f"--length must be >= 2, got {args.length}")

    def evaluate(self, model, args, split="test"):
        res = play_seeds(model, partial(CueVecEnv, args.length), self.seeds(self.episodes(args, split), split), 1.0,
                         args.length, sample=False, memory_noise=self.memory_noise(args, split), info_keys=("success",))
        return {"success": float(res["success"].mean()), "return": float(res["return"].mean()),
                "episodes": [{"seed": int(s), "return": float(r)} for s, r in zip(res["seed"], res["return"],
                                                                                   strict=True)]}

    def selection_score(self, metrics):
        return metrics["success"]

    def attention_episode(self, seed, length, args):
        L = length or int(args["length"])
        return Episode(CueVecEnv(L, [seed]), 1.0, L, cue_steps=(0,))

    def heldout(self, args, window, episodes, data_dir=None):
        return consecutive(expert_store(int(args.length), 10_000 + np.arange(episodes)), window)

    def step_groups(self, data, table, actions):
        last = np.zeros(actions.shape, bool)
        last[:, -1] = True
        return {"decision": last, "before": ~last}


ENV = Cue()


def train(argv: list[str]) -> dict:
    """The whole train script of the env."""
    config = {"model_mode": "RATE", "context_length": 3, "sections": 2, "n_layer": 2, "n_head": 2, "d_model": 32,
              "d_head": 16, "d_inner": 32, "num_mem_tokens": 2, "n_head_ca": 2, "epochs": 30, "batch_size": 32,
              "lr": 3e-3, "warmup_steps": 5, "eval_episodes": 20, "length": 6, "dropout": 0.0}
    args, explicit = parse_train_args(ENV, "Cue", config, {}, argv)
    mc, tc = split_args(args, "generic")
    mc.env_kwargs = {"obs_shape": [2], "n_actions": 2, "discrete": True, "obs_nvec": [0, 0]}
    window = mc.context_length * mc.sections

    def build_stages():
        return [consecutive(expert_store(args.length, np.arange(64)), window)]

    return run_experiment(args, ENV, mc, tc, build_stages, run_seeds(args, explicit))


@pytest.fixture(scope="module")
def cue_run(tmp_path_factory):
    envs.register(ENV)
    root = tmp_path_factory.mktemp("cue")
    result = train(["--runs_dir", str(root), "--no_wandb", "--precision", "fp32", "--eval_every", "40"])
    yield root / "cue" / "RATE" / "seed_1", result
    envs.unregister("cue")


def test_registered_env_is_found_by_name_and_unknown_names_are_one_line():
    envs.register(ENV)
    try:
        assert envs.get("cue") is ENV and "cue" in envs.names()
    finally:
        envs.unregister("cue")
    with pytest.raises(envs.EnvError, match="unknown environment 'cue'; known: .*tmaze"):
        envs.get("cue")


def test_a_new_env_trains_through_its_interface_and_its_memory_carries_the_cue(cue_run):
    run, result = cue_run
    assert result["env"] == "cue" and json.loads((run / "config.json").read_text())["env"] == "cue"
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    assert metrics["success"] == 1.0  # the cue at step 0 decides the action of step 5, one segment later
    assert [e["seed"] for e in metrics["episodes"]] == ENV.seeds(20)


def test_tools_evaluate_reproduces_the_runs_metrics_exactly(cue_run, capsys):
    run, _ = cue_run
    recorded = json.loads((run / "results.json").read_text())
    for ckpt, metrics in (("last.pt", recorded["metrics"]), ("best.pt", recorded["best_on_validation"]["metrics"])):
        out = evaluate.main([str(run / "checkpoints" / ckpt), "--out", str(run / "eval.jsonl")])
        short = {k: v for k, v in metrics.items() if k != "episodes"}
        assert len(out) == 1 and {k: out[0][k] for k in short} == short
        assert json.loads((run / "eval.jsonl").read_text())["episodes"] == metrics["episodes"]
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["env"] == "cue" and "episodes" not in line
    other = evaluate.main([str(run / "checkpoints" / "last.pt"), "--eval_episodes", "3", "--length", "8"])
    assert other[0]["split"] == "test" and 0.0 <= other[0]["success"] <= 1.0


def test_tools_evaluate_bad_flags_are_one_line(cue_run, tmp_path):
    run, _ = cue_run
    with pytest.raises(ConfigError, match="--length must be >= 2"):
        evaluate.main([str(run / "checkpoints" / "last.pt"), "--length", "1"])
    with pytest.raises(ConfigError, match="trained on cue"):
        evaluate.main([str(run / "checkpoints" / "last.pt"), "--env", "tmaze"])
    with pytest.raises(SystemExit):
        evaluate.main([str(run / "checkpoints" / "last.pt"), "--eval_lengths", "9"])  # another env's flag


def test_tools_step_loss_splits_the_loss_by_the_envs_step_groups(cue_run):
    run, _ = cue_run
    (res,) = step_loss.main([str(run / "checkpoints" / "last.pt"), "--episodes", "16"])
    groups = res["groups"]
    assert res["env"] == "cue" and res["windows"] == 16 and res["window"] == 6
    assert groups["decision"]["steps"] == 16 and groups["before"]["steps"] == 16 * 5
    assert groups["decision"]["accuracy"] == 1.0  # the model uses the cue: no ln 2 left at the decision
    assert groups["all"]["steps"] == groups["decision"]["steps"] + groups["before"]["steps"]


def test_tools_attention_draws_a_new_env_through_its_interface(cue_run, tmp_path):
    run, _ = cue_run
    summary = attention.main([str(run / "checkpoints" / "last.pt"), "--seed", "0", "-o", str(tmp_path)])
    assert summary["steps"] == 6 and summary["cue_steps"] == [0] and summary["segments"] == 2
    assert (tmp_path / "attention_share.csv").is_file() and summary["return"] == 1.0


def test_run_args_lay_only_the_given_flags_over_the_recorded_ones():
    given = argparse.Namespace(eval_episodes=None, length=9)
    args = evaluate.run_args({"eval_episodes": 20, "length": 6, "lr": 1e-3}, given, {"length"})
    assert (args.eval_episodes, args.length, args.lr) == (20, 9, 1e-3)


def test_memory_noise_through_tools_evaluate_takes_the_cue_away(cue_run):
    """The cue crosses one segment boundary in the memory tokens only (no cache): noise in their place leaves
    the decision to chance, and the recorded run's own evaluation stays intact."""
    run, _ = cue_run
    ckpt = str(run / "checkpoints" / "last.pt")
    (intact,) = evaluate.main([ckpt, "--eval_episodes", "40"])
    (noised,) = evaluate.main([ckpt, "--eval_episodes", "40", "--eval_memory_noise", "tokens"])
    assert intact["success"] == 1.0 and 0.2 <= noised["success"] <= 0.8


def test_tools_evaluate_help_works_without_a_checkpoint(capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--help"])
    assert e.value.code == 0 and "checkpoint" in capsys.readouterr().out
