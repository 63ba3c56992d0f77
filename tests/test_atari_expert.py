"""Scripted Atari RAM policies: decisions on hand-made RAM, and a short real game each against random."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py")

from Atari.Atari_src.atari_env import N_ACTIONS  # noqa: E402
from Atari.Atari_src.expert import FIRE, NOOP, POLICIES, make_policy, reflect  # noqa: E402
from RATE_model.cli import run_main  # noqa: E402
from RATE_model.tools import measure  # noqa: E402

PONG_UP, PONG_DOWN = 2, 3  # RIGHT moves Pong's paddle up
BREAKOUT_RIGHT, BREAKOUT_LEFT = 2, 3
QBERT_RIGHT, QBERT_LEFT = 3, 4  # down-right, up-left


def ram(values: dict[int, int]) -> np.ndarray:
    """128 RAM bytes, zero except ``values`` (index -> byte)."""
    out = np.zeros(128, np.uint8)
    for i, v in values.items():
        out[i] = v
    return out


def decide(game: str, *steps: dict[int, int]) -> int:
    """The fresh policy's action after seeing the RAM of ``steps`` in order."""
    policy = make_policy(game)
    policy.reset()
    for values in steps:
        action = policy(ram(values))
    return action


def pong(ball_x: int, ball_y: int, paddle: int) -> dict[int, int]:
    return {49: ball_x, 54: ball_y, 51: paddle}


def test_reflect_folds_into_the_walls():
    assert reflect(100, 56, 200) == 100
    assert reflect(50, 56, 200) == 62
    assert reflect(210, 56, 200) == 190
    assert reflect(200 + 144 + 10, 56, 200) == 66  # bounced off both walls


def test_pong_moves_up_to_a_ball_coming_high():
    # coming right (x +4 per step) and rising: it crosses the paddle's line far above the paddle
    assert decide("Pong", pong(100, 100, 150), pong(104, 96, 150)) == PONG_UP


def test_pong_moves_down_to_a_ball_coming_low():
    assert decide("Pong", pong(100, 150, 80), pong(104, 154, 80)) == PONG_DOWN


def test_pong_waits_inside_the_dead_zone():
    # going away: follow the ball's y (goal 120 - 6 = 114), the paddle at 110 is close enough
    assert decide("Pong", pong(104, 120, 110), pong(100, 120, 110)) == NOOP


def test_pong_lets_a_moving_paddle_coast():
    # 20 short of the goal but moving 20 per step: it will get there without a key press
    assert decide("Pong", pong(104, 126, 80), pong(100, 126, 100)) == NOOP
    assert decide("Pong", pong(104, 126, 100), pong(100, 126, 100)) == PONG_DOWN  # at rest it must press


def test_pong_returns_to_the_centre_without_a_ball():
    assert decide("Pong", pong(0, 0, 50)) == PONG_DOWN
    assert decide("Pong", pong(0, 0, 190)) == PONG_UP


def breakout(ball_x: int, ball_y: int, rest: int) -> dict[int, int]:
    """Breakout RAM with the paddle's set point at ``rest`` (ram[70] = 234 - rest), drawn there too."""
    return {99: ball_x, 101: ball_y, 72: rest, 70: 234 - rest}


def test_breakout_fires_when_no_ball_is_in_play():
    assert decide("Breakout", breakout(80, 0, 120)) == FIRE


def test_breakout_steers_under_the_ball():
    assert decide("Breakout", breakout(80, 100, 150)) == BREAKOUT_LEFT  # goal 80 - 10 = 70
    assert decide("Breakout", breakout(180, 100, 80)) == BREAKOUT_RIGHT
    assert decide("Breakout", breakout(80, 100, 75)) == NOOP  # within the dead zone


def test_breakout_steers_on_the_set_point_not_the_drawn_paddle():
    values = {**breakout(80, 100, 150), 72: 70}  # drawn at the goal, but heading for 150
    assert decide("Breakout", values) == BREAKOUT_LEFT


def test_breakout_predicts_the_bounce_off_the_left_wall():
    # falling left (-12 x, +8 y per step) at (80, 150): 4 steps to the paddle's line (y 182), straight on
    # that is x 32, past the wall at 56, so it lands at 80; the paddle's goal is 80 - 10 = 70
    first, second = breakout(92, 142, 70), breakout(80, 150, 70)
    assert decide("Breakout", first, second) == NOOP
    assert decide("Breakout", breakout(92, 142, 22), breakout(80, 150, 22)) == BREAKOUT_RIGHT


CUBE_BYTES = [21, 52, 54, 83, 85, 87, 98, 100, 102, 104, 1, 3, 5, 7, 9, 32, 34, 36, 38, 40, 42]


def qbert(x: int, y: int, colours: dict[int, int], default: int = 26) -> dict[int, int]:
    return {43: x, 67: y, **{b: default for b in CUBE_BYTES}, **colours}


