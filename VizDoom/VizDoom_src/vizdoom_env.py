"""ViZDoom-Two-Colors (SPEC §4): a gymnasium env over the generated scenario (batched through
``RATE_model.vector.GymVectorEnv``, one worker process per episode).

Observation: the screen as uint8 [3, 64, 112] (rendered at 256×144 without HUD, weapon or crosshair,
resized with area averaging). Actions: 0 left, 1 right, 2 forward, 3 left+forward, 4 right+forward,
each held for ``frame_skip`` = 2 tics. Reward per step: 0.01 per tic alive (the reference's living
reward) plus 1 whenever health rises (an item of the pillar's colour was picked up). The episode ends
when the player dies or after ``timeout`` steps. The pillar's colour follows the seed: even seeds are
red, odd seeds green, so a list of consecutive seeds has both colours in equal numbers.
"""

from __future__ import annotations

from multiprocessing.util import Finalize
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import vizdoom as vzd

from VizDoom.VizDoom_src.scenario import MAPS, ScenarioConfig, scenario_path

OBS_SHAPE = (3, 64, 112)
N_ACTIONS = 5
LEFT, RIGHT, FORWARD, LEFT_FORWARD, RIGHT_FORWARD = range(N_ACTIONS)
BUTTONS = (vzd.Button.TURN_LEFT, vzd.Button.TURN_RIGHT, vzd.Button.MOVE_FORWARD)
ACTIONS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1))  # button states of each action
POSE = (vzd.GameVariable.POSITION_X, vzd.GameVariable.POSITION_Y, vzd.GameVariable.ANGLE)
MARK = (slice(0, 6), slice(0, 6))  # mark_colour: this corner of every frame shows the pillar's colour
MIN_LABEL_PIXELS = 3  # an object narrower or lower than this on the 256 × 144 screen is < 1.3 px in the observation
FRAME_SKIP = 2
LIVING_REWARD = 0.01  # per tic
FLOOR_DAMAGE = 8  # the floor's damage every 32 tics (sector special 83)
PICKUP_REWARD = 1.0
DEFAULT_TIMEOUT = 2100  # steps (4200 tics); the reference scenario's own limit is 10 000 tics
ENGINE_TIMEOUT = 10_000  # tics
MAX_TIMEOUT = ENGINE_TIMEOUT // FRAME_SKIP  # steps: a longer --timeout would end in the engine's (as a death)


TIME_BINS = (0, 90, 500)  # pickups are also counted per bin of steps: 0-90 (DT's training context), 90-500, 500+
BIN_NAMES = tuple(f"{lo}_{hi}" for lo, hi in zip(TIME_BINS, (*TIME_BINS[1:], ""), strict=True))
PICKUP_KEYS = ("good", "bad", *(f"{k}_{b}" for b in BIN_NAMES for k in ("good", "bad")))


def time_bin(step: int) -> str:
    """The name of the time bin of a 0-based step (``0_90``, ``90_500``, ``500_``)."""
    return BIN_NAMES[int(np.searchsorted(TIME_BINS, step, side="right")) - 1]


def is_red(seed: int) -> bool:
    """The pillar colour of an episode seed."""
    return int(seed) % 2 == 0


