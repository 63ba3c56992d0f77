"""Scripted Minigrid-Memory expert with privileged access to the simulator state.

The expert acts only on what its own view has shown, in three legs:
1. make sure the cue object is in its 3×3 view (walking back to the start room when it starts further east);
2. walk to the T-junction and turn to look at one of the two junction objects (north or south, drawn
   per episode from its noise generator);
3. once a junction object has been in view, walk to the cell beside the object that matches the cue:
   straight ahead when the one it looks at matches, else turning round to the other side.
Every leg follows a shortest path: a breadth-first search over (cell, heading) states, run backwards
from the goal states once per leg, gives the number of actions left from every state, and the expert
takes the action whose successor is closest. With probability ``epsilon`` it takes a random action
instead (never the one that would touch the wrong object), and the distance map puts it back on track,
so noisy episodes still end in success unless the timeout runs out.

Why leg 2: from the hallway and the junction the 3×3 view never shows the junction objects (they are
two cells north and south of the junction), so an expert that turns straight to the matching side
(``look_first=False``, the first version) makes its one cue-dependent choice on privileged state: its
turn follows the unseen object arrangement and is independent of the cue (measured: P(left | key) =
0.50, P(left | ball) = 0.46 over 400 episodes on 11×11), so no model can learn it from the data. Looking
first makes the decision (go ahead or turn round) a function of the cue and the current frame.
Seeing the cue matters too: a dataset whose episodes never show the cue could not teach memory.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX

from MinigridMemory.MinigridMemory_src.minigrid_env import FORWARD, LEFT, N_ACTIONS, RIGHT, VIEW, MinigridMemory

CUE_OBJECTS = (OBJECT_TO_IDX["key"], OBJECT_TO_IDX["ball"])


def _successor(free: np.ndarray, x: int, y: int, d: int, a: int) -> tuple[int, int, int]:
    if a == LEFT:
        return x, y, (d - 1) % 4
    if a == RIGHT:
        return x, y, (d + 1) % 4
    dx, dy = DIR_TO_VEC[d]
    nx, ny = x + dx, y + dy
    return (nx, ny, d) if free[nx, ny] else (x, y, d)


def distance_map(free: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Actions needed from each (x, y, heading) to reach a state where ``goal`` [W, H, 4] holds.

    ``free`` [W, H] marks the cells the agent may stand on. Unreachable states get a large value.
    """
    W, H = free.shape
    dist = np.full((W, H, 4), np.iinfo(np.int32).max, np.int32)
    queue = deque()
    for x, y, d in zip(*np.nonzero(goal & free[:, :, None]), strict=True):
        dist[x, y, d] = 0
        queue.append((int(x), int(y), int(d)))
    while queue:
        x, y, d = queue.popleft()
        nd = dist[x, y, d] + 1
        # predecessors: a turn from the same cell, or a forward step from the cell behind
        dx, dy = DIR_TO_VEC[d]
        preds = [(x, y, (d + 1) % 4), (x, y, (d - 1) % 4)]
        if free[x - dx, y - dy]:
            preds.append((x - dx, y - dy, d))
        for p in preds:
            if dist[p] > nd:
                dist[p] = nd
                queue.append(p)
    return dist


