"""`rlpost plot`: learning curves and a Pareto front from run directories, one-line user errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlpost.cli import main
from rlpost.plots import front_points, moving_average, read_metrics, series


def write_run(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    """Two runs of 6 steps: eval every 2 steps (a NaN at step 2 of run b), a distribution metric too."""
    out = []
    for name, shift in (("a", 0.0), ("b", 0.1)):
        rows = []
        for step in range(6):
            row = {"step": step, "reward/mean": 0.1 * step + shift, "val/correctness": 0.5 + shift + 0.05 * step,
                   "val/length": 40.0 - step * (1 + shift), "rollout/samples": [1.0, 2.0]}
            if step % 2 == 0:
                row["eval/greedy_accuracy"] = None if (name, step) == ("b", 2) else 0.2 + 0.1 * step
            rows.append(row)
        out.append(write_run(tmp_path / name, rows))
    return out


def error_line(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("rlpost: error:")]
    assert len(lines) == 1
    return lines[0]


def test_curves_and_front_are_written(runs, tmp_path, capsys):
    from matplotlib.image import imread

    out = tmp_path / "figs" / "p.png"
    args = ["plot", *map(str, runs), "--smooth", "2", "--front", "val/correctness", "val/length", "--minimize", "val/length", "--out", str(out)]
    assert main(args) == 0
    front = tmp_path / "figs" / "p_front.png"
    assert capsys.readouterr().out.split() == ["wrote", str(out), "wrote", str(front)]
    assert imread(out).shape[:2] == (420, 1200)  # the two default metrics side by side, 5 x 3.5 in at 120 dpi
    assert front.stat().st_size > 1000


def test_front_from_eval_files(runs, tmp_path):
    for run, accs in zip(runs, ([0.3, 0.5], [0.4, 0.45])):
        for i, acc in enumerate(accs):
            (run / f"eval_step{i}.json").write_text(json.dumps({"greedy_accuracy": acc, "mean_length": 10.0 - i, "pass_curve": {}}))
    out = tmp_path / "e.png"
    args = ["plot", *map(str, runs), "--metrics", "reward/mean", "--front-from", "eval",
            "--front", "eval/greedy_accuracy", "eval/mean_length", "--minimize", "eval/mean_length", "--out", str(out)]
    assert main(args) == 0
    assert out.stat().st_size > 1000 and (tmp_path / "e_front.png").stat().st_size > 1000


def test_front_points_on_hand_numbers():
    points = np.array([[1, 5], [2, 4], [2, 3], [0, 6], [3, 1], [1, 5]], dtype=float)
    # both maximised: (2, 3) is dominated by (2, 4); the repeated (1, 5) counts once; ordered by x.
    assert front_points(points, [True, True]).tolist() == [[0, 6], [1, 5], [2, 4], [3, 1]]
    # y minimised: (3, 1) has the largest x and the smallest y, so it alone is on the front.
    assert front_points(points, [True, False]).tolist() == [[3, 1]]
    # x minimised, y maximised: (0, 6) beats everything.
    assert front_points(points, [False, True]).tolist() == [[0, 6]]
    trade_off = np.array([[1, 1], [2, 3], [3, 2], [0, 0.5]])
    # y minimised: (3, 2) dominates (2, 3); ordered by improving x.
    assert front_points(trade_off, [True, False]).tolist() == [[0, 0.5], [1, 1], [3, 2]]
    assert front_points(trade_off, [False, False]).tolist() == [[0, 0.5]]
    # x minimised, y maximised: (2, 3) dominates (3, 2); ordered by improving (decreasing) x.
    assert front_points(trade_off, [False, True]).tolist() == [[2, 3], [1, 1], [0, 0.5]]


def test_series_skips_missing_and_null_points_and_smooths(runs):
    records = read_metrics(runs[1])
    xy = series(records, ["step", "eval/greedy_accuracy"])
    assert xy[:, 0].tolist() == [0, 4]  # step 2 logged NaN as null, odd steps have no eval
    assert series(records, ["step", "rollout/samples"]).shape == (0, 2)  # a distribution is not a curve
    assert moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert moving_average(np.array([1.0, 3.0]), 1).tolist() == [1.0, 3.0]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--metrics", "reward/mean", "eval/pass@8"], "metric 'eval/pass@8' is in none of the runs' metrics.jsonl; available: eval/greedy_accuracy, reward/mean"),
        (["--front", "val/correctness", "val/size"], "metric 'val/size'"),
        (["--front", "val/correctness", "val/length", "--minimize", "val/size"], "only --front keys can be minimised"),
        (["--front-from", "eval", "--front", "eval/greedy_accuracy", "eval/mean_length"], "in none of the runs' eval_*.json; available: none"),
        (["--labels", "one"], "--labels needs 2 distinct labels"),
        (["--smooth", "0"], "--smooth must be at least 1"),
    ],
)
def test_user_errors_exit_2_with_one_line(runs, tmp_path, capsys, extra, expected):
    assert main(["plot", *map(str, runs), *extra, "--out", str(tmp_path / "p.png")]) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "p.png").exists()  # nothing is drawn before every key is checked


def test_a_run_without_metrics_is_named(runs, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["plot", str(runs[0]), str(missing), "--out", str(tmp_path / "p.png")]) == 2
    assert error_line(capsys) == f"rlpost: error: no metrics.jsonl in {missing}"
