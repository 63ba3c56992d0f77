"""Atari: the DQN-replay reader (layout, episode boundaries, add_count / invalid_range, missing and truncated
checkpoints), Decision Transformer's sampling, the episode store and frame stacking, the evaluation
env's preprocessing, the generator -> reader round trip, the paper README's lines with --smoke."""

from __future__ import annotations

import gzip
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

from Atari import train_rate_atari as train  # noqa: E402
from Atari.Atari_src.atari_data import (  # noqa: E402
    PAD,
    Checkpoint,
    atari_dataset,
    atari_store,
    buffer_of_episodes,
    default_buffers,
    dt_plan,
    element_file,
    replay_logs,
    write_checkpoint,
)
from Atari.Atari_src.atari_env import FIRE, MAX_STEPS, ROM_FRAME_LIMIT, FireReset, make_env  # noqa: E402
from Atari.Atari_src.atari_eval import ENV, RANDOM_HUMAN, gamer_normalised  # noqa: E402
from Atari.Atari_src.expert import make_policy, play_episode  # noqa: E402
from Atari.get_data import collect_replay  # noqa: E402
from RATE_model.config import ConfigError  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.tools import evaluate  # noqa: E402
from tests.helpers import check_attention_tool, cli_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The Atari lines of the paper README, verbatim.
README_LINES = [
    f"python3 Atari/train_rate_atari.py --game {game} --num_mem_tokens 15 --mem_len 360 --n_head_ca 1 "
    f"--mrv_act '{act}' --skip_dec_ffn --seed 123"
    for game, act in (("Breakout", "relu"), ("Qbert", "relu"), ("Seaquest", "relu"), ("Pong", "leaky_relu"))
]