class TwoColorsEnv(gym.Env):
    """One Two-Colors episode at a time, headless. ``reset(seed=s)`` picks the colour from ``s``.

    ``info`` carries ``is_red`` (float 0/1), ``health``, the episode's counts of ``good`` (health rose) and
    ``bad`` (health fell by more than the floor can take in a step) pickups, the same per time bin
    (``good_0_90``, ``bad_0_90``, ``good_90_500``, ..., ``bad_500_``) and, with ``privileged=True``, ``state``:
    the player's position/angle and every item's and the pillar's position, for the privileged expert. With
    ``visible=True`` it carries ``view`` instead: the player's position/angle and only the objects drawn in the
    current frame (the engine's labels buffer: on screen, not hidden behind others, big enough to show in the
    64 × 112 observation), for the expert that acts on what the agent sees. ``mark_colour=True`` (a
    diagnosis, not the task) paints the top-left 6 × 6 pixels of every frame in the pillar's colour, so the
    colour is in view at every step and no memory is needed.
    """

    metadata = {"render_modes": []}

    def __init__(self, timeout: int = DEFAULT_TIMEOUT, frame_skip: int = FRAME_SKIP,
                 scenario: ScenarioConfig | None = None, privileged: bool = False, visible: bool = False,
                 mark_colour: bool = False):
        if timeout < 1 or frame_skip < 1:
            raise ValueError(f"timeout and frame_skip must be >= 1, got {timeout} and {frame_skip}")
        self.timeout, self.frame_skip, self.privileged, self.visible = timeout, frame_skip, privileged, visible
        self.mark_colour = mark_colour
        self.observation_space = gym.spaces.Box(0, 255, OBS_SHAPE, np.uint8)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        g = vzd.DoomGame()
        wad = scenario_path(scenario or ScenarioConfig())
        g.set_doom_scenario_path(str(wad))
        g.set_doom_config_path(str(wad.with_name("_vizdoom.ini")))  # not into the working directory
        g.set_doom_map(MAPS[True])
        g.set_screen_resolution(vzd.ScreenResolution.RES_256X144)
        g.set_screen_format(vzd.ScreenFormat.RGB24)
        for setting in (g.set_render_hud, g.set_render_weapon, g.set_render_crosshair, g.set_render_decals,
                        g.set_render_particles, g.set_render_messages, g.set_render_screen_flashes,
                        g.set_window_visible, g.set_sound_enabled):
            setting(False)
        g.set_available_buttons(list(BUTTONS))
        g.set_available_game_variables([vzd.GameVariable.HEALTH, *POSE])
        g.set_objects_info_enabled(privileged)
        g.set_labels_buffer_enabled(visible)
        g.set_living_reward(LIVING_REWARD)
        g.set_episode_timeout(ENGINE_TIMEOUT)
        g.set_mode(vzd.Mode.PLAYER)
        g.init()
        self.game = g
        # The engine is a child process that outlives a controller that never calls close(): close it when
        # this env is collected, at interpreter exit and when a multiprocessing worker exits.
        Finalize(self, g.close, exitpriority=0)
        self.t, self.health, self.red = 0, 100.0, True
        self.counts = dict.fromkeys(PICKUP_KEYS, 0)
        self._obs = np.zeros(OBS_SHAPE, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        self.red = is_red(seed)
        self.game.set_doom_map(MAPS[self.red])
        self.game.set_seed(int(seed) % 2**31)
        self.game.new_episode()
        self.t, self.health = 0, self.game.get_game_variable(vzd.GameVariable.HEALTH)
        self.counts = dict.fromkeys(PICKUP_KEYS, 0)
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not 0 <= int(action) < N_ACTIONS:
            raise ValueError(f"Two-Colors actions are 0..{N_ACTIONS - 1}, got {action}")
        if self.game.is_episode_finished():  # stepped again after the end (vector envs without autoreset)
            return self._obs.copy(), 0.0, True, False, self._info()
        reward = self.game.make_action(list(ACTIONS[int(action)]), self.frame_skip)  # living reward per tic
        terminated = self.game.is_episode_finished()
        good = bad = False
        if not terminated:
            health = self.game.get_game_variable(vzd.GameVariable.HEALTH)
            good, bad = health > self.health, self.health - health > FLOOR_DAMAGE  # the floor takes at most 8
            reward += PICKUP_REWARD * good
            self.health = health
        elif self.game.is_player_dead():
            bad = self.health > FLOOR_DAMAGE  # killed by more than the floor can do: a wrong item
            self.health = 0.0
        for kind, happened in (("good", good), ("bad", bad)):
            self.counts[kind] += happened
            self.counts[f"{kind}_{time_bin(self.t)}"] += happened
        self.t += 1
        truncated = not terminated and self.t >= self.timeout
        return self._observe(), float(reward), terminated, truncated, self._info()

    def _observe(self) -> np.ndarray:
        state = self.game.get_state()
        if state is not None:  # None once the episode is over: keep the last frame
            img = cv2.resize(state.screen_buffer, OBS_SHAPE[:0:-1], interpolation=cv2.INTER_AREA)
            self._obs = np.ascontiguousarray(img.transpose(2, 0, 1))
            if self.mark_colour:
                rgb = (255, 0, 0) if self.red else (0, 255, 0)
                self._obs[:, MARK[0], MARK[1]] = np.array(rgb, np.uint8)[:, None, None]
        return self._obs.copy()

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"is_red": float(self.red), "health": float(self.health),
                                **{k: float(v) for k, v in self.counts.items()}}
        if self.privileged:
            info["state"] = self.privileged_state()
        if self.visible:
            info["view"] = self.visible_state()
        return info

    def visible_state(self) -> dict[str, Any]:
        """The player's x, y, angle (degrees) and ``objects``: (class name, x, y) of every object drawn in the
        current frame, from the labels buffer (empty once the episode is over)."""
        state = self.game.get_state()
        if state is None:
            return {"player": None, "objects": []}
        objects = [(lab.object_name, lab.object_position_x, lab.object_position_y) for lab in state.labels
                   if min(lab.width, lab.height) >= MIN_LABEL_PIXELS]
        return {"player": tuple(self.game.get_game_variable(v) for v in POSE), "objects": objects}

    def privileged_state(self) -> dict[str, Any]:
        """Player x, y, angle (degrees) and the positions of items by class name (``objects info``)."""
        state = self.game.get_state()
        objects = state.objects if state is not None else []
        out: dict[str, Any] = {"items": {}, "player": None, "pillar": None}
        for o in objects:
            if o.name == "DoomPlayer":
                out["player"] = (o.position_x, o.position_y, o.angle)
            elif o.name.endswith("Pillar"):
                out["pillar"] = (o.position_x, o.position_y)
            elif o.name.endswith(("Heal", "Hurt")):
                out["items"].setdefault(o.name, []).append((o.position_x, o.position_y))
        return out

    def close(self) -> None:
        self.game.close()


GYM_ID = "rate/ViZDoomTwoColors-v0"  # the env's gymnasium id: Minari datasets record it, so it can be recovered


def two_colors(timeout: int = DEFAULT_TIMEOUT, pillar_tics: int | None = None,
               mark_colour: bool = False) -> TwoColorsEnv:
    """The agent's Two-Colors env (neither privileged nor visible state in ``info``) from JSON-able settings: what
    ``gym.make(GYM_ID, ...)`` builds."""
    scenario = ScenarioConfig() if pillar_tics is None else ScenarioConfig(pillar_tics=pillar_tics)
    return TwoColorsEnv(timeout=timeout, scenario=scenario, mark_colour=mark_colour)


gym.register(GYM_ID, entry_point=f"{__name__}:two_colors")  # a string: the spec serialises to JSON
