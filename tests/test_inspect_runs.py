"""RATE_model.tools.report (results tables) and RATE_model.tools.plots (learning curves) on hand-made run folders."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from RATE_model.tools import plots, report

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def write_seed(root: Path, seed: int, metrics: dict, best: dict | None = None) -> Path:
    """A seed folder holding a results.json shaped like the one a training command writes."""
    seed_dir = root / f"seed_{seed}"
    seed_dir.mkdir(parents=True)
    result = {"metrics": metrics, "train_seconds": 1.0, "eval_seconds": 0.5, "optimizer_steps": 100}
    if best is not None:
        result["best_on_validation"] = best
    (seed_dir / "results.json").write_text(json.dumps(result))
    return seed_dir


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """runs/tmaze/RATE: 3 seeds (best_on_validation in two, a metric missing in one, non-numeric and _sem
    keys); runs/tmaze/DT: one seed, no best_on_validation."""
    rate = tmp_path / "runs" / "tmaze" / "RATE"
    extra = {"episodes": [1, 0], "per_length": {"9": 1.0}, "note": "x", "30_sem": 0.1}
    write_seed(rate, 1, {"30": 1.0, "90": 0.2, **extra}, {"step": 50, "score": 1.0, "metrics": {"30": 1.0}})
    write_seed(rate, 2, {"30": 0.5, "90": 0.4, **extra}, {"step": 60, "score": 0.8, "metrics": {"30": 0.8}})
    write_seed(rate, 10, {"30": 0.0}, None)
    write_seed(tmp_path / "runs" / "tmaze" / "DT", 1, {"30": 0.25, "90": 12.34}, None)
    (rate / "results.json").write_text(json.dumps({"env": "tmaze", "runs": {}, "mean": {}}))  # not read
    return tmp_path / "runs"


def markdown_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]


def test_mean_sem_over_seeds(runs: Path):
    groups = report.load_runs([str(runs / "tmaze" / "*")])
    assert [g.label for g in groups] == ["tmaze/DT", "tmaze/RATE"]
    assert list(groups[1].seeds) == ["seed_1", "seed_2", "seed_10"]
    names, rows = report.rows(groups)
    assert names == ["30", "90"]  # lists, dicts, strings and *_sem keys are not metrics
    rate_last = next(r for r in rows if r.group.label == "tmaze/RATE" and r.selection == "last")
    cell = rate_last.cells["30"]
    assert (cell.mean, cell.n) == (0.5, 3)
    assert cell.sem == pytest.approx(np.std([1.0, 0.5, 0.0], ddof=1) / math.sqrt(3)) == pytest.approx(0.288675, 1e-5)
    text = report.table(groups)
    line = next(x for x in text.splitlines() if x.startswith("tmaze/RATE") and " last " in x)
    assert "0.500 ± 0.289" in line
    assert "0.300 ± 0.100 (n=2)" in line  # "90" only in two of the three seeds


def test_single_seed_and_best_on_validation_rows(runs: Path):
    groups = report.load_runs([str(runs / "tmaze" / "DT"), str(runs / "tmaze" / "RATE")])
    _, rows = report.rows(groups)
    assert [(r.group.label, r.selection, r.seeds) for r in rows] == [
        ("tmaze/DT", "last", 1), ("tmaze/RATE", "last", 3), ("tmaze/RATE", "best_on_validation", 2)]
    text = report.table(groups)
    dt = next(x for x in text.splitlines() if x.startswith("tmaze/DT"))
    assert "±" not in dt and "0.250" in dt and "12.3" in dt
    best = next(x for x in text.splitlines() if "best_on_validation" in x)
    assert "0.900 ± 0.100" in best and best.rstrip().endswith("–")  # best metrics lack "90"


def test_paths_of_every_kind_group_by_run_folder(runs: Path):
    rate = runs / "tmaze" / "RATE"
    groups = report.load_runs([str(rate / "seed_1"), str(rate / "seed_2" / "results.json"), str(runs)])
    assert [(g.label, list(g.seeds)) for g in groups] == [
        ("tmaze/RATE", ["seed_1", "seed_2", "seed_10"]), ("tmaze/DT", ["seed_1"])]


def test_markdown_table_and_json(runs: Path, tmp_path: Path, capsys):
    out = tmp_path / "table.json"
    report.main([str(runs / "tmaze" / "*"), "--markdown", "--metrics", "30", "--json", str(out)])
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("`python -m RATE_model.tools.report ")
    table = markdown_rows(text)
    assert table[0] == ["run", "selection", "seeds", "30"]
    assert all(set(c) <= set("-:") and c for c in table[1])
    assert len(table) == 5 and all(len(r) == len(table[0]) for r in table)
    data = json.loads(out.read_text())
    assert data["metrics"] == ["30"]
    cell = data["rows"][1]["metrics"]["30"]
    assert (data["rows"][1]["run"], cell["mean"], cell["n"]) == ("tmaze/RATE", 0.5, 3)
    assert data["rows"][0]["metrics"]["30"] == {"mean": 0.25, "sem": None, "n": 1}


def test_glob_matching_nothing_exits_2_on_one_line(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "RATE_model.tools.report", str(tmp_path / "nothing" / "*")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and "nothing" in proc.stderr


@pytest.mark.parametrize("argv_extra, expect", [([], "is not valid JSON"), (["--metrics", "nope"], "unknown metric")])
def test_bad_input_is_one_line_error(runs: Path, capsys, argv_extra, expect):
    if not argv_extra:
        (runs / "tmaze" / "DT" / "seed_1" / "results.json").write_text('{"metrics": {"30": 0.')  # cut short
    with pytest.raises(SystemExit) as e:
        report.main([str(runs / "tmaze" / "*"), *argv_extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and expect in err
    if not argv_extra:
        assert str(runs / "tmaze" / "DT" / "seed_1" / "results.json") in err


def test_paired_difference_over_the_episodes_both_runs_played(tmp_path: Path, capsys):
    def episodes(returns, halves):
        pairs = enumerate(zip(returns, halves, strict=True))
        return {"return": float(np.mean(returns)),
                "episodes": [{"seed": 100 + i, "return": r, "return_second_half": h} for i, (r, h) in pairs]}

    write_seed(tmp_path / "A", 1, episodes([5.0, 9.0, 1.0], [3.0, 5.0, 1.0]))
    write_seed(tmp_path / "A", 2, episodes([7.0, 11.0, 3.0], [3.0, 7.0, 1.0]))
    b = episodes([4.0, 10.0, 0.0, 50.0], [2.0, 5.0, 0.0, 9.0])  # a fourth maze A never played: not paired
    write_seed(tmp_path / "B", 1, b)
    a_runs, b_runs = report.load_runs([str(tmp_path / "A"), str(tmp_path / "B")])
    p = report.paired(a_runs, b_runs, "return")
    diffs = [6.0 - 4.0, 10.0 - 10.0, 2.0 - 0.0]  # A averaged over its two training seeds, per maze
    assert (p.n, p.mean, p.a, p.b) == (3, pytest.approx(np.mean(diffs)), pytest.approx(6.0), pytest.approx(14 / 3))
    assert p.sem == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(3))
    report.main([str(tmp_path / "A"), str(tmp_path / "B"), "--paired", "return,return_second_half"])
    out = capsys.readouterr().out
    assert "A − " in out and "B, return: 1.333 ± 0.667 over 3 paired episodes (6.000 vs 4.667; 2 vs 1" in out
    assert "B, return_second_half: 1.000 ± 0.000 over 3" in out
    for argv, expect in [([str(tmp_path / "A"), "--paired", "return"], "two run folders"),
                         ([str(tmp_path / "A"), str(tmp_path / "B"), "--paired", "success"], "no 'success'")]:
        with pytest.raises(SystemExit):
            report.main(argv)
        assert expect in capsys.readouterr().err


def write_metrics(seed_dir: Path, loss_steps: list[int], val_steps: list[int], scale: float) -> None:
    """metrics.jsonl with train-loss rows and validation rows, and a last line cut short by a hard kill."""
    seed_dir.mkdir(parents=True)
    rows = [{"step": s, "time": 0.0, "losses/train_loss": scale / (1 + s), "charts/lr": 1e-3} for s in loss_steps]
    rows += [{"step": s, "time": 0.0, "val/score": s / 100, "val/30": s / 200, "val/return": [1, 2]} for s in val_steps]
    rows.sort(key=lambda r: r["step"])
    (seed_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 99, "los')


def test_mean_sem_curve_interpolates_onto_common_steps():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([5.0, 15.0, 25.0]), np.array([1.0, 1.0, 1.0]))
    steps, mean, sem = plots.mean_sem_curve([a, b])
    np.testing.assert_allclose(steps, [5, 10, 15, 20])
    np.testing.assert_allclose(mean, [0.75, 1.0, 1.25, 1.5])
    np.testing.assert_allclose(sem, [0.25, 0.0, 0.25, 0.5])  # two seeds: std(ddof=1)/sqrt(2) = |a - b| / 2
    steps, mean, sem = plots.mean_sem_curve([a])
    np.testing.assert_allclose(mean, a[1])
    np.testing.assert_allclose(sem, 0.0)


def test_series_and_smoothing():
    rows = [{"step": 20, "x": 2.0}, {"step": 10, "x": 1.0}, {"step": 20, "x": 3.0}, {"step": 30, "x": "n/a"}]
    steps, values = plots.series(rows, "x")
    np.testing.assert_allclose(steps, [10, 20])
    np.testing.assert_allclose(values, [1.0, 3.0])  # the last row logged at a step wins
    np.testing.assert_allclose(plots.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


def test_plot_runs_overlays_run_folders(tmp_path: Path):
    for name, scale in (("RATE", 1.0), ("DT", 2.0)):
        write_metrics(tmp_path / "tmaze" / name / "seed_1", [10, 20, 30, 40], [20, 40], scale)
        write_metrics(tmp_path / "tmaze" / name / "seed_2", [15, 25, 35, 45], [25, 45], scale)
    runs = plots.load_curves([tmp_path / "tmaze" / "RATE", tmp_path / "tmaze" / "DT"])
    assert [r.label for r in runs] == ["tmaze/RATE", "tmaze/DT"]
    assert plots.panels(runs) == ["losses/train_loss", "val/score", "val/30"]
    fig = plots.make_figure(runs, smooth=2)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_yscale() == "log"
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [15, 20, 25, 30, 35, 40])
    out = plots.plot_runs([tmp_path / "tmaze" / "*"], tmp_path / "out" / "curves.png", metrics=["val/30"])
    assert out.read_bytes()[:8] == PNG


def test_write_curves(tmp_path: Path):
    assert plots.write_curves(tmp_path / "seed_1") is None  # no metrics.jsonl
    (tmp_path / "seed_1").mkdir()
    (tmp_path / "seed_1" / "metrics.jsonl").write_text("")
    assert plots.write_curves(tmp_path / "seed_1") is None  # empty
    write_metrics(tmp_path / "seed_2", [10, 20], [20], 1.0)
    out = plots.write_curves(tmp_path / "seed_2")
    assert out == tmp_path / "seed_2" / "curves.png" and out.read_bytes()[:8] == PNG


def test_writing_figures_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path):
    """A train script run inside a notebook writes curves.png; the notebook's own figures must still show."""
    write_metrics(tmp_path / "seed_1", [10, 20], [20], 1.0)
    code = ("import sys, matplotlib; matplotlib.use('svg'); from RATE_model.tools import plots; "
            "plots.write_curves(sys.argv[1]); plots.plot_runs([sys.argv[1]], sys.argv[2]); "
            "print(matplotlib.get_backend())")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "seed_1"), str(tmp_path / "c.png")],
                         cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
    assert (tmp_path / "seed_1" / "curves.png").read_bytes()[:8] == PNG == (tmp_path / "c.png").read_bytes()[:8]


@pytest.mark.parametrize("argv, expect", [(["{run}"], "no output path"), (["{empty}", "-o", "x.png"], "no metrics")])
def test_plots_cli_errors(tmp_path: Path, capsys, argv, expect):
    write_metrics(tmp_path / "run" / "seed_1", [10], [10], 1.0)
    (tmp_path / "empty").mkdir()
    argv = [a.format(run=tmp_path / "run", empty=tmp_path / "empty") for a in argv]
    with pytest.raises(SystemExit) as e:
        plots.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and expect in err