def episode(T: int, tag: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """An episode whose frames all hold ``tag`` + 1 (never the all-zero padding) and whose rewards are ``tag``."""
    return {"obs": np.full((T, 84, 84), tag + 1, np.uint8), "action": rng.integers(0, 4, T).astype(np.int32),
            "reward": np.full(T, float(tag), np.float32)}


def write_run(root: Path, lengths: list[list[int]], game: str = "Pong") -> list[list[dict[str, np.ndarray]]]:
    """Checkpoints 0.. of ``root/<game>/1`` holding episodes of the given lengths (tag = 10·checkpoint + i)."""
    rng = np.random.default_rng(0)
    out = []
    for b, ls in enumerate(lengths):
        eps = [episode(T, 10 * b + i, rng) for i, T in enumerate(ls)]
        write_checkpoint(replay_logs(root, game), b, **buffer_of_episodes(eps))
        out.append(eps)
    return out


def tags(store) -> list[int]:
    return [int(store.episode(i)["obs"][0, 0, 0]) - 1 for i in range(store.n_episodes)]


# ------------------------------------------------------------------------------------------ layout
def test_checkpoint_files_are_dopamines_layout(tmp_path):
    write_run(tmp_path, [[5, 7]])
    logs = replay_logs(tmp_path, "Pong")
    names = sorted(p.name for p in logs.iterdir())
    assert names == sorted(["$store$_observation_ckpt.0.gz", "$store$_action_ckpt.0.gz", "$store$_reward_ckpt.0.gz",
                            "$store$_terminal_ckpt.0.gz", "add_count_ckpt.0.gz", "invalid_range_ckpt.0.gz"])
    with gzip.open(element_file(logs, "observation", 0)) as f:
        obs = np.load(f)
    with gzip.open(element_file(logs, "terminal", 0)) as f:
        term = np.load(f)
    assert obs.shape == (2 * PAD + 12, 84, 84) and obs.dtype == np.uint8
    assert not obs[:PAD].any() and not obs[PAD + 5:2 * PAD + 5].any()  # 3 zero transitions before each episode
    assert term.dtype == np.uint8 and np.flatnonzero(term).tolist() == [PAD + 4, 2 * PAD + 11]
    with gzip.open(element_file(logs, "add_count", 0)) as f:
        assert f.read()[:1] == b"\x80"  # a pickled int, as dopamine writes it


def test_reader_splits_at_terminals_and_drops_the_padding(tmp_path):
    eps = write_run(tmp_path, [[5, 7, 4]])
    store = atari_store(tmp_path, "Pong", progress=False)
    assert store.lengths.tolist() == [5, 7, 4] and tags(store) == [0, 1, 2]
    got = store.episode(1)
    np.testing.assert_array_equal(got["action"], eps[0][1]["action"])
    np.testing.assert_array_equal(got["reward"], eps[0][1]["reward"])
    np.testing.assert_allclose(got["rtg"], 1.0 * np.arange(7, 0, -1))  # whole-trajectory return-to-go


def test_reader_orders_a_wrapped_buffer_by_add_count_and_drops_partial_trajectories(tmp_path):
    rng = np.random.default_rng(0)
    buf = buffer_of_episodes([episode(6, i, rng) for i in range(4)])
    n = len(buf["terminal"])
    shift = 11  # storage rotated: the oldest transition sits at add_count % n = 11
    rolled = {k: np.roll(v, shift, 0) for k, v in buf.items()}
    rolled["terminal"][(n - 1 + shift) % n] = 0  # the newest trajectory is still running (no terminal yet) ...
    write_checkpoint(replay_logs(tmp_path, "Pong"), 0, **rolled, add_count=3 * n + shift)
    ckpt = Checkpoint(replay_logs(tmp_path, "Pong"), 0)
    assert ckpt.first == shift
    store = atari_store(tmp_path, "Pong", progress=False)
    # ... and the oldest one may have lost its start to the cursor: only trajectories 1 and 2 are whole
    assert tags(store) == [1, 2] and store.lengths.tolist() == [6, 6]


def test_a_buffer_filled_exactly_once_keeps_its_first_trajectory(tmp_path):
    write_run(tmp_path, [[3, 4]])
    assert Checkpoint(replay_logs(tmp_path, "Pong"), 0).episodes.tolist() == [[0, 6], [6, 13]]


def test_invalid_range_must_match_add_count(tmp_path):
    logs = replay_logs(tmp_path, "Pong")
    write_run(tmp_path, [[5]])
    with gzip.open(element_file(logs, "invalid_range", 0), "wb") as f:
        np.save(f, np.arange(3, 8))
    with pytest.raises(DataError, match="invalid_range.*does not match add_count"):
        Checkpoint(logs, 0)


def test_missing_checkpoint_is_one_line_naming_it(tmp_path):
    write_run(tmp_path, [[5], [5], [5]])
    logs = replay_logs(tmp_path, "Pong")
    element_file(logs, "reward", 1).unlink()
    with pytest.raises(DataError, match=r"checkpoint 1 .*\$store\$_reward_ckpt\.1\.gz is missing"):
        atari_store(tmp_path, "Pong", progress=False)
    with pytest.raises(DataError, match=r"checkpoint 7 .*observation_ckpt\.7\.gz is missing"):
        atari_store(tmp_path, "Pong", buffers=[0, 7], progress=False)


def test_truncated_or_corrupt_checkpoint_is_one_line_naming_it(tmp_path):
    write_run(tmp_path, [[50, 60]])
    logs = replay_logs(tmp_path, "Pong")
    obs = element_file(logs, "observation", 0)
    obs.write_bytes(obs.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"observation_ckpt\.0\.gz is truncated or corrupt"):
        atari_store(tmp_path, "Pong", progress=False)
    element_file(logs, "terminal", 0).write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"terminal_ckpt\.0\.gz is truncated or corrupt"):
        Checkpoint(logs, 0)
    assert not (logs.parent / "store_0").exists()  # nothing half-built left behind


