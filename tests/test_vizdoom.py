"""ViZDoom-Two-Colors: generated scenario, env rules, expert, episode files, loader, vector env, train-script
commands (the paper README's lines with --smoke), notebook."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

vzd = pytest.importorskip("vizdoom")

from RATE_model.checkpoint import load_model  # noqa: E402
from RATE_model.config import ConfigError, split_args  # noqa: E402
from RATE_model.data import DataError  # noqa: E402
from RATE_model.encoders import image_encoder  # noqa: E402
from RATE_model.pretrain import FramePolicy, Frames, frame_bc  # noqa: E402
from RATE_model.store import EpisodeStore  # noqa: E402
from RATE_model.tools import evaluate, measure, pretrain_encoder, step_loss  # noqa: E402
from RATE_model.vector import GymVectorEnv  # noqa: E402
from tests.helpers import check_attention_tool  # noqa: E402
from VizDoom.diagnostics import probe_colour  # noqa: E402
from VizDoom.get_data.generate_iter_data import collect, episode_path, episode_seeds  # noqa: E402
from VizDoom.VizDoom_src import train_vizdoom as train  # noqa: E402
from VizDoom.VizDoom_src import vizdoom_eval  # noqa: E402
from VizDoom.VizDoom_src.expert import (  # noqa: E402
    Expert,
    expert_action,
    expert_episode,
    swap_colours,
    visible_action,
)
from VizDoom.VizDoom_src.scenario import ScenarioConfig, build_wad, scenario_path  # noqa: E402
from VizDoom.VizDoom_src.vizdoom_data import load_episode, vizdoom_dataset  # noqa: E402
from VizDoom.VizDoom_src.vizdoom_env import (  # noqa: E402
    FORWARD,
    LEFT,
    LEFT_FORWARD,
    N_ACTIONS,
    OBS_SHAPE,
    PICKUP_KEYS,
    RIGHT_FORWARD,
    TwoColorsEnv,
    is_red,
    time_bin,
)
from VizDoom.VizDoom_src.vizdoom_eval import right_shares  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "VizDoom" / "VizDoom_notebooks" / "generate_iter_data.ipynb"

# The ViZDoom lines of the paper README, verbatim: RATE, DT, RMT, TrXL and "Run experiment".
README_LINES = [
    "python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'RATE' --arch_mode 'TrXL' --ckpt_folder 'RATE' "
    "--text 'RATE' --nmt 5 --mem_len 300 --n_head_ca 2 --mrv_act 'relu' --skip_dec_attn",
    "python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'DT' --arch_mode 'TrXL' --ckpt_folder 'DT' "
    "--text 'DT' --nmt 0 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'RATE' --arch_mode 'TrXL' --ckpt_folder 'RMT' "
    "--text 'RMT' --nmt 5 --mem_len 0 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'RATE' --arch_mode 'TrXL' --ckpt_folder 'TrXL' "
    "--text 'TrXL' --nmt 0 --mem_len 270 --n_head_ca 0 --mrv_act 'no_act'",
    "python3 VizDoom/VizDoom_src/train_vizdoom.py --model_mode 'RATE' --arch_mode 'TrXL' --ckpt_folder 'RATE_ckpt' "
    "--text 'my_comment' --nmt 5 --mem_len 300 --n_head_ca 2 --mrv_act 'relu' --skip_dec_ffn",
]


@pytest.fixture(scope="module")
def env():
    e = TwoColorsEnv(privileged=True)
    yield e
    e.close()


def wait(env: TwoColorsEnv, steps: int) -> None:
    """Let ``steps`` agent steps pass without moving (no such action among the five)."""
    for _ in range(steps):
        env.game.make_action([0, 0, 0], env.frame_skip)


# ---------------------------------------------------------------- scenario


def test_scenario_generation_is_deterministic_and_cached(tmp_path):
    assert build_wad() == build_wad()
    a, b = scenario_path(cache_dir=tmp_path), scenario_path(cache_dir=tmp_path)
    assert a == b and a.read_bytes() == build_wad() and a.read_bytes()[:4] == b"PWAD"
    other = scenario_path(ScenarioConfig(pillar_tics=60), cache_dir=tmp_path)
    assert other != a and len(list(tmp_path.glob("*.wad"))) == 2
    with pytest.raises(ValueError, match="heal"):
        ScenarioConfig(heal=0)


def test_pillar_visible_at_start_and_gone_after_45_tics():
    e = TwoColorsEnv(privileged=True)
    try:
        e.game.close()  # the labels buffer (objects on screen) must be enabled before init
        e.game.set_labels_buffer_enabled(True)
        e.game.init()
        for seed, name in ((0, "RedPillar"), (1, "GreenPillar")):
            _, info = e.reset(seed=seed)
            on_screen = [lab.object_name for lab in e.game.get_state().labels]
            assert name in on_screen and info["state"]["pillar"] is not None
            x, y, _ = info["state"]["player"]
            px, py = info["state"]["pillar"]
            assert (px, py - y) == (x, 320.0)  # straight ahead of the player, who faces north
            wait(e, 21)  # 42 tics: still there
            assert e.privileged_state()["pillar"] is not None
            wait(e, 2)  # 46 tics: removed
            assert e.privileged_state()["pillar"] is None
            assert name not in [lab.object_name for lab in e.game.get_state().labels]
    finally:
        e.close()


def test_colour_and_item_positions_follow_the_seed(env):
    assert [is_red(s) for s in range(4)] == [True, False, True, False]
    o1, i1 = env.reset(seed=4)
    o2, i2 = env.reset(seed=4)
    assert i1["is_red"] == 1.0 and np.array_equal(o1, o2) and i1["state"]["items"] == i2["state"]["items"]
    assert set(i1["state"]["items"]) == {"RedHeal", "GreenHurt"}
    assert all(len(v) == 10 for v in i1["state"]["items"].values())
    _, i3 = env.reset(seed=6)
    assert i3["state"]["items"]["RedHeal"] != i1["state"]["items"]["RedHeal"]
    _, i4 = env.reset(seed=5)
    assert i4["is_red"] == 0.0 and set(i4["state"]["items"]) == {"GreenHeal", "RedHurt"}


def test_items_alternate_every_30_tics(env):
    _, info = env.reset(seed=0)
    wait(env, 22)  # 44 tics: nothing spawned after the start
    counts = {k: len(v) for k, v in env.privileged_state()["items"].items()}
    assert counts == {"RedHeal": 10, "GreenHurt": 10}
    wait(env, 2)  # tic 45: one of the pillar's colour
    counts = {k: len(v) for k, v in env.privileged_state()["items"].items()}
    assert counts == {"RedHeal": 11, "GreenHurt": 10}
    wait(env, 15)  # tic 75: one of the other colour
    counts = {k: len(v) for k, v in env.privileged_state()["items"].items()}
    assert counts == {"RedHeal": 11, "GreenHurt": 11}


def _pickup(env: TwoColorsEnv, seed: int, target: str, max_steps: int = 400) -> tuple[float, float, float, dict]:
    """Drain health below 75, then walk to the nearest ``target`` item; returns (health before, health after,
    reward, info) of the step that picked it up."""
    env.reset(seed=seed)
    wait(env, 48)  # health 100 -> 68 on the damaging floor
    state = env.privileged_state()
    env.health = env.game.get_game_variable(vzd.GameVariable.HEALTH)  # wait() bypassed step()
    rng = np.random.default_rng(0)
    for _ in range(max_steps):
        n_before, health_before = len(state["items"].get(target, [])), env.health
        steer = {**state, "items": {"RedHeal": state["items"].get(target, [])}}  # the expert heads for ``target``
        _, reward, terminated, _, info = env.step(expert_action(steer, True, rng))
        state = info["state"]
        if len(state["items"].get(target, [])) < n_before:
            return health_before, info["health"], reward, info
        assert not terminated
    raise AssertionError(f"no {target} picked up in {max_steps} steps")


def test_matching_item_heals_25_and_pays_1(env):
    before, after, reward, info = _pickup(env, 0, "RedHeal")
    assert after - before in (25, 17)  # 25, minus 8 when the floor hurt in the same step
    assert reward == pytest.approx(1.0 + 0.02)
    assert (info["good"], info["bad"]) == (1.0, 0.0)


def test_wrong_item_damages_25_and_pays_nothing(env):
    before, after, reward, info = _pickup(env, 1, "RedHurt")  # green pillar: red items hurt
    assert before - after in (25, 33)
    assert reward == pytest.approx(0.02)
    assert (info["good"], info["bad"]) == (0.0, 1.0)


def test_expert_beats_random_on_both_colours(env):
    def mean_return(policy, seeds, steps=600):
        out = []
        for s in seeds:
            rng = np.random.default_rng(s)
            _, info = env.reset(seed=s)
            total = 0.0
            for _ in range(steps):
                a = policy(info, rng)
                _, r, term, trunc, info = env.step(a)
                total += r
                if term or trunc:
                    break
            out.append(total)
        return np.mean(out)

    def expert(info, rng):
        return expert_action(info["state"], bool(info["is_red"]), rng, epsilon=0.0)

    def random(_, rng):
        return int(rng.integers(5))

    for seeds in ((10, 12, 14), (11, 13, 15)):  # red, green
        e, r = mean_return(expert, seeds), mean_return(random, seeds)
        assert e > 12.0 > 7.0 > r, (seeds, e, r)


def test_swapped_colours_change_the_experts_target(env):
    _, info = env.reset(seed=10)  # red pillar
    state = info["state"]
    swapped = swap_colours(state)
    assert swapped["items"]["GreenHeal"] == state["items"]["GreenHurt"]
    assert swapped["items"]["RedHurt"] == state["items"]["RedHeal"] and swapped["player"] == state["player"]
    differ = 0
    for _ in range(30):
        plain = np.random.default_rng(0)
        a = expert_action(info["state"], True, plain)
        differ += a != expert_action(swap_colours(info["state"]), False, plain)
        _, _, _, _, info = env.step(a)
    assert differ > 0


def test_measure_reports_every_policy_per_colour(capsys):
    argv = ["--env", "vizdoom", "--episodes", "2", "--eval_max_steps", "20", "--epsilon", "0"]
    out = measure.main([*argv, "--workers", "1"])
    assert [m["policy"] for m in out] == ["visible", "privileged", "random"]
    for m in out:
        assert m["episodes"] == 2 and m["length"] == 20.0 and m["red"] == 0.5
        assert m["return_red"] == pytest.approx(0.4) and {"return_green", "right_share", "right_share_red"} <= set(m)
    assert out[0]["colour_dependent_steps"] > 0 and out[1]["colour_dependent_steps"] > 0
    assert out[2]["colour_dependent_steps"] == 0.0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == out  # one JSON line per policy
    two = measure.main([*argv, "--policies", "privileged", "--workers", "2"])  # two workers: one's numbers
    assert [{k: v for k, v in m.items() if k != "steps_per_s"} for m in (two[0], out[1])] == 2 * [
        {k: v for k, v in out[1].items() if k != "steps_per_s"}]
    (noisy,) = measure.main([*argv, "--policies", "visible", "--workers", "1", "--target_noise", "300",
                             "--target_hold", "5"])
    assert (noisy["flags"]["target_noise"], noisy["flags"]["target_hold"]) == (300.0, 5)
    for bad, flag in ((["--epsilon", "1.5"], "--epsilon"), (["--target_noise", "-1"], "--target_noise"),
                      (["--policies", "visible,oracle"], "unknown policy 'oracle'")):
        with pytest.raises(ConfigError, match=flag):
            measure.main(["--env", "vizdoom", *bad])


# ---------------------------------------------------------------- the visible expert

NORTH = (0.0, 0.0, 90.0)  # the player at the origin facing north (+y)


def test_visible_expert_ignores_what_is_not_drawn_and_follows_what_is():
    ahead_right = {"player": NORTH, "objects": [("RedHeal", 300.0, 300.0)]}  # 45° to the right
    assert visible_action(ahead_right, red=True) == RIGHT_FORWARD
    # the privileged expert turns for a closer item behind the player; the visible one never sees it
    state = {"player": NORTH, "pillar": None, "items": {"RedHeal": [(300.0, 300.0), (0.0, -60.0)], "GreenHurt": []}}
    assert expert_action(state, True, np.random.default_rng(0)) != RIGHT_FORWARD
    for behind in ((0.0, -60.0), (-200.0, -400.0)):  # moving an item that is not drawn changes nothing
        state["items"]["RedHeal"][1] = behind
        assert visible_action(ahead_right, red=True) == RIGHT_FORWARD
    moved = {"player": NORTH, "objects": [("RedHeal", -300.0, 300.0)]}  # the drawn item moves to the left
    assert visible_action(moved, red=True) == LEFT_FORWARD
    straight = {"player": NORTH, "objects": [("RedHeal", 0.0, 300.0)]}
    assert visible_action(straight, red=True) == FORWARD
    # a wrong-colour item on the straight path makes it veer; items are told apart by colour only
    blocked = {"player": NORTH, "objects": [("RedHeal", 0.0, 300.0), ("GreenHurt", 5.0, 100.0)]}
    assert visible_action(blocked, red=True) != FORWARD
    assert visible_action(blocked, red=False) == visible_action(
        {"player": NORTH, "objects": [("GreenHurt", 5.0, 100.0)]}, red=False)


def test_visible_expert_remembers_the_pillar_and_searches():
    expert = Expert("visible")

    def act(objects):
        return expert.act({"view": {"player": NORTH, "objects": objects}})

    both = [("RedHeal", -300.0, 300.0), ("GreenHurt", 300.0, 300.0)]
    a, other, dependent = act([*both, ("GreenPillar", 0.0, 320.0)])
    assert (a, other, dependent) == (RIGHT_FORWARD, LEFT_FORWARD, True) and expert.red is False
    assert act(both) == (RIGHT_FORWARD, LEFT_FORWARD, True)  # pillar gone: colour remembered
    assert act([("RedHeal", -300.0, 300.0)])[0] == LEFT_FORWARD  # search, turning while walking
    assert act([("RedHeal", 0.0, 100.0)])[0] == LEFT  # not onto a wrong one
    fresh = Expert("visible")  # no pillar seen yet: nothing depends on the colour
    a, other, dependent = fresh.act({"view": {"player": NORTH, "objects": both}})
    assert fresh.red is None and a == other and not dependent
    with pytest.raises(ValueError, match="visible, privileged"):
        Expert("oracle")


def test_target_noise_varies_the_right_colour_item_only():
    # two red items ahead-left and ahead-right at the same cost, a green one straight ahead
    objects = [("RedPillar", 0.0, 320.0), ("RedHeal", -300.0, 300.0), ("RedHeal", 300.0, 300.0),
               ("GreenHurt", 0.0, 400.0)]

    def run(**kw):
        expert = Expert("visible", rng=np.random.default_rng(5), **kw)
        return [expert.act({"view": {"player": NORTH, "objects": objects}}) for _ in range(200)]

    plain = run()
    assert len(set(plain)) == 1  # no noise: always the same (cheapest) item
    noisy = run(target_noise=300.0, target_hold=10)
    assert noisy == run(target_noise=300.0, target_hold=10)  # a function of the seed
    actions = [a for a, _, _ in noisy]
    assert set(actions) == {LEFT_FORWARD, RIGHT_FORWARD}  # either red item, never the green one ahead
    assert all(len(set(actions[i:i + 10])) == 1 for i in range(0, 200, 10))  # one draw per 10 steps
    assert all(other == FORWARD and dep for _, other, dep in noisy)  # the other colour: the green item
    for bad in ({"target_noise": -1.0}, {"target_hold": 0}):
        with pytest.raises(ValueError, match="target_noise"):
            Expert("visible", **bad)
    with pytest.raises(ValueError, match="visible expert"):
        Expert("privileged", target_noise=10.0)


def test_view_lists_only_objects_in_front(env):
    e = TwoColorsEnv(visible=True)
    try:
        for seed in (0, 7):
            _, info = e.reset(seed=seed)
            _, full = env.reset(seed=seed)
            x, y, angle = info["view"]["player"]
            assert (x, y, angle) == pytest.approx(full["state"]["player"])
            drawn = [(n, ox, oy) for n, ox, oy in info["view"]["objects"] if not n.endswith("Pillar")]
            every = {(n, ox, oy) for n, pts in full["state"]["items"].items() for ox, oy in pts}
            assert drawn and set(drawn) <= every and len(drawn) < len(every)
            bearings = [abs((np.degrees(np.arctan2(oy - y, ox - x)) - angle + 180) % 360 - 180) for _, ox, oy in drawn]
            assert max(bearings) < 60.0  # the screen spans ±53°
            assert "state" not in info
    finally:
        e.close()


def test_same_seed_same_episode_for_both_experts():
    from VizDoom.get_data.generate_iter_data import collect_one
    for expert, eps in (("visible", 0.0), ("privileged", 0.1)):
        a, _ = collect_one(3, n_steps=25, epsilon=eps, seed=0, expert=expert)
        b, _ = collect_one(3, n_steps=25, epsilon=eps, seed=0, expert=expert)
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
        assert a["colour_dependent"].dtype == bool and a["colour_dependent"].any()
        if expert == "visible":  # no noise: the action taken is the noise-free one
            assert np.array_equal(a["colour_dependent"], a["action"] != a["action_other_colour"])
    noisy = [collect_one(3, n_steps=40, epsilon=0.0, seed=0, target_noise=400.0, target_hold=5)[0]
             for _ in range(2)]
    assert all(np.array_equal(noisy[0][k], noisy[1][k]) for k in noisy[0])  # the target noise follows the seed
    plain = collect_one(3, n_steps=40, epsilon=0.0, seed=0)[0]
    assert not np.array_equal(noisy[0]["action"], plain["action"])  # it heads for other items
    assert np.array_equal(noisy[0]["colour_dependent"], noisy[0]["action"] != noisy[0]["action_other_colour"])


def test_pickups_are_counted_per_time_bin():
    assert [time_bin(t) for t in (0, 89, 90, 499, 500, 2099)] == ["0_90", "0_90", "90_500", "90_500", "500_", "500_"]
    # a hand-made evaluation: two red episodes, one green; pickups (step, right?) per episode
    episodes = [(True, [(5, True), (60, False), (95, True), (700, True)]),
                (True, [(10, True), (450, False), (600, False)]),
                (False, [(20, False), (120, True)])]
    pickups = {k: np.zeros(3) for k in PICKUP_KEYS}
    for i, (_, events) in enumerate(episodes):
        for t, right in events:
            for key in ("good" if right else "bad", f"{'good' if right else 'bad'}_{time_bin(t)}"):
                pickups[key][i] += 1
    shares = right_shares(pickups, np.array([r for r, _ in episodes]))
    assert shares["right_pickups_red"] == pytest.approx(4 / 7)
    assert shares["right_pickups_red_0_90"] == pytest.approx(2 / 3)
    assert shares["right_pickups_red_90_500"] == pytest.approx(1 / 2)
    assert shares["right_pickups_red_500_"] == pytest.approx(1 / 2)
    assert shares["right_pickups_green_0_90"] == 0.0 and shares["right_pickups_green_90_500"] == 1.0
    assert np.isnan(shares["right_pickups_green_500_"])


def test_env_counts_pickups_in_the_bin_of_their_step(env):
    before, after, reward, info = _pickup(env, 0, "RedHeal")
    assert info["good"] == 1.0 and sum(info[f"good_{b}"] for b in ("0_90", "90_500", "500_")) == 1.0
    assert info[f"good_{time_bin(env.t - 1)}"] == 1.0


def test_colour_probe_separates_only_what_is_there():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2 == 0
    x = torch.randn(400, 16, generator=g)
    assert probe_colour.probe_accuracy(x, y) < 0.7  # no signal: near chance on the held-out fifth
    x[:, 3] += 6.0 * y  # one informative feature (Bayes accuracy 0.999)
    assert probe_colour.probe_accuracy(x, y) > 0.9


# ---------------------------------------------------------------- data


def test_expert_episode_format(env):
    ep = expert_episode(env, seed=3, n_steps=30, epsilon=0.1, noise_seed=0)
    assert ep["obs"].shape == (30, *OBS_SHAPE) and ep["obs"].dtype == np.uint8
    assert ep["action"].dtype == np.int64 and set(np.unique(ep["action"])) <= set(range(5))
    assert ep["done"].tolist() == [False] * 29 + [True] and not ep["is_red"].any()
    assert np.all(ep["reward"] >= 0.02 - 1e-6)


def test_generated_files_resume_and_loader(tmp_path):
    stats = collect(tmp_path, n_episodes=4, n_steps=12, epsilon=0.1, workers=1, progress=False)
    assert stats["written"] == 4 and stats["red"] == 2
    assert collect(tmp_path, n_episodes=4, n_steps=12, epsilon=0.1, workers=1, progress=False)["written"] == 0
    with pytest.raises(ValueError, match="collected with"):
        collect(tmp_path, n_episodes=4, n_steps=13, epsilon=0.1, workers=1, progress=False)
    ep = load_episode(episode_path(tmp_path, 1))
    assert set(ep) == {"obs", "action", "reward", "done", "is_red"} and ep["obs"].shape == (12, *OBS_SHAPE)
    assert not ep["is_red"].any() and is_red(episode_seeds(0, 1)[0]) is False
    data = vizdoom_dataset(tmp_path, window=12, progress=False)
    assert len(data) == 4
    b = data.batch([1])
    assert b["obs"].dtype.is_floating_point and float(b["obs"].max()) <= 1.0
    assert b["rtg"][0, 0, 0].item() == pytest.approx(float(ep["reward"].sum()), rel=1e-5)
    assert np.array_equal(b["action"][0].numpy(), ep["action"])
    with pytest.raises(ValueError, match="collected with"):  # another expert setting: never mixed in
        collect(tmp_path, n_episodes=4, n_steps=12, epsilon=0.1, workers=1, progress=False, target_noise=50.0)
    with pytest.raises(ValueError, match="visible expert"):
        collect(tmp_path / "p", n_episodes=1, n_steps=5, expert="privileged", target_noise=50.0, workers=1)
    stats = collect(tmp_path / "noisy", n_episodes=1, n_steps=5, target_noise=50.0, workers=1, progress=False)
    meta = json.loads((tmp_path / "noisy" / "meta.json").read_text())
    assert stats["written"] == 1
    assert (meta["target_noise"], meta["target_hold"], meta["expert"]) == (50.0, 10, "visible_v1")


def test_bad_episode_files_are_one_line_errors(tmp_path):
    collect(tmp_path, n_episodes=2, n_steps=5, workers=1, progress=False)
    bad = episode_path(tmp_path, 1)
    ep = dict(np.load(bad))
    ep["action"] = ep["action"] + 7
    np.savez(bad, **ep)
    with pytest.raises(DataError, match="outside 0..4"):
        load_episode(bad)
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="episode_000001"):
        load_episode(bad)
    with pytest.raises(DataError, match="generate_iter_data"):
        vizdoom_dataset(tmp_path / "missing", window=5)


def test_frames_find_the_colour_dependent_steps_right_after_a_pickup(tmp_path):
    # two hand-made episodes: pickups (reward >= 1) at steps 1, 4, 5 of the first, 0 and 5 of the second
    rewards = [[0.02, 1.02, 0.02, 0.02, 1.02, 1.02], [1.02, 0.02, 0.02, 0.02, 0.02, 1.02]]
    dependent = [[1, 1, 1, 0, 1, 0], [1, 1, 0, 1, 1, 1]]  # step 5 of the first follows a pickup, not dependent
    for i, (r, d) in enumerate(zip(rewards, dependent, strict=True)):
        T = len(r)
        np.savez(episode_path(tmp_path, i), obs=np.zeros((T, *OBS_SHAPE), np.uint8), action=np.zeros(T, np.int64),
                 reward=np.array(r, np.float32), done=np.arange(T) == T - 1, is_red=np.full(T, i == 0),
                 colour_dependent=np.array(d, bool))
    # episode 0: step 2 follows the pickup at 1 (dependent), step 5 follows 4 (not); episode 1: step 1 follows 0,
    # and its step 0 follows nothing (the pickup at the first episode's last step is another episode)
    frames = vizdoom_eval.ENV.frames(argparse.Namespace(data_dir=tmp_path, max_episodes=2))
    assert frames.groups["colour_dependent"].sum() == 9 and frames.groups["after_pickup"].sum() == 2
    assert frames.condition.tolist() == [1] * 6 + [0] * 6 and frames.other_action is None  # the pillar: red, green
    rows = pretrain_encoder.main(["--env", "vizdoom", "--data_dir", str(tmp_path), "--max_episodes", "2",
                                  "--heldout_dir", str(tmp_path), "--heldout_episodes", "2", "--frames", "after_pickup",
                                  "--eval_frames", "colour_dependent", "--d_model", "64", "--steps", "2",
                                  "--batch_size", "4", "--save_encoder", str(tmp_path / "enc.pt")])
    assert [r["step"] for r in rows] == [2] and rows[-1]["groups"]["after_pickup"]["steps"] == 2
    assert rows[-1]["groups"]["colour_dependent"]["steps"] == 9
    ep = dict(np.load(episode_path(tmp_path, 1)))
    del ep["colour_dependent"]
    np.savez(episode_path(tmp_path, 1), **ep)
    with pytest.raises(ConfigError, match="colour_dependent"):
        vizdoom_eval.ENV.frames(argparse.Namespace(data_dir=tmp_path, max_episodes=2))


def test_colour_marker_paints_only_its_corner(env, tmp_path):
    e = TwoColorsEnv(mark_colour=True)
    try:
        for seed, rgb in ((4, [255, 0, 0]), (5, [0, 255, 0])):
            marked, plain = e.reset(seed=seed)[0], env.reset(seed=seed)[0]
            assert (marked[:, :6, :6] == np.array(rgb)[:, None, None]).all()
            outside = np.ones(OBS_SHAPE[1:], bool)
            outside[:6, :6] = False
            assert np.array_equal(marked[:, outside], plain[:, outside])
            assert (e.step(LEFT)[0][:, :6, :6] == np.array(rgb)[:, None, None]).all()
    finally:
        e.close()
    collect(tmp_path, n_episodes=2, n_steps=3, workers=1, progress=False, mark_colour=True)
    assert json.loads((tmp_path / "meta.json").read_text())["mark_colour"] is True
    assert (load_episode(episode_path(tmp_path, 1))["obs"][:, 1, :6, :6] == 255).all()  # green channel, odd index


def test_vector_env_matches_single_env(env):
    seeds = [20, 21, 22]
    with GymVectorEnv(partial(TwoColorsEnv, timeout=5), seeds, info_keys=("is_red",)) as venv:
        obs = venv.reset()
        assert obs.shape == (3, *OBS_SHAPE) and obs.dtype == np.float32 and obs.max() <= 1.0
        single = [env.reset(seed=s)[0] for s in seeds]
        assert np.allclose(obs * 255, np.stack(single), atol=1e-3)
        dones = [venv.step(np.full(3, LEFT))[2] for _ in range(6)]
        info = venv.step(np.full(3, LEFT))[3]  # stepping past the end is harmless (no autoreset)
        assert not dones[3].any() and dones[4].all() and info["is_red"].tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------- train script


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_parses(line):
    args, explicit = train.parse_args(shlex.split(line)[2:])
    mc, tc = split_args(args, "vizdoom")
    assert (mc.context_length, mc.sections, mc.n_layer, mc.n_head, mc.d_model, mc.d_head) == (30, 3, 6, 8, 128, 128)
    assert (tc.lr, tc.batch_size, args.eval_max_steps, args.target_return) == (3e-4, 64, 2100, [56.5])
    assert "num_mem_tokens" in explicit and not args.smoke


def test_budget_overrides_and_bad_values():
    args, _ = train.parse_args(["--epochs", "2", "--batch_size", "4", "--device", "cpu", "--eval_max_steps", "4200"])
    assert (args.epochs, args.batch_size, args.device, args.eval_max_steps) == (2, 4, "cpu", 4200)
    for bad, flag in ((["--eval_episodes", "0"], "--eval_episodes"), (["--eval_pillar_tics", "1"], "pillar_tics"),
                      (["--eval_max_steps", "5001"], "--eval_max_steps must be <= 5000"),
                      (["--target_return", "56.5,5"], "--target_return takes one value in training")):
        with pytest.raises(ConfigError, match=flag):
            train.parse_args(bad)
    with pytest.raises(ValueError, match="pillar_tics"):
        collect(Path("/nonexistent"), n_episodes=1, pillar_tics=0)


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_runs_with_smoke(line, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "vizdoom_data"  # shared: the first command generates the smoke data
    runs = tmp_path_factory.mktemp("runs")
    argv = shlex.split(line)[2:] + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir", str(data)]
    res = train.main(argv)
    m = res["runs"]["1"]["metrics"]
    assert m["episodes_n"] == 4 and [e["is_red"] for e in m["episodes"]] == [True, False, True, False]
    assert m["return"] == pytest.approx(np.mean([e["return"] for e in m["episodes"]]), abs=1e-3)
    assert m["return_red"] == pytest.approx(np.mean([e["return"] for e in m["episodes"][::2]]), abs=1e-3)
    good, bad = (sum(e[k] for e in m["episodes"][::2]) for k in ("good", "bad"))
    assert np.isnan(m["right_pickups_red"]) if good + bad == 0 else m["right_pickups_red"] == good / (good + bad)
    folder = shlex.split(line)[shlex.split(line).index("--ckpt_folder") + 1]
    saved = json.loads((runs / "vizdoom" / folder / "results.json").read_text())
    assert saved["model_config"]["env"] == "vizdoom" and (data / "smoke" / "episode_000011.npz").exists()
    recorded = json.loads((runs / "vizdoom" / folder / "seed_1" / "config.json").read_text())["args"]
    assert recorded["mark_colour"] is False and recorded["eval_max_steps"] == 60  # the smoke data has no marker


def test_env_evaluate_reads_the_protocol_from_the_runs_flags(monkeypatch):
    """ENV.evaluate depends on the run's flags alone (recorded in config.json and the checkpoint)."""
    calls = []
    monkeypatch.setattr(vizdoom_eval, "evaluate", lambda model, *a, **kw: calls.append((a, kw)) or {"return": 1.0})
    args, _ = train.parse_args(["--eval_max_steps", "90", "--target_return", "5", "--eval_pillar_tics", "60"])
    args.mark_colour = True
    vizdoom_eval.ENV.evaluate(None, args, "test")
    vizdoom_eval.ENV.evaluate(None, argparse.Namespace(**{**vars(args), "eval_greedy": True}), "validation")
    (a, kw), (a_val, kw_val) = calls
    assert a == (100, 90, 50, 5.0) and a_val[0] == vizdoom_eval.ENV.validation_episodes == 10
    assert kw["scenario"].pillar_tics == 60 and kw["mark_colour"] and kw["sample"] and not kw_val["sample"]
    assert (kw["split"], kw_val["split"]) == ("test", "validation")
    assert vizdoom_eval.ENV.selection_score({"return": 2.5}) == 2.5
    assert vizdoom_eval.ENV.seeds(3) == [1_000_000, 1_000_001, 1_000_002] and is_red(vizdoom_eval.ENV.seeds(1)[0])
    assert vizdoom_eval.ENV.target({"target_return": None}) == 56.5 == vizdoom_eval.ENV.target({"target_return": 56.5})