def test_qbert_heads_for_the_cube_left_to_do():
    # on row 1, right cube (x 93, y 53); the cube it just landed on (byte 54) turned 148 -> 26, so 26 is the
    # target colour and the only other cube left, byte 87 (row 2, right), is one down-right jump away
    before = qbert(89, 47, {54: 148, 87: 148})
    after = qbert(93, 53, {87: 148})
    assert decide("Qbert", before, after) == QBERT_RIGHT


def test_qbert_never_jumps_off_the_pyramid():
    # bottom-right corner (row 5, five down-right jumps): up-left is the only jump that stays on
    assert decide("Qbert", qbert(147, 165, {})) == QBERT_LEFT
    assert decide("Qbert", qbert(77, 25, {})) in (QBERT_RIGHT, 5)  # top: only the two downward jumps


def test_qbert_waits_in_the_air():
    assert decide("Qbert", qbert(85, 30, {})) == NOOP


def seaquest(x: int, y: int, oxygen: int, divers: int) -> dict[int, int]:
    return {70: x, 97: y, 102: oxygen, 62: divers}


def test_seaquest_surfaces_low_on_oxygen_with_a_diver():
    assert decide("Seaquest", seaquest(80, 100, 10, 1)) in (14, 15)  # UPRIGHTFIRE / UPLEFTFIRE
    assert decide("Seaquest", seaquest(80, 100, 10, 0)) in (11, 12)  # no diver: surfacing would cost a life


def test_seaquest_dives_and_sweeps_firing():
    assert decide("Seaquest", seaquest(80, 13, 64, 0)) == 16  # DOWNRIGHTFIRE
    assert decide("Seaquest", seaquest(130, 100, 64, 0)) == 12  # at the right edge: turn, LEFTFIRE


@pytest.mark.parametrize("game", sorted(POLICIES))
def test_actions_are_valid_on_any_ram(game):
    policy, rng = make_policy(game), np.random.default_rng(0)
    for _ in range(200):
        assert 0 <= policy(rng.integers(0, 256, 128, dtype=np.uint8)) < N_ACTIONS[game]


def test_make_policy_rejects_an_unknown_game():
    with pytest.raises(ValueError, match="Tetris"):
        make_policy("Tetris")


def test_measure_cli_bad_game_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        run_main(measure.main, ["--env", "atari", "--game", "Tetris"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--game" in err[0]


@pytest.mark.parametrize("game, steps", [("Breakout", 2000), ("Pong", 1500), ("Qbert", 600), ("Seaquest", 1000)])
def test_scripted_beats_random(game, steps, capsys):
    out = measure.main(["--env", "atari", "--game", game, "--episodes", "1", "--eval_max_steps", str(steps),
                        "--workers", "1"])
    capsys.readouterr()
    got = {m["policy"]: m for m in out}
    assert set(got) == {"scripted", "random"} and all(m["episodes"] == 1 for m in out)
    assert got["scripted"]["flags"]["game"] == game and got["scripted"]["flags"]["epsilon"] == 0.0
    assert got["scripted"]["return"] > got["random"]["return"]
    assert got["scripted"]["normalised"] > got["random"]["normalised"]
    assert got["scripted"]["steps_per_s"] > 0  # the speed itself is benchmarks/' business, not a test's


@pytest.mark.parametrize("game", ["Breakout", "Pong"])
def test_diagnose_expert_records_what_the_paddle_rule_decides_on(game):
    from Atari.Atari_src.atari_env import N_ACTIONS
    from Atari.diagnostics import diagnose_expert as diag

    ep = diag.record(1, 0.2, 400, seed=3, game=game)[0]
    T, k, cls = len(ep["action"]), N_ACTIONS[game], diag.PADDLE_GAMES[game]
    assert T == 400 and ep["pos"].shape == (T, 3) and 0.7 < ep["expert"].mean() < 0.9
    err = ep["goal"] - ep["set_point"]  # the expert's own actions follow from the recorded goal and set point
    live = ep["pos"][:, 0 if game == "Pong" else 1] > 0  # the ball's y is 0 while none is in play
    moved = np.where(err > cls.dead_zone, cls.plus, np.where(err < -cls.dead_zone, cls.minus, 0))
    rule = np.where(~live, 1, moved) if game == "Breakout" else moved  # Breakout serves with FIRE
    assert np.array_equal(ep["action"][ep["expert"]], rule[ep["expert"]])
    assert {0, cls.plus, cls.minus} <= set(rule.tolist())  # the rule moved both ways and rested
    x = diag.features(ep, set_point=True, n_actions=k)
    assert x.shape == (T, 3 * diag.HISTORY + 1 + diag.HISTORY * (k + 1) + 1)
    assert x[0, -1 - diag.HISTORY * (k + 1):-1].reshape(diag.HISTORY, -1)[:, -1].all()  # no past actions
    assert diag.features(ep, set_point=False, n_actions=k).shape[1] == x.shape[1] - 1
    assert diag.features(ep, set_point=False, goal=False, n_actions=k).shape[1] == x.shape[1] - 2
