"""Memory Maze 9×9: the env wrapper, the oracles (what they see, where they go, what they reach), the
measuring tool's policies and the vector env."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

pytest.importorskip("memory_maze")

from MemoryMaze.MemoryMaze_src import mem_maze_eval  # noqa: E402
from MemoryMaze.MemoryMaze_src.expert import (  # noqa: E402
    VIEW_CELLS,
    VisibleOracle,
    oracle_action,
    oracle_episode,
    visible,
    visible_cells,
)
from MemoryMaze.MemoryMaze_src.mem_maze_eval import ENV, default_batch_size  # noqa: E402
from MemoryMaze.MemoryMaze_src.memory_maze_env import (  # noqa: E402
    FORWARD,
    FORWARD_LEFT,
    FORWARD_RIGHT,
    LEFT,
    OBS_SHAPE,
    RIGHT,
    START_METHOD,
    MemoryMazeEnv,
)
from RATE_model.config import ConfigError  # noqa: E402
from RATE_model.tools import measure  # noqa: E402
from RATE_model.vector import GymVectorEnv  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = MemoryMazeEnv(max_steps=300, privileged=True)
    yield e
    e.close()


# ---------------------------------------------------------------- env and oracle


def test_wrapper_shapes_seeding_and_episode_end(env):
    obs, info = env.reset(seed=5)
    assert obs.shape == OBS_SHAPE == (3, 64, 64) and obs.dtype == np.uint8 and info["targets"] == 0.0
    layout = info["state"]["maze_layout"].copy()
    assert layout.shape == (9, 9) and set(np.unique(layout)) == {0, 1}
    again, info2 = env.reset(seed=5)
    assert np.array_equal(obs, again) and np.array_equal(layout, info2["state"]["maze_layout"])
    assert not np.array_equal(layout, env.reset(seed=6)[1]["state"]["maze_layout"])
    plain = MemoryMazeEnv(max_steps=3)  # what evaluation sees: the same camera image, no privileged state
    try:
        first, plain_info = plain.reset(seed=5)
        assert np.array_equal(first, obs) and "state" not in plain_info
        ends = [plain.step(FORWARD)[3] for _ in range(3)]
        assert ends == [False, False, True]
        _, reward, terminated, truncated, _ = plain.step(FORWARD)  # past the end: harmless, nothing happens
        assert (reward, terminated, truncated) == (0.0, False, True)
        with pytest.raises(ValueError, match="0..5"):
            plain.step(6)
    finally:
        plain.close()
    with pytest.raises(ValueError, match="max_steps"):
        MemoryMazeEnv(max_steps=1001)


def _state(heading_deg: float, target: tuple[float, float]) -> dict[str, np.ndarray]:
    """An open 9×9 maze with the agent at the centre of cell (4, 4)."""
    h = np.radians(heading_deg)
    return {"agent_pos": np.array([4.5, 4.5]), "agent_dir": np.array([np.cos(h), np.sin(h)]),
            "target_pos": np.asarray(target, float), "maze_layout": np.ones((9, 9), np.uint8)}


def test_oracle_turns_towards_the_next_cell_of_the_shortest_path():
    rng = np.random.default_rng(0)
    assert oracle_action(_state(0, (7.5, 4.5)), rng) == FORWARD  # straight ahead along +x
    assert oracle_action(_state(0, (4.5, 7.5)), rng) == LEFT  # 90° counter-clockwise: turn left on the spot
    assert oracle_action(_state(0, (4.5, 1.5)), rng) == RIGHT
    assert oracle_action(_state(-25, (7.5, 4.5)), rng) == FORWARD_LEFT  # a little off: steer while moving
    assert oracle_action(_state(25, (7.5, 4.5)), rng) == FORWARD_RIGHT
    walled = _state(0, (6.5, 4.5))
    walled["maze_layout"][:, 5] = 0  # a wall across x = 5 with one gap at y = 8: the path goes up first
    walled["maze_layout"][8, 5] = 1
    assert oracle_action(walled, rng) == LEFT
    assert {oracle_action(_state(0, (7.5, 4.5)), rng, epsilon=1.0) for _ in range(200)} == set(range(6))


def test_walls_block_the_view_and_the_field_of_view_is_80_degrees():
    layout = np.ones((9, 9), np.uint8)
    pos, east = np.array([1.5, 4.5]), np.array([1.0, 0.0])
    ahead, left, behind = [5.5, 4.5], [1.5, 7.5], [0.5, 4.5]
    assert visible(layout, pos, east, [ahead, left, behind]).tolist() == [True, False, False]
    assert not visible(layout, pos, east, [[1.5 + VIEW_CELLS + 0.5, 4.5]])[0]  # too far to make out
    walled = layout.copy()
    walled[:, 3] = 0  # a wall across x = 3, open only at y = 0
    walled[0, 3] = 1
    assert not visible(walled, pos, east, [ahead])[0]  # behind the wall
    assert visible(walled, np.array([2.5, 0.5]), east, [[5.5, 0.5]])[0]  # through the gap
    cells = visible_cells(walled, pos, east)
    assert cells[4, 2] and cells[4, 3] and cells[4, 1]  # open floor ahead, the wall's face, the agent's own cell
    assert not cells[4, 4] and not cells[4, 0] and not cells[8, 1]  # behind the wall, behind the agent, to the side


def _drive(layout, pos, heading_deg, targets, order, oracle, steps=600):
    """A point robot on ``layout`` (forward 0.2 cells, turns 18°; a reach within 0.35 of the current target
    assigns the next one of ``order``): the steps each assignment took, the actions taken and the step at
    which the oracle first saw each target."""
    pos, h = np.asarray(pos, float), np.radians(heading_deg)
    targets = np.asarray(targets, float)
    rng, k, trips, actions, t0, seen = np.random.default_rng(0), 0, [], [], 0, {}
    for t in range(steps):
        heading = np.array([np.cos(h), np.sin(h)])
        state = {"agent_pos": pos.copy(), "agent_dir": heading, "target_pos": targets[order[k]],
                 "targets_pos": targets, "maze_layout": layout}
        a = oracle.act(state, rng)
        actions.append(a)
        for i in oracle.targets:
            seen.setdefault(i, t)
        h += np.radians({LEFT: 18, RIGHT: -18, FORWARD_LEFT: 9, FORWARD_RIGHT: -9}.get(a, 0))
        if a in (FORWARD, FORWARD_LEFT, FORWARD_RIGHT):
            nxt = pos + 0.2 * np.array([np.cos(h), np.sin(h)])
            if layout[int(nxt[1]), int(nxt[0])]:
                pos = nxt
        if np.linalg.norm(pos - targets[order[k]]) < 0.35:
            trips.append(t + 1 - t0)
            t0, k = t + 1, k + 1
            if k == len(order):
                break
    return trips, actions, seen


def test_visible_oracle_explores_until_it_has_seen_the_target_then_goes_straight_back():
    layout = np.ones((9, 9), np.uint8)
    layout[4, :] = 0  # a wall across y = 4 with one door at x = 7: two rooms
    layout[4, 7] = 1
    start, below, above = (1.5, 1.5), (6.5, 1.5), (1.5, 7.5)
    oracle = VisibleOracle()
    trips, actions, seen = _drive(layout, start, 180.0, [above, below], [0, 1, 0], oracle)
    assert len(trips) == 3 and oracle.seen_at_assignment == [False, True, True]
    straight = 13 * 5 + 12  # the shortest way back through the door: 13 cells at 5 steps each, and turning
    assert trips[2] <= straight < trips[0], trips  # the first trip searched; the third went straight there
    # Until the target comes into view, where it is cannot change what the oracle does.
    other = VisibleOracle()
    _, other_actions, _ = _drive(layout, start, 180.0, [(4.5, 7.5), below], [0, 1, 0], other, steps=seen[0])
    assert other_actions == actions[:seen[0]] and seen[0] > 10


@pytest.fixture(scope="module")
def random_return(env):
    """The return of uniformly random actions in maze 5 over 300 steps (the oracles' maze and budget)."""
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    return sum(env.step(int(rng.integers(6)))[1] for _ in range(300))


@pytest.mark.parametrize("oracle", ["visible", "privileged"])
def test_oracle_reaches_targets_and_beats_random(env, oracle, random_return):
    ep = oracle_episode(env, seed=5, n_steps=300, epsilon=0.0, noise_seed=0, oracle=oracle)
    assert ep["obs"].shape == (300, 64, 64, 3) and ep["obs"].dtype == np.uint8
    assert ep["action"].shape == (300, 6) and np.array_equal(ep["action"].sum(1), np.ones(300))
    assert ep["reward"].dtype == np.float32 and set(np.unique(ep["reward"])) <= {0.0, 1.0}
    assert ep["reward"].sum() >= 3 and env.targets == ep["reward"].sum()  # the reward counts reached targets
    assert env._info()["targets_first_half"] == ep["reward"][:150].sum()  # the first half of max_steps 300
    assert random_return < ep["reward"].sum()


def test_visible_oracle_sees_what_the_camera_renders_and_repeats_its_episode(env):
    obs, info = env.reset(seed=7)
    oracle, rng, agree = VisibleOracle(epsilon=0.3), np.random.default_rng(0), []
    for _ in range(120):
        state = info["state"]
        seen = visible(state["maze_layout"], state["agent_pos"], state["agent_dir"], state["targets_pos"])
        agree += [(s, p) for s, p in zip(seen, env.target_pixels(), strict=True)]
        _, _, _, _, info = env.step(oracle.act(state, rng))
    seen, pixels = np.array(agree).T
    assert seen.sum() >= 10 and (pixels[seen > 0] >= 3).mean() >= 0.9  # what it counts as seen is on screen
    assert (pixels[seen == 0] >= 3).sum() < (pixels >= 3).sum()  # (and it misses some: it is conservative)
    a = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=3)
    b = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = oracle_episode(env, seed=11, n_steps=80, epsilon=0.1, noise_seed=4)
    assert not np.array_equal(a["action"], c["action"])