def test_colour_groups_split_a_hand_made_window():
    """ENV.step_groups' masks: windows at episode steps 20 and 40 (the pillar leaves the screen at step 23)."""
    dep = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1]], bool)
    actions = np.array([[0, 0, 1, 1, 1, 2], [3, 3, 3, 4, 4, 4]])
    rewards = np.zeros((2, 6), np.float32)
    rewards[1, 3] = 1.0  # a right item picked up at step 3: step 4 chooses the next item
    g = vizdoom_eval.colour_groups(dep, np.array([20, 40]), actions, rewards)
    assert g["colour_dependent_pillar_in_view"].tolist() == [[True] * 3 + [False] * 3, [False] * 6]
    assert (g["colour_dependent_after_pillar"] == dep & ~g["colour_dependent_pillar_in_view"]).all()
    assert g["colour_dependent_action_changed"].tolist() == [[False, False, True, False, False, False],
                                                            [False] * 6]
    assert g["colour_dependent_action_repeated"][1].tolist() == [False, True, True, False, True, True]
    assert g["colour_dependent_after_pickup"].tolist() == [[False] * 6, [False] * 4 + [True, False]]
    assert (g["other"] == ~dep).all() and g["other_action_changed"][1].tolist() == [False, False, False, True,
                                                                                    False, False]


