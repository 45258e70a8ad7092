"""Small helpers shared by the benchmark scripts under scripts/bench/.

Only the standard library (and rich, lazily) is imported here, so a benchmark's parent process can
use these without paying for torch; versions are read from package metadata, not by importing.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

VERSIONED_PACKAGES = ("torch", "transformers", "trl", "ray", "accelerate", "datasets", "rlpost")


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info(load_before: list[float] | None = None, threads: int | None = None) -> dict[str, Any]:
    """What a benchmark number depends on: CPUs, threads, load, versions, date.

    Call ``loadavg()`` when the benchmark starts and pass it as ``load_before``; the load average at
    the time of this call is recorded as ``load_after``. ``threads`` is the torch thread count the
    benchmark set (``torch_threads`` is also read from torch when it is already imported).
    """
    torch_threads = None
    if "torch" in sys.modules:
        torch_threads = sys.modules["torch"].get_num_threads()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch_threads": torch_threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_before": load_before,
        "load_after": loadavg(),
        "versions": package_versions(),
    }


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, creating parent folders; atomic (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def median(xs: Iterable[float]) -> float:
    """Median of the finite values in ``xs``; NaN when there are none."""
    vals = sorted(float(x) for x in xs if x is not None and x == x)
    if not vals:
        return float("nan")
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else 0.5 * (vals[mid - 1] + vals[mid])


def mean(xs: Iterable[float]) -> float:
    """Mean of the finite values in ``xs``; NaN when there are none."""
    vals = [float(x) for x in xs if x is not None and x == x]
    return sum(vals) / len(vals) if vals else float("nan")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """One row per dict, the given columns in order (missing keys print empty), with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a log file: do not squeeze the table into 80 columns
        console = Console(width=200)
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    console.print(table)


def plot_runs(panels: list[tuple[str, dict[str, list[list[tuple[float, float]]]]]], path: str | Path, title: str, ylabel: str) -> None:
    """One panel per (x label, {method: one [(x, y), ...] curve per run}); a colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (xlabel, per) in zip(axes[0], panels):
        for j, (method, curves) in enumerate(per.items()):
            for i, curve in enumerate(curves):
                xs, ys = zip(*curve)
                ax.plot(xs, ys, color=f"C{j}", alpha=0.8, marker=".", label=method if i == 0 else None)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def details_parser(description: str, out_help: str) -> argparse.ArgumentParser:
    """The arguments of the scripts that read a `rlpost rerank` run's <out>.details.jsonl against qrels."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("details", help="<out>.details.jsonl of a `rlpost rerank --method grouprank` run")
    p.add_argument("--qrels", required=True)
    p.add_argument("--relevance-level", type=int, default=1)
    p.add_argument("--out", required=True, help=out_help)
    return p


def read_details(path: str | Path) -> list[dict[str, Any]]:
    """One dict per query line of a `rlpost rerank` run's <out>.details.jsonl."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