class MemoryExpert:
    """Acts in one :class:`MinigridMemory` episode; call :meth:`reset` after the env's reset."""

    def __init__(self, env: MinigridMemory, epsilon: float = 0.0, rng: np.random.Generator | None = None,
                 look_first: bool = True):
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.env, self.epsilon, self.look_first = env, epsilon, look_first
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def reset(self) -> None:
        """Read the new episode's layout and plan both legs."""
        g = self.env.env
        W, H = g.width, g.height
        self.free = np.array([[g.grid.get(x, y) is None for y in range(H)] for x in range(W)])
        self.success = tuple(int(v) for v in g.success_pos)
        self.failure = tuple(int(v) for v in g.failure_pos)
        self.free_safe = self.free.copy()
        self.free_safe[self.failure] = False  # touching the wrong object ends the episode
        cue = (1, H // 2 - 1)  # where MemoryEnv puts the cue object
        self.cue_type = g.grid.get(*cue).type
        self.hallway_end = self.success[0] - 1
        # leg 1: any heading from which the cue lies inside the view rectangle
        see = np.zeros((W, H, 4), bool)
        xs, ys = np.meshgrid(np.arange(W), np.arange(H), indexing="ij")
        for d in range(4):
            fx, fy = DIR_TO_VEC[d]
            rx, ry = DIR_TO_VEC[(d + 1) % 4]
            ahead = (cue[0] - xs) * fx + (cue[1] - ys) * fy
            side = (cue[0] - xs) * rx + (cue[1] - ys) * ry
            see[:, :, d] = (ahead >= 0) & (ahead < VIEW) & (np.abs(side) <= VIEW // 2)
        self.to_cue = distance_map(self.free_safe, see)
        goal = np.zeros((W, H, 4), bool)
        goal[self.success] = True
        self.to_goal = distance_map(self.free_safe, goal)
        # leg 2: at the junction, facing one of the two junction objects (north = heading 3, south = 1)
        self.junction_objects = [(self.success[0], H // 2 - 2), (self.success[0], H // 2 + 2)]
        look = np.zeros((W, H, 4), bool)
        look[self.success[0], H // 2, 3 if self.rng.random() < 0.5 else 1] = True
        self.to_look = distance_map(self.free_safe, look)
        self.cue_seen = False
        self.arrangement_seen = not self.look_first
        self.observe()

    def observe(self) -> None:
        """Record whether the current view shows the cue, or a junction object (call after every env step)."""
        g = self.env.env
        if not self.cue_seen and g.agent_pos[0] < self.hallway_end:
            image = g.gen_obs()["image"]
            self.cue_seen = bool(np.isin(image[:, :, 0], CUE_OBJECTS).any())
        if self.cue_seen and not self.arrangement_seen:
            self.arrangement_seen = any(g.in_view(*p) for p in self.junction_objects)

    def greedy_action(self) -> int:
        """The first action of a shortest path for the current leg."""
        g = self.env.env
        dist = self.to_cue if not self.cue_seen else self.to_goal if self.arrangement_seen else self.to_look
        x, y, d = int(g.agent_pos[0]), int(g.agent_pos[1]), int(g.agent_dir)
        scores = [dist[_successor(self.free_safe, x, y, d, a)] for a in (FORWARD, LEFT, RIGHT)]
        return (FORWARD, LEFT, RIGHT)[int(np.argmin(scores))]

    def act(self) -> int:
        """Greedy action, or with probability epsilon a random one that does not touch the wrong object."""
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            g = self.env.env
            x, y, d = int(g.agent_pos[0]), int(g.agent_pos[1]), int(g.agent_dir)
            safe = [a for a in range(N_ACTIONS) if _successor(self.free, x, y, d, a)[:2] != self.failure]
            return int(self.rng.choice(safe))
        return self.greedy_action()


def expert_episode(size: int, seed: int, epsilon: float = 0.0, timeout: int | None = None,
                   noise_seed: int | None = None, look_first: bool = True) -> dict[str, np.ndarray | bool]:
    """One expert episode: obs uint8 [T, 3, 84, 84], action int64 [T], reward float32 [T], done bool [T],
    plus ``success`` and ``cue_seen``. obs[t] is the observation on which action[t] was taken."""
    env = MinigridMemory(size, timeout)
    expert = MemoryExpert(env, epsilon, np.random.default_rng(seed if noise_seed is None else noise_seed), look_first)
    o = env.reset(seed)
    expert.reset()
    obs, actions, rewards, dones = [], [], [], []
    done, success = False, False
    while not done:
        a = expert.act()
        obs.append(o)
        o, r, done, success = env.step(a)
        expert.observe()
        actions.append(a)
        rewards.append(r)
        dones.append(done)
    return {"obs": np.stack(obs), "action": np.asarray(actions, np.int64),
            "reward": np.asarray(rewards, np.float32), "done": np.asarray(dones, bool),
            "success": success, "cue_seen": expert.cue_seen}
