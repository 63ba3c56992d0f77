"""The history-only experts of POPGym's game families (POPGym/POPGym_src/experts_games.py).

The rule: an expert's actions are a function of the observations so far, its own past actions, the task's
constants and its rng. Checked three ways (same seeds give the same actions; recorded observations replayed
without an env give the same actions; hidden state changed where it has not been observed yet leaves the
actions unchanged until an observation differs), then the quality on each Easy task against random play.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("popgym")

from POPGym.POPGym_src.experts_games import GAME_EXPERTS  # noqa: E402
from POPGym.POPGym_src.popgym_env import LEVELS, flat_obs, make, parse_task, task_id  # noqa: E402

FAMILIES = sorted(GAME_EXPERTS)
# (env.unwrapped, actions so far, the action the unchanged run takes next, rng) -> None
Mutation = Callable[[Any, list[tuple], tuple, np.random.Generator], None]


def key(x: Any) -> tuple:
    """An observation or action as a hashable tuple of numbers."""
    return tuple(flat_obs(x).tolist())


def play(task: str, seed: int, rng_seed: int, mutate: Mutation | None = None, at: int = 0, nxt: tuple = (),
         max_steps: int = 10_000) -> tuple[list[tuple], list[tuple], float, list[Any]]:
    """One episode of the task's expert: (actions, observations o_0..o_T, return, raw observations).

    ``mutate(env.unwrapped, actions so far, nxt, rng)`` runs once, before the action of step ``at``."""
    env = make(task)
    expert = GAME_EXPERTS[parse_task(task)[0]](task, np.random.default_rng(rng_seed))
    obs, _ = env.reset(seed=seed)
    expert.reset(obs)
    actions, observations, raw, ret = [], [key(obs)], [obs], 0.0
    for t in range(max_steps):
        if mutate is not None and t == at:
            mutate(env.unwrapped, actions, nxt, np.random.default_rng(12345))
        a = expert.act()
        assert env.action_space.contains(np.asarray(a, dtype=np.int64) if isinstance(a, np.ndarray) else a), a
        actions.append(key(a))
        obs, r, term, trunc, _ = env.step(a)
        expert.observe(obs)
        observations.append(key(obs))
        raw.append(obs)
        ret += float(r)
        if term or trunc:
            break
    env.close()
    return actions, observations, ret, raw


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_and_replayable(family: str, level: str) -> None:
    """Equal seeds give equal actions; a fresh expert fed the recorded observations (no env) acts the same."""
    task = task_id(family, level)
    actions, _, _, raw = play(task, seed=3, rng_seed=7)
    assert play(task, seed=3, rng_seed=7)[0] == actions
    expert = GAME_EXPERTS[family](task, np.random.default_rng(7))
    assert not any(hasattr(v, "step") and hasattr(v, "reset") for v in vars(expert).values()), "keeps an env"
    expert.reset(raw[0])
    replayed = []
    for obs in raw[1:]:
        replayed.append(key(expert.act()))
        expert.observe(obs)
    assert replayed == actions


def _shuffle_undealt(deck: Any, rng: np.random.Generator) -> None:
    # Cards are dealt from the end of deck.idx[:len(deck)]: the undealt ones are that prefix.
    n = len(deck)
    deck.idx[:n] = rng.permutation(deck.idx[:n])


def _decks(*names: str) -> Mutation:
    def mutate(u: Any, actions: list[tuple], nxt: tuple, rng: np.random.Generator) -> None:
        for name in names:
            _shuffle_undealt(getattr(u, name), rng)
    return mutate


# The board mutations change the very cell the unchanged run targets next, so an expert that peeked at the
# board would act differently there, before any observation differs.
def _battleship(u: Any, actions: list[tuple], nxt: tuple, rng: np.random.Generator) -> None:
    shot = {(int(a[0]), int(a[1])) for a in actions}
    target = (int(nxt[0]), int(nxt[1]))
    unshot = [(r, c) for r in range(u.board_size) for c in range(u.board_size) if (r, c) not in shot | {target}]
    for cell in [target] + [unshot[i] for i in rng.choice(len(unshot), 11, replace=False)]:
        u.board[cell] = 1 - u.board[cell]


def _minesweeper(u: Any, actions: list[tuple], nxt: tuple, rng: np.random.Generator) -> None:
    grid = u.hidden_grid  # 0 clear, 1 mine, 2 clicked
    target = (int(nxt[0]), int(nxt[1]))
    target_mined = grid[target] != 1  # the target flips; the other mines move to random unclicked cells
    n_mines = int((grid == 1).sum())
    cand = [tuple(x) for x in np.argwhere(grid != 2) if tuple(x) != target]
    grid[grid == 1] = 0
    grid[target] = int(target_mined)
    for i in rng.choice(len(cand), n_mines - int(target_mined), replace=False):
        grid[cand[i]] = 1
    pad = np.pad((grid == 1).astype(np.int8), 1)
    h, w = grid.shape
    u.neighbor_grid[:] = sum(pad[1 + i:1 + i + h, 1 + j:1 + j + w] for i in (-1, 0, 1) for j in (-1, 0, 1))


def _bandit(u: Any, actions: list[tuple], nxt: tuple, rng: np.random.Generator) -> None:
    u.bandits = rng.random(u.num_bandits, dtype=np.float32)
    u.bandits[int(nxt[0])] = 1.0 - u.bandits[int(nxt[0])]


def _concentration(u: Any, actions: list[tuple], nxt: tuple, rng: np.random.Generator) -> None:
    flipped = {int(a[0]) for a in actions}
    unseen = np.array([i for i in range(u.deck.num_cards) if i not in flipped])
    u.deck.idx[unseen] = u.deck.idx[rng.permutation(unseen)]


MUTATIONS: dict[str, tuple[Mutation, int]] = {  # family -> (mutation, step it happens at)
    "Battleship": (_battleship, 4),
    "MineSweeper": (_minesweeper, 1),
    "MultiarmedBandit": (_bandit, 5),
    "Concentration": (_concentration, 6),
    "CountRecall": (_decks("value_deck", "query_deck"), 3),
    "HigherLower": (_decks("deck"), 3),
    "Autoencode": (_decks("deck"), 3),
    "RepeatFirst": (_decks("deck"), 3),
    "RepeatPrevious": (_decks("deck"), 3),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_state_is_not_read(family: str, level: str) -> None:
    """Changing unobserved hidden state mid-episode changes no action before the first observation it changes."""
    mutate, at = MUTATIONS[family]
    task = task_id(family, level)
    diverged = 0
    for seed in range(4):
        actions, observations, _, _ = play(task, seed, rng_seed=seed)
        if len(actions) <= at:
            continue  # over before the change (a MineSweeper mine on the first click)
        m_actions, m_observations, _, _ = play(task, seed, rng_seed=seed, mutate=mutate, at=at, nxt=actions[at])
        j = next((i for i, (o, p) in enumerate(zip(observations, m_observations, strict=False)) if o != p), None)
        if j is None:
            continue
        diverged += 1
        # The action of step i is chosen on o_0..o_{i-1}: the first j actions saw identical observations.
        assert m_actions[:j] == actions[:j], f"seed {seed}: an action changed before observation {j} did"
    assert diverged, "the change never showed in an observation: the test checks nothing"


def _random_return(task: str, seed: int) -> float:
    env = make(task)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    ret, done = 0.0, False
    while not done:
        _, r, term, trunc, _ = env.step(env.action_space.sample())
        ret, done = ret + float(r), term or trunc
    env.close()
    return ret


# Floors on the mean return over seeds 0..19 of the Easy task (measured over these seeds, with a margin).
FLOORS = {"Autoencode": 0.99, "RepeatFirst": 0.99, "RepeatPrevious": 0.99, "CountRecall": 0.99,
          "Concentration": 0.7, "HigherLower": 0.4, "MultiarmedBandit": 0.55, "Battleship": 0.45,
          "MineSweeper": 0.35}


@pytest.mark.parametrize("family", FAMILIES)
def test_quality_on_easy(family: str) -> None:
    """The expert's mean return over 20 seeds reaches a floor that random play stays below."""
    task = task_id(family, "Easy")
    seeds = range(20)
    returns = []
    for s in seeds:
        actions, _, ret, _ = play(task, s, rng_seed=s)
        returns.append(ret)
        if family in ("Battleship", "MineSweeper"):
            assert len(set(actions)) == len(actions), "fired at / clicked a cell twice"
    random_mean = float(np.mean([_random_return(task, s) for s in seeds]))
    assert random_mean < FLOORS[family], f"random play reaches the floor ({random_mean:.3f})"
    mean = float(np.mean(returns))
    assert mean >= FLOORS[family], f"expert {mean:.3f} < {FLOORS[family]} (random {random_mean:.3f})"