def test_colour_probe_and_step_loss_on_a_trained_checkpoint(tmp_path_factory, tmp_path):
    data = tmp_path_factory.getbasetemp() / "vizdoom_data"
    runs = tmp_path_factory.mktemp("runs")
    train.main(shlex.split(README_LINES[0])[2:] + ["--smoke", "--no_wandb", "--runs_dir", str(runs),
                                                   "--data_dir", str(data), "--ckpt_folder", "probe"])
    ckpt = runs / "vizdoom" / "probe" / "seed_1" / "checkpoints" / "last.pt"
    # the generic checkpoint evaluation rebuilds the run's protocol from its recorded flags: the same metrics
    (again,) = evaluate.main([str(ckpt)])
    run = json.loads((runs / "vizdoom" / "probe" / "seed_1" / "results.json").read_text())["metrics"]
    assert set(again) - {"checkpoint", "env", "split"} == set(run) - {"episodes"}
    assert all(again[k] == v or (math.isnan(again[k]) and math.isnan(v)) for k, v in run.items() if k != "episodes")
    assert check_attention_tool(ckpt, tmp_path / "attention", 12)["cue_steps"] == [0]
    out = tmp_path / "probe.json"
    acc = probe_colour.main([str(ckpt), "--data_dir", str(data / "smoke"), "--episodes", "12", "--out", str(out)])
    assert set(acc) == {"obs_step0", "obs_step0_fresh_init", "memory_after_segment_1", "memory_after_segment_2"}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert json.loads(out.read_text())["accuracy"] == acc
    # the memory of the model's own episodes, segment by segment past the training window (smoke K = 5)
    model = load_model(ckpt)[0]
    memory, red = probe_colour.rollout_memory(model, 4, 3, 2)
    assert memory.shape == (4, 3, 5 * 32) and red.tolist() == [True, False, True, False]
    assert not torch.equal(memory[:, 0], memory[:, 2])  # each segment's write changed it
    acc = probe_colour.main([str(ckpt), "--data_dir", str(data / "smoke"), "--episodes", "12",
                             "--rollout_segments", "3", "--rollout_episodes", "5", "--batch_size", "5"])
    assert {f"rollout_memory_after_segment_{s}" for s in (1, 2, 3)} <= set(acc)
    (res,) = step_loss.main([str(ckpt), "--data_dir", str(data / "smoke"), "--episodes", "6", "--batch_size", "4",
                             "--out", str(out)])
    groups = res["groups"]  # python -m RATE_model.tools.step_loss through ENV.heldout / step_groups / counterfactual
    assert res["env"] == "vizdoom" and res["episodes"] == 6 and groups["all"]["steps"] == 6 * 20  # smoke: 20 steps
    assert groups["colour_dependent"]["steps"] + groups["other"]["steps"] == 120
    assert groups["colour_dependent"]["steps"] == sum(
        int(np.load(episode_path(data / "smoke", i))["colour_dependent"].sum()) for i in range(6))
    assert res["gap_colour_dependent_minus_other"] == pytest.approx(
        groups["colour_dependent"]["loss"] - groups["other"]["loss"])
    assert json.loads(out.read_text()) == res
    pref = res["preference"]["colour_dependent"]  # the smoke files record the other-colour action
    assert pref["steps"] == groups["colour_dependent"]["steps"] and 0.0 <= pref["prefers_chosen"] <= 1.0
    evals = evaluate.main([str(ckpt), "--eval_episodes", "2", "--eval_max_steps", "10", "--target_return", "56.5,5",
                           "--eval_batch_size", "2"])
    assert [e["target_return"] for e in evals] == [56.5, 5.0] and all(e["episodes_n"] == 2 for e in evals)
    assert all(e["length"] <= 10 and "right_pickups_red_0_90" in e for e in evals)
    # greedy (the diagnosis): the action sampler's seed no longer matters, the episodes are the model's argmax
    greedy = [vizdoom_eval.evaluate(model, 2, 10, 2, sample=False, sample_seed=s, progress=False)["episodes"]
              for s in (0, 1)]
    assert greedy[0] == greedy[1]
    out = tmp_path / "greedy.jsonl"
    (g,) = evaluate.main([str(ckpt), "--eval_episodes", "2", "--eval_max_steps", "10", "--eval_batch_size", "2",
                          "--eval_greedy", "--precision", "fp32", "--out", str(out)])
    assert g["episodes_n"] == 2 and json.loads(out.read_text())["episodes"] == greedy[0]
    with pytest.raises(ConfigError, match="--eval_max_steps"):
        evaluate.main([str(ckpt), "--eval_max_steps", "99999"])
    with pytest.raises(ConfigError, match="generate_iter_data"):  # a folder without episodes
        step_loss.main([str(ckpt), "--data_dir", str(tmp_path / "none")])


