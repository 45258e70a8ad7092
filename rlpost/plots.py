"""PNG plots of what people would rather look at than numbers: pass@k curves."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_pass_curves(curves: dict[str, dict[str, Any]], path: Path, title: str = "pass@k") -> Path:
    """One line per label from ``{"k": [...], "pass": [...], "se": [...]}`` curves, k on a log2 axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.errorbar(c["k"], c["pass"], yerr=c.get("se"), marker="o", ms=3, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("pass@k")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