def test_measure_reports_each_policy_and_its_halves(capsys):
    argv = ["--env", "memory_maze", "--episodes", "2", "--eval_max_steps", "60", "--workers", "2"]
    (vis,) = measure.main([*argv, "--policies", "visible"])
    assert json.loads(capsys.readouterr().out) == vis  # one JSON line
    assert (vis["policy"], vis["episodes"], vis["flags"]["eval_max_steps"]) == ("visible", 2, 60)
    assert vis["return"] == pytest.approx(vis["return_first_half"] + vis["return_second_half"])
    assert 0.0 <= vis["seen_at_assignment"] <= 1.0 and vis["steps_per_s"] > 0 and vis["return_min"] <= vis["return"]
    (random,) = measure.main([*argv, "--policies", "random"])
    assert "seen_at_assignment" not in random and random["second_minus_first_sem"] >= 0
    assert vis["return"] >= random["return"]
    for bad, flag in ((["--policies", "dreamer"], "unknown policy 'dreamer'"), (["--epsilon", "1.5"], "epsilon"),
                      (["--eval_max_steps", "1001"], "max_steps")):
        with pytest.raises(ConfigError, match=flag):
            measure.main(["--env", "memory_maze", *bad])


def test_evaluation_workers_default_to_two_per_core_within_memory(monkeypatch):
    monkeypatch.setattr(mem_maze_eval.os, "cpu_count", lambda: 16)
    pages = {"SC_PAGE_SIZE": 4096, "SC_AVPHYS_PAGES": int(100 * 2**30 / 4096)}  # 100 GiB free: 32 workers
    monkeypatch.setattr(mem_maze_eval.os, "sysconf", lambda name: pages[name])
    assert default_batch_size() == 32
    pages["SC_AVPHYS_PAGES"] = int(7 * 2**30 / 4096)  # 7 GiB: only 4 simulators fit
    assert default_batch_size() == 4
    pages["SC_AVPHYS_PAGES"] = 1
    assert default_batch_size() == 1


def test_vector_env_matches_single_env(env):
    seeds = ENV.seeds(2)
    with GymVectorEnv(partial(MemoryMazeEnv, max_steps=2), seeds, info_keys=("targets",),
                      context=START_METHOD) as venv:  # this process has rendered (the fixture): no fork
        obs = venv.reset()
        assert obs.shape == (2, *OBS_SHAPE) and obs.dtype == np.float32 and obs.max() <= 1.0
        assert np.allclose(obs * 255, np.stack([env.reset(seed=s)[0] for s in seeds]), atol=1e-3)
        dones = [venv.step(np.full(2, FORWARD))[2] for _ in range(2)]
        assert not dones[0].any() and dones[1].all()