# ---------------------------------------------------------------- notebook


def test_notebook_generates_a_tiny_dataset(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("VIZDOOM_NB_EPISODES", "2")
    monkeypatch.setenv("VIZDOOM_NB_STEPS", "8")
    monkeypatch.setenv("VIZDOOM_NB_OUT_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    assert sorted(p.name for p in tmp_path.glob("episode_*.npz")) == ["episode_000000.npz", "episode_000001.npz"]
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2 and os.environ["VIZDOOM_NB_EPISODES"] == "2"


def _blob_frames(n: int, red: bool, rng: np.random.Generator) -> Frames:
    """Grey frames with a red and a green square on opposite halves; the expert heads for the pillar's colour
    (left + forward or right + forward), the other-colour action is the opposite turn (one episode, the colour
    given beside each frame, as ``ENV.frames`` gives it)."""
    obs = np.full((n, *OBS_SHAPE), 90, np.uint8)
    red_left = rng.random(n) < 0.5
    for i in range(n):
        y, xl, xr = rng.integers(0, 48), rng.integers(0, 40), rng.integers(56, 96)
        for x, channel in ((xl, 0 if red_left[i] else 1), (xr, 1 if red_left[i] else 0)):
            obs[i, :, y:y + 16, x:x + 16] = 0
            obs[i, channel, y:y + 16, x:x + 16] = 255
    target_left = red_left == red
    action = np.where(target_left, LEFT_FORWARD, RIGHT_FORWARD)
    store = EpisodeStore.from_episodes([{"obs": obs, "action": action}])
    return Frames(store, N_ACTIONS, condition=np.full(n, int(red)), n_conditions=2,
                  other_action=np.where(target_left, RIGHT_FORWARD, LEFT_FORWARD),
                  groups={"colour_dependent": np.ones(n, bool), "after_pickup": np.arange(n) % 4 == 0,
                          "red": np.full(n, red), "green": np.full(n, not red)})


def test_frame_bc_learns_one_colour_from_single_frames():
    rng = np.random.default_rng(0)
    train_frames, heldout = _blob_frames(512, True, rng), _blob_frames(128, True, rng)
    torch.manual_seed(0)  # lr 3e-4 (the tool's): held-out accuracy 1.0 at step 60 for seeds 0-4; 1e-3 stalls on one
    net, rows = frame_bc(train_frames, image_encoder(OBS_SHAPE, 64), 64, steps=60, batch_size=32, lr=3e-4,
                         eval_every=30, heldout=heldout, log=lambda _: None)
    assert isinstance(net, FramePolicy) and net.condition is not None  # the colour is read beside the frame
    assert [r["step"] for r in rows] == [30, 60] and "stage" not in rows[-1]
    g = rows[-1]["groups"]
    assert g["colour_dependent"]["preference"]["steps"] == 128 and g["after_pickup"]["preference"]["steps"] == 32
    assert rows[-1]["preference"]["prefers_chosen"] > 0.9 and rows[-1]["heldout_accuracy"] > 0.9


def test_pretrain_encoder_reads_the_colour_dependent_steps(tmp_path_factory, tmp_path):
    data = tmp_path_factory.getbasetemp() / "vizdoom_data" / "smoke"
    if not data.exists():
        collect(data, workers=1, progress=False, **train.SMOKE_DATA)
    frames = vizdoom_eval.ENV.frames(argparse.Namespace(data_dir=data, max_episodes=12))
    dep = [np.load(episode_path(data, i))["colour_dependent"] for i in range(12)]
    chosen = frames.select(["colour_dependent"])
    assert chosen.sum() == sum(int(d.sum()) for d in dep) and frames.store.spec("obs")[1] == np.uint8
    assert frames.select(["colour_dependent", "red"]).sum() == sum(int(d.sum()) for d in dep[::2])  # even: red
    green = frames.select(["colour_dependent", "green"])
    assert green.sum() == sum(int(d.sum()) for d in dep[1::2]) and not frames.condition[green].any()
    other = np.concatenate([np.load(episode_path(data, i))["action_other_colour"] for i in range(12)])
    assert (frames.other_action == other).all()
    out = tmp_path / "rows.jsonl"
    enc = tmp_path / "encoder.pt"
    rows = pretrain_encoder.main(["--env", "vizdoom", "--data_dir", str(data), "--max_episodes", "12", "--heldout_dir",
                                  str(data), "--heldout_episodes", "12", "--frames", "colour_dependent",
                                  "--curriculum", "red:2", "--d_model", "64", "--steps", "4", "--eval_every", "2",
                                  "--batch_size", "8", "--out", str(out), "--save_encoder", str(enc)])
    assert [r["stage"] for r in rows] == ["red", "all"]
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert rows[-1]["groups"]["colour_dependent"]["steps"] == chosen.sum() == rows[-1]["groups"]["red"]["steps"] + \
        rows[-1]["groups"]["green"]["steps"]
    assert 0 <= rows[-1]["preference"]["prefers_chosen"] <= 1 and rows[-1]["preference"]["steps"] > 0
    saved = torch.load(enc, weights_only=True)
    assert saved["info"]["script"] == "RATE_model.tools.pretrain_encoder" and saved["info"]["env"] == "vizdoom"
    assert saved["info"]["last_evaluation"] == rows[-1]
    # the sequence model starts from it, frozen: its encoder is the saved one after training
    runs = tmp_path / "runs"
    argv = shlex.split(README_LINES[1])[2:] + ["--smoke", "--no_wandb", "--runs_dir", str(runs), "--data_dir",
                                               str(data.parent), "--ckpt_folder", "frozen", "--d_model", "64",
                                               "--init_encoder", str(enc), "--freeze_encoder"]
    train.main(argv)
    run = runs / "vizdoom" / "frozen" / "seed_1"
    weights = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k, v in saved["obs_encoder"].items():
        assert torch.equal(weights[f"enc.obs.{k}"], v), k
    losses = [json.loads(line)["losses/train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "losses/train_loss" in line]
    assert losses and all(np.isfinite(losses))
    before = (run / "checkpoints" / "last.pt").read_bytes()  # resuming the finished frozen run only evaluates
    train.main([*argv, "--resume", "latest"])
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    with pytest.raises(DataError, match="generate_iter_data.py"):
        pretrain_encoder.main(["--env", "vizdoom", "--data_dir", str(tmp_path / "none"), "--save_encoder", "x.pt"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "episode_000000.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="episode_000000"):
        vizdoom_eval.ENV.frames(argparse.Namespace(data_dir=tmp_path / "bad", max_episodes=1))