def test_nan_reward_and_wrong_shapes_are_refused(tmp_path):
    logs = replay_logs(tmp_path, "Pong")
    write_run(tmp_path, [[5]])
    with gzip.open(element_file(logs, "reward", 0), "wb") as f:
        np.save(f, np.full(PAD + 5, np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        atari_store(tmp_path, "Pong", progress=False)
    write_run(tmp_path, [[5]])
    with gzip.open(element_file(logs, "observation", 0), "wb") as f:
        np.save(f, np.zeros((PAD + 5, 64, 64), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 \(8, 84, 84\)"):
        atari_store(tmp_path, "Pong", progress=False)


def test_actions_outside_the_games_set_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    ep = episode(5, 0, rng)
    ep["action"][2] = 17  # a Seaquest action in Pong's folder
    write_checkpoint(replay_logs(tmp_path, "Pong"), 0, **buffer_of_episodes([ep]))
    with pytest.raises(DataError, match=r"outside Pong's 0\.\.5"):
        atari_store(tmp_path, "Pong", progress=False)


def test_no_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="collect_replay.py --game Qbert"):
        atari_store(tmp_path, "Qbert", progress=False)


# ------------------------------------------------------------------------------------------ sampling
def test_dt_plan_takes_consecutive_trajectories_per_visit_until_enough():
    lengths = [np.full(25, 10), np.full(3, 10), np.full(40, 10)]
    chosen, total = dt_plan(lengths, 400, 10, np.random.default_rng(0))
    assert total >= 400 and total - 100 < 400  # stops after the visit that reached the target
    for ids, ls in zip(chosen, lengths, strict=True):
        assert ids == list(range(len(ids))) and len(ids) <= len(ls)
        assert len(ids) % 10 == 0 or len(ids) == len(ls)  # whole visits, or the buffer ran out
    # every trajectory is taken once when the target exceeds the data; exhausted buffers are not redrawn
    chosen, total = dt_plan(lengths, 10**9, 10, np.random.default_rng(1))
    assert [len(c) for c in chosen] == [25, 3, 40] and total == 680


def test_dt_plan_draws_buffers_uniformly():
    lengths = [np.ones(10**6, np.int64)] * 4
    chosen, _ = dt_plan(lengths, 4000, 10, np.random.default_rng(0))
    visits = np.array([len(c) / 10 for c in chosen])
    assert visits.sum() == 400 and (abs(visits - 100) < 35).all()


def test_default_buffers_are_the_references_0_to_49(tmp_path):
    logs = tmp_path
    for n in (0, 1, 2):
        element_file(logs, "observation", n).touch()
    assert default_buffers(logs) == [0, 1, 2]
    for n in range(3, 52):
        element_file(logs, "observation", n).touch()
    assert default_buffers(logs) == list(range(50))


def test_store_is_reused_and_rebuilt_when_settings_change(tmp_path, capsys, monkeypatch):
    write_run(tmp_path, [[5, 6, 7, 8], [5, 6]])
    a = atari_store(tmp_path, "Pong", per_visit=1, n_transitions=12, progress=False)
    mtime = (a.path / "meta.json").stat().st_mtime_ns
    with monkeypatch.context() as m:  # reuse reads no checkpoint contents (only file sizes and times)
        m.setattr(Checkpoint, "__init__", lambda *_: pytest.fail("a reused store re-read the checkpoints"))
        b = atari_store(tmp_path, "Pong", per_visit=1, n_transitions=12, progress=False)
    assert (b.path / "meta.json").stat().st_mtime_ns == mtime and b.n_steps == a.n_steps
    c = atari_store(tmp_path, "Pong", per_visit=1, n_transitions=10**6, progress=False)
    assert "rebuilding" in capsys.readouterr().err and c.n_steps == 37


def test_frame_stack_repeats_the_first_frame_at_trajectory_starts_as_the_eval_env_does(tmp_path):
    rng = np.random.default_rng(0)
    eps = [{"obs": rng.integers(1, 255, (9, 84, 84), dtype=np.uint8), "action": np.zeros(9, np.int32),
            "reward": np.zeros(9, np.float32)}]
    write_checkpoint(replay_logs(tmp_path, "Pong"), 0, **buffer_of_episodes(eps))
    data = atari_dataset(atari_store(tmp_path, "Pong", progress=False), 4)
    batch = data.to_device(data[np.array([[0, 0], [0, 2]])])
    obs = batch["obs"]  # [2 windows, 4 steps, 4 frames, 84, 84] in [0, 1]
    frames = eps[0]["obs"] / 255.0
    assert obs.shape == (2, 4, 4, 84, 84) and float(obs.max()) <= 1.0
    np.testing.assert_allclose(obs[0, 0].numpy(), np.stack([frames[0]] * 4), atol=1e-6)  # t=0: first frame x4
    np.testing.assert_allclose(obs[0, 1].numpy(), frames[[0, 0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(obs[1, 3].numpy(), frames[2:6], atol=1e-6)  # oldest first, newest last
    env = make_env("Pong")
    first, _ = env.reset(seed=0)
    assert all(np.array_equal(first[0], first[i]) for i in range(4))  # the evaluation env starts the same way
    nxt, *_ = env.step(0)
    assert np.array_equal(nxt[:3], first[1:]) and nxt.shape == (4, 84, 84)


class _Replay:
    """A scripted-policy stand-in that plays a fixed list of actions."""

    def __init__(self, actions):
        self.actions = list(actions)

    def reset(self):
        self.t = 0

    def __call__(self, _ram):
        self.t += 1
        return self.actions[self.t - 1]


@pytest.mark.parametrize("game", ("Breakout", "Pong"))
def test_data_frames_and_stacks_equal_the_eval_envs_on_the_same_emulator_frames(game, tmp_path):
    """The generator's frames (its data env, sticky actions off for the comparison) and the evaluation env's
    stacks, played from the same seed with the same actions: every evaluation stack is the store's stack of
    the data frames, the first FIRE (which the evaluation env presses itself) aside."""
    from Atari.Atari_src.expert import play_episode

    rng = np.random.default_rng(1)
    actions = [FIRE, *rng.integers(0, 4, 60).tolist()]
    episode = play_episode(make_env(game, data=True, sticky=0.0), _Replay(actions), 0.0, 7, rng, len(actions))
    assert episode["obs"].shape == (len(actions), 84, 84) and episode["action"].tolist() == actions
    after_fire = {"obs": episode["obs"][1:], "action": episode["action"][1:], "reward": episode["reward"][1:]}
    write_checkpoint(replay_logs(tmp_path, game), 0, **buffer_of_episodes([after_fire]))
    data = atari_dataset(atari_store(tmp_path, game, progress=False), len(actions) - 1)
    stacks = (data.to_device(data[np.array([[0, 0]])])["obs"][0] * 255).round().to(torch.uint8).numpy()
    env = make_env(game, sticky=0.0, noop_max=0)
    obs, _ = env.reset(seed=7)  # FIRE pressed by the env
    for t, a in enumerate(actions[1:]):
        np.testing.assert_array_equal(obs, stacks[t], err_msg=f"{game} step {t}")
        obs, *_ = env.step(a)
    assert len({stacks[t].tobytes() for t in range(len(stacks))}) > 10  # the frames do change


# ------------------------------------------------------------------------------------------ evaluation env
class _Recorder:
    """A stand-in env recording the actions it is stepped with."""

    def __init__(self):
        self.actions, self.observation_space, self.action_space = [], None, None

    def reset(self, **_):
        return np.zeros(1), {}

    def step(self, a):
        self.actions.append(a)
        return np.ones(1), 0.0, False, False, {}


def test_fire_at_reset():
    import gymnasium as gym

    inner = _Recorder()
    env = FireReset.__new__(FireReset)
    gym.Wrapper.__init__(env, gym.make("ALE/Pong-v5"))
    env.env = inner
    obs, _ = env.reset(seed=3)
    assert inner.actions == [FIRE] and obs[0] == 1.0


def test_eval_env_preprocessing_noops_and_no_terminal_on_life_loss():
    env = make_env("Breakout")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    starts = {make_env("Breakout").reset(seed=s)[0].tobytes() for s in range(6)}
    assert len(starts) > 1  # up to 30 no-ops: the start depends on the seed
    lives = env.unwrapped.ale.lives()
    for _ in range(2000):  # never moves after the FIRE: loses a life, and the episode goes on
        _, reward, terminated, truncated, info = env.step(0)
        assert not truncated
        if info["lives"] < lives:
            break
    assert info["lives"] == lives - 1 and not terminated
    assert make_env("Breakout").unwrapped.ale.getInt("max_num_frames_per_episode") == MAX_STEPS * 4


def test_pong_ends_before_its_rom_resets_the_score():
    """Pong's ROM resets its score 65 212 frames into an episode, and ALE paid the jump as one reward (+19 on
    this seed) before the game stalled for the rest of the episode: the scripted policy rallies that long.
    Pong episodes now end (truncated) at 65 000 frames, every reward a point; the evaluation env too."""
    env = make_env("Pong", data=True)
    ep = play_episode(env, make_policy("Pong"), 0.05, 3, np.random.default_rng(0), MAX_STEPS, keep=False)
    assert len(ep["reward"]) == 16_250 and env.unwrapped.ale.getEpisodeFrameNumber() == ROM_FRAME_LIMIT["Pong"]
    assert set(ep["reward"].tolist()) == {-1.0, 0.0, 1.0}
    assert make_env("Pong").unwrapped.ale.getInt("max_num_frames_per_episode") == ROM_FRAME_LIMIT["Pong"]


def test_rewards_are_not_clipped():
    env = make_env("Qbert", data=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    rewards = set()
    for _ in range(1500):
        _, r, term, trunc, _ = env.step(int(rng.integers(6)))
        rewards.add(r)
        if term or trunc:
            env.reset()
    assert 25.0 in rewards  # a Qbert cube: a clipped stream would hold only 0 and 1


def test_data_env_has_sticky_actions_and_single_frames():
    env = make_env("Pong", data=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84) and env.unwrapped.ale.getFloat("repeat_action_probability") == 0.25


def test_gamer_normalised_score_uses_the_reference_constants():
    for game, (low, high) in RANDOM_HUMAN.items():
        assert gamer_normalised(game, low) == pytest.approx(0.0)
        assert gamer_normalised(game, high) == pytest.approx(100.0)
    assert gamer_normalised("Breakout", 30.5) == pytest.approx(100.0)
    assert RANDOM_HUMAN["Pong"] == (-20.7, 14.6) and RANDOM_HUMAN["Qbert"] == (163.9, 13455.0)


# ------------------------------------------------------------------------------------------ command lines
def argv_of(line: str) -> list[str]:
    words = shlex.split(line)
    return words[next(i for i, w in enumerate(words) if w.endswith(".py")) + 1:]


@pytest.mark.parametrize("line", README_LINES)
def test_readme_line_parses_verbatim(line):
    args, explicit = train.parse_args(argv_of(line))
    assert args.num_mem_tokens == 15 and args.mem_len == 360 and args.n_head_ca == 1 and args.skip_dec_ffn
    assert args.seed == 123 and {"num_mem_tokens", "seed"} <= explicit and not args.smoke
    assert args.target_return is None and ENV.target(args) == {"Breakout": 90, "Qbert": 14_000, "Seaquest": 1_150,
                                                               "Pong": 20}[args.game]


def test_one_target_return_per_run_and_old_records():
    args, _ = train.parse_args(["--game", "Breakout", "--target_return", "180"])
    assert args.target_return == (180.0,) and ENV.target(args) == 180.0
    with pytest.raises(ConfigError, match="target_return takes one value"):
        train.parse_args(["--game", "Breakout", "--target_return", "90,180"])
    assert ENV.target({"game": "Pong", "target_return": None}) == 20.0 and ENV.target({"game": "Qbert"}) == 14_000.0
    assert ENV.target({"game": "Pong", "target_return": 5}) == 5.0  # recorded before the flag took a list
    assert ENV.seeds(2) == [1_000_000, 1_000_001] and ENV.seeds(1, "validation") == [2_000_000]


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    for bad, says in ((["--game", "Tetris"], "--game"), (["--game", "Pong", "--buffers", "a-b"], "--buffers"),
                      (["--game", "Pong", "--eval_max_steps", "0"], "--eval_max_steps"),
                      (["--game", "Pong", "--target_return", "5,6"], "--target_return")):
        assert says in cli_error(train.main, [*bad, "--runs_dir", str(tmp_path)], capsys)


def test_without_data_the_error_says_every_way_to_get_it(tmp_path, capsys):
    line = cli_error(train.main, ["--game", "Seaquest", "--data_dir", str(tmp_path / "nowhere"), "--runs_dir",
                                  str(tmp_path)], capsys)
    assert "collect_replay.py --game Seaquest" in line and "wandb_config" in line


# ------------------------------------------------------------------------------------------ generator
TINY = dict(transitions=300, checkpoints=2, max_episode_steps=60, epsilon=0.05, seed=0, workers=1, progress=False)


def test_generator_round_trip_through_the_reader(tmp_path):
    stats = collect_replay.collect("Breakout", tmp_path, **TINY)
    assert stats["checkpoints_written"] == 2 and stats["transitions"] >= 300
    logs = replay_logs(tmp_path, "Breakout")
    assert json.loads((logs / "meta.json").read_text())["sticky"] == 0.25
    store = atari_store(tmp_path, "Breakout", n_transitions=10**6, progress=False)
    arrays, info = collect_replay.collect_checkpoint(0, "Breakout", 150, 0.05, 0, 60)  # the same checkpoint again
    ends = np.flatnonzero(arrays["terminal"]) + 1
    starts = np.concatenate([[0], ends[:-1]]) + PAD
    assert info["episodes"] == len(ends) and store.n_episodes > len(ends)  # checkpoint 1 follows
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        ep = store.episode(i)
        np.testing.assert_array_equal(ep["obs"], arrays["observation"][s:e])
        np.testing.assert_array_equal(ep["action"], arrays["action"][s:e])
        np.testing.assert_array_equal(ep["reward"], arrays["reward"][s:e])
    assert store.lengths.max() <= 60 and store.n_steps == stats["transitions"] - PAD * store.n_episodes


def test_generator_resumes_and_refuses_other_settings(tmp_path, capsys):
    collect_replay.collect("Pong", tmp_path, **TINY)
    again = collect_replay.collect("Pong", tmp_path, **TINY)
    assert again["checkpoints_written"] == 0 and again["skipped"] == 2
    with pytest.raises(ValueError, match="collected with"):
        collect_replay.collect("Pong", tmp_path, **{**TINY, "epsilon": 0.5})
    line = cli_error(collect_replay.main, ["--game", "Pong", "--epsilon", "2", "--out_dir", str(tmp_path / "x")],
                     capsys)
    assert line == "error: --epsilon must be in [0, 1], got 2.0"


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_runs_with_smoke(line, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "atari_data"  # smoke data per game, made by the command itself
    runs = tmp_path_factory.mktemp("runs")
    res = train.main(argv_of(line) + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir", str(data)])
    game = argv_of(line)[1]
    metrics = res["runs"]["123"]["metrics"]
    assert metrics["episodes_n"] == 2 and np.isfinite(metrics["return"]) and np.isfinite(metrics["normalised"])
    saved = json.loads((runs / "atari" / "RATE" / "results.json").read_text())
    assert saved["model_config"]["env_kwargs"] == {"n_actions": {"Breakout": 4, "Qbert": 6, "Seaquest": 18,
                                                                  "Pong": 6}[game]}
    assert (replay_logs(data / "smoke", game) / "$store$_observation_ckpt.1.gz").exists()


def test_rollout_encodes_each_frame_once_across_segments():
    from RATE_model.config import ModelConfig
    from RATE_model.model import RATE
    from RATE_model.rollout import rollout

    cfg = ModelConfig(env="atari", context_length=4, sections=2, n_layer=1, n_head=2, d_model=16, d_head=8,
                      d_inner=16, num_mem_tokens=2, mem_len=8, n_head_ca=1, env_kwargs={"n_actions": 18})
    model = RATE(cfg.validate())
    frames = []
    model.enc.obs.register_forward_hook(lambda m, inp, out: frames.append(inp[0].shape[0]))

    class Frames:  # 3 episodes of random stacks, 11 steps (segments of 4: two boundaries)
        num_envs = 3

        def reset(self):
            return np.random.default_rng(0).random((3, 4, 84, 84), np.float32)

        def step(self, actions):
            assert actions.shape == (3,) and actions.max() < 18
            return self.reset(), np.zeros(3), np.zeros(3, bool), {}

    res = rollout(model, Frames(), 20.0, max_steps=11, sample=True, generator=torch.Generator().manual_seed(0))
    assert res.lengths.tolist() == [11] * 3 and sum(frames) == 3 * 11  # one encoding per frame, none repeated


def test_data_root_comes_from_the_flag_then_wandb_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, _ = train.parse_args(["--game", "Pong"])
    (tmp_path / "wandb_config.yaml").write_text("wandb_api: x\natari:\n  data: '/mnt/dqn_replay/'\n")
    assert train.data_root(args) == Path("/mnt/dqn_replay/")
    args, _ = train.parse_args(["--game", "Pong", "--data_dir_prefix", str(tmp_path / "mine")])
    assert train.data_root(args) == tmp_path / "mine"


def test_pretrained_encoder_of_frame_stacks_starts_a_frozen_run(tmp_path):
    from RATE_model.tools import pretrain_encoder

    data = tmp_path / "atari_data"
    collect_replay.collect("Breakout", data / "smoke", progress=False, **train.SMOKE_DATA)  # what --smoke makes
    enc = tmp_path / "encoder.pt"
    rows = pretrain_encoder.main(["--env", "atari", "--game", "Breakout", "--data_dir", str(data / "smoke"),
                                  "--num_steps", "400", "--heldout_episodes", "1", "--steps", "4", "--eval_every", "2",
                                  "--batch_size", "8", "--d_model", "32", "--precision", "fp32", "--pixel_norm",
                                  "--save_encoder", str(enc)])
    assert [r["step"] for r in rows] == [2, 4] and 0 <= rows[-1]["heldout_accuracy"] <= 1
    saved = torch.load(enc, weights_only=True)
    assert saved["info"]["script"] == "RATE_model.tools.pretrain_encoder" and saved["info"]["env"] == "atari"
    assert saved["info"]["last_evaluation"] == rows[-1]
    assert saved["obs_encoder"]["0.1.weight"].shape[1] == 4  # the first convolution reads 4-frame stacks
    assert saved["obs_encoder"]["pixel_mean"].shape == (4, 84, 84)  # --pixel_norm: fitted, saved with the weights
    runs = tmp_path / "runs"
    res = train.main(argv_of(README_LINES[0]) + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir",
                                                 str(data), "--init_encoder", str(enc), "--freeze_encoder"])
    assert np.isfinite(res["runs"]["123"]["metrics"]["return"])
    weights = torch.load(runs / "atari" / "RATE" / "seed_123" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k, v in saved["obs_encoder"].items():  # trained on top of the pretrained encoder, which stayed fixed
        assert torch.equal(weights[f"enc.obs.{k}"], v), k
    last = runs / "atari" / "RATE" / "seed_123" / "checkpoints" / "last.pt"
    out = tmp_path / "eval.jsonl"
    lines = evaluate.main([str(last), "--eval_episodes", "2", "--eval_max_steps", "30", "--target_return", "5,90",
                           "--eval_greedy", "--out", str(out)])
    assert [(r["target_return"], r["episodes_n"]) for r in lines] == [(5.0, 2), (90.0, 2)]
    full = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seed"] for e in full[0]["episodes"]] == [1_000_000, 1_000_001]
    assert full[0]["return"] == lines[0]["return"]
    assert all(0 < e["steps"] <= 30 for e in full[0]["episodes"])
    assert evaluate.main([str(last), "--eval_episodes", "2", "--eval_max_steps", "30", "--target_return", "5",
                          "--eval_greedy"]) == lines[:1]  # the most likely action: the same episodes again
    with pytest.raises(ConfigError, match="eval_max_steps"):
        evaluate.main([str(last), "--eval_max_steps", "27001"])
    recorded = json.loads((last.parent.parent / "results.json").read_text())["metrics"]
    again = evaluate.main([str(last)])[0]  # the run's own protocol, rebuilt from its recorded flags
    assert {k: v for k, v in again.items() if k in recorded} == {k: v for k, v in recorded.items() if k != "episodes"}
    check_attention_tool(last, tmp_path / "attention", 12)
    r = subprocess.run([sys.executable, "-m", "RATE_model.tools.pretrain_encoder", "--env", "atari", "--game",
                        "Breakout", "--data_dir", str(data / "smoke"), "--num_steps", "400", "--heldout_episodes", "99",
                        "--save_encoder", str(tmp_path / "x.pt")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "leaves none of the" in r.stderr
    assert not (tmp_path / "x.pt").exists()
