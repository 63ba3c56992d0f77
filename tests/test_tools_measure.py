"""``python -m RATE_model.tools.measure``: an env's scripted policies on its protocol's seeds, checked on T-Maze
where every number can be worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from RATE_model.cli import run_main
from RATE_model.envs import Environment
from RATE_model.tools import measure
from TMaze_new.TMaze_new_src.tmaze_eval import ENV as TMAZE

T = 9  # corridor length: every episode walks T - 2 cells right and turns once, T - 1 steps


def lines(argv, capsys):
    out = measure.main(argv)
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert printed == out  # one JSON line per policy on stdout, the same as returned
    return {m["policy"]: m for m in out}


def test_oracle_succeeds_on_every_seed_and_random_turns_half_of_them(capsys):
    n = 100
    got = lines(["--env", "tmaze", "--length", str(T), "--episodes", str(n), "--workers", "1"], capsys)
    assert list(got) == ["oracle", "random"]  # every policy of the env, in its order
    oracle, rand = got["oracle"], got["random"]
    assert (oracle["env"], oracle["split"], oracle["episodes"]) == ("tmaze", "test", n)
    assert oracle["return"] == oracle["success"] == 1.0 and oracle["return_sem"] == 0.0
    assert oracle["length"] == rand["length"] == T - 1
    assert oracle["flags"]["length"] == T and oracle["steps_per_s"] > 0
    # random: the turn is up when the seed's first draw is below 1/2; the goal is up on an even seed
    wins = [(np.random.default_rng([s, 1]).random() < 0.5) == (s % 2 == 0) for s in TMAZE.seeds(n)]
    p = float(np.mean(wins))
    assert 0.35 < p < 0.65
    assert rand["success"] == rand["return"] == pytest.approx(p)
    assert rand["return_sem"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))  # 0/1 returns, ddof 1


def test_sem_of_a_hand_case():
    rows = [{"seed": i, "return": r, "length": 3, "success": bool(r), "seconds": 0.5}
            for i, r in enumerate([1, 0, 0, 1])]
    line = measure.summary(TMAZE, "hand", rows)
    # mean 1/2; sample variance (4 · 1/4) / 3 = 1/3; SEM sqrt(1/3) / sqrt(4) = sqrt(1/12)
    assert line["return"] == 0.5 and line["return_sem"] == pytest.approx(math.sqrt(1 / 12))
    assert line["success"] == 0.5 and line["length"] == 3.0 and line["steps_per_s"] == 12 / 2.0
    assert "seed" not in line and "seconds" not in line


def test_two_workers_give_the_numbers_of_one(tmp_path, capsys):
    argv = ["--env", "tmaze", "--length", "30", "--episodes", "24", "--split", "validation"]
    one = measure.main([*argv, "--workers", "1", "--out", str(tmp_path / "one.jsonl")])
    two = measure.main([*argv, "--workers", "2", "--out", str(tmp_path / "two.jsonl")])
    capsys.readouterr()

    def numbers(rows):
        return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows]

    assert numbers(one) == numbers(two) and one[0]["split"] == "validation"
    files = [[json.loads(x) for x in (tmp_path / f).read_text().splitlines()] for f in ("one.jsonl", "two.jsonl")]
    episodes = [[[{k: v for k, v in e.items() if k != "seconds"} for e in r["per_episode"]] for r in f] for f in files]
    assert episodes[0] == episodes[1]
    assert [e["seed"] for e in episodes[0][0]] == TMAZE.seeds(24, "validation")  # in seed order


def test_episodes_default_to_the_protocols(capsys):
    got = lines(["--env", "tmaze", "--length", "5", "--policies", "oracle", "--workers", "1"], capsys)
    assert list(got) == ["oracle"] and got["oracle"]["episodes"] == 100  # config.yaml's eval_episodes


class Scripted(Environment):
    """An env of two scripted policies and no config.yaml: the tool needs nothing else."""

    name = "scripted_test"

    def add_measure_flags(self, parser):
        parser.add_argument("--bonus", type=float, default=0.0)

    def policies(self, args):
        return {"const": lambda seed: {"return": 1.0 + args.bonus, "length": 2, "tag": "text", "odd": seed % 2}}


def test_an_env_needs_only_its_policies(capsys, monkeypatch):
    from RATE_model import envs

    monkeypatch.setitem(envs._REGISTRY, "scripted_test", Scripted())
    (line,) = measure.main(["--env", "scripted_test", "--episodes", "4", "--bonus", "0.5", "--workers", "2"])
    capsys.readouterr()
    assert (line["return"], line["length"], line["odd"]) == (1.5, 2.0, 0.5)  # seeds 10^6..10^6+3
    assert "tag" not in line and line["flags"] == {"bonus": 0.5}  # only numeric extras are averaged


@pytest.mark.parametrize("argv, words", [
    ([], "--env is required; known:"),
    (["--env", "nowhere"], "unknown environment 'nowhere'; known:"),
    (["--env", "tmaze", "--policies", "oracle,expert"], "unknown policy 'expert' for tmaze; known: oracle, random"),
    (["--env", "tmaze", "--episodes", "0"], "--episodes"),
    (["--env", "tmaze", "--workers", "0"], "--workers"),
    (["--env", "tmaze", "--length", "2"], "--length"),
    (["--env", "tmaze", "--split", "train"], "--split"),
    (["--env", "tmaze", "--eval_lengths", "2"], "--eval_lengths"),
    (["--env", "tmaze", "--no_such_flag"], "--no_such_flag"),
])
def test_bad_flags_are_one_line_errors(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_main(measure.main, [*argv, "--out", "o.jsonl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and words in err[0], err
    assert not any(tmp_path.iterdir())
