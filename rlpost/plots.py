"""PNG plots of what people would rather look at than numbers: pass@k curves, learning curves of
several runs, and the Pareto front of two metrics."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

Records = list[dict[str, Any]]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_pass_curves(curves: dict[str, dict[str, Any]], path: Path, title: str = "pass@k") -> Path:
    """One line per label from ``{"k": [...], "pass": [...], "se": [...]}`` curves, k on a log2 axis."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.errorbar(c["k"], c["pass"], yerr=c.get("se"), marker="o", ms=3, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("pass@k")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def read_metrics(run_dir: Path) -> Records:
    """The records of ``run_dir/metrics.jsonl`` in file order (FileNotFoundError when it has none)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_evals(run_dir: Path) -> Records:
    """One record per ``run_dir/eval_*.json``, its numbers keyed as metrics.jsonl keys them (``eval/<key>``)."""
    records = []
    for path in sorted(Path(run_dir).glob("eval_*.json")):
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError(f"{path}: expected a JSON object of results, got a {type(result).__name__}")
        records.append({f"eval/{k}": v for k, v in result.items() if _is_number(v)})
    return records


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metric_keys(runs: dict[str, Records]) -> list[str]:
    """Sorted keys with a number in some record of some run, ``step`` left out."""
    return sorted({k for records in runs.values() for r in records for k, v in r.items() if k != "step" and _is_number(v)})


def series(records: Records, keys: Sequence[str]) -> np.ndarray:
    """[N, len(keys)] values of the records holding a number under every key (others skipped: a metric
    logged every few steps, or NaN written as null)."""
    rows = [[r[k] for k in keys] for r in records if all(_is_number(r.get(k)) for k in keys)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(keys))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start); ``window`` 1 changes nothing."""
    c = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(len(values))
    lo = np.maximum(0, i - window + 1)
    return (c[i + 1] - c[lo]) / (i + 1 - lo)


def plot_curves(runs: dict[str, Records], keys: Sequence[str], path: Path, smooth: int = 1) -> Path:
    """One subplot per metric key, one line per run (label -> records), against the step."""
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, (label, records) in enumerate(runs.items()):
            xy = series(records, ["step", key])
            if len(xy):
                ax.plot(xy[:, 0], moving_average(xy[:, 1], smooth), color=f"C{i}", label=label)
        ax.set_title(key + (f" (moving average of {smooth})" if smooth > 1 else ""))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    return _save(fig, path)


def front_points(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """The non-dominated rows of [N, 2] ``points`` (``maximize`` per column), in order of improving
    first coordinate: the corners of the front's staircase."""
    from rlpost.algos.weighting import nondominated, oriented  # imports torch

    up = oriented(points, maximize)
    keep = np.flatnonzero(nondominated(up))
    return np.asarray(points, dtype=np.float64)[keep[np.argsort(up[keep, 0], kind="stable")]]


def _direction(key: str, maximize: bool) -> str:
    return f"{key} ({'higher' if maximize else 'lower'} is better)"


def plot_front(runs: dict[str, Records], x: str, y: str, maximize: tuple[bool, bool], path: Path) -> Path:
    """Every record's (x, y) of each run as faint dots, and each run's non-dominated set as a staircase
    with highlighted markers."""
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
    for i, (label, records) in enumerate(runs.items()):
        points = series(records, [x, y])
        if not len(points):
            continue
        front = front_points(points, maximize)
        ax.scatter(points[:, 0], points[:, 1], s=10, color=f"C{i}", alpha=0.25)
        ax.step(front[:, 0], front[:, 1], where="pre", color=f"C{i}", alpha=0.8)
        ax.scatter(front[:, 0], front[:, 1], s=36, color=f"C{i}", edgecolors="black", zorder=3, label=f"{label} ({len(front)} on front)")
    ax.set_xlabel(_direction(x, maximize[0]))
    ax.set_ylabel(_direction(y, maximize[1]))
    better = f"{'right' if maximize[0] else 'left'} and {'up' if maximize[1] else 'down'} is better"
    ax.set_title(f"Pareto front: {better}", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
