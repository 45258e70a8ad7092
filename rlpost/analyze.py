"""`rlpost analyze-updates A B`: where and how much a training run changed a model.

Per tensor: the update sparsity (share of entries left unchanged, with a tolerance) and, for
matrices, the rank of the update, as in "Reinforcement Learning Finetunes Small Subnetworks in Large
Language Models" (Mukherjee et al., 2025): RL updates are sparse but nearly full rank.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rlpost.learner.modes.masks import changed_entries


def analyze_updates(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 0.0,
                    rank: bool = True) -> dict[str, Any]:
    """Per-tensor and total update sparsity (and update rank of matrices) from `a` to `b`."""
    names = [n for n in a if n in b]
    only = sorted(set(a) ^ set(b))
    rows, changed_total, numel_total = [], 0, 0
    for name in names:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            raise ValueError(f"tensor '{name}' has shape {tuple(x.shape)} in A and {tuple(y.shape)} in B")
        changed = int(changed_entries(x, y, tol).sum())
        row: dict[str, Any] = {
            "name": name, "shape": list(x.shape), "numel": x.numel(), "changed": changed,
            "sparsity": 1.0 - changed / max(1, x.numel()),
        }
        if rank and x.dim() == 2:
            delta = y.double() - x.double()
            # Singular values below the storage precision are rounding, not update directions.
            rtol = torch.finfo(x.dtype).eps * max(x.shape)
            row["rank"] = int(torch.linalg.matrix_rank(delta, rtol=rtol)) if changed else 0
            row["max_rank"] = min(x.shape)
            row["rank_frac"] = row["rank"] / row["max_rank"]
        rows.append(row)
        changed_total += changed
        numel_total += x.numel()
    ranked = [r for r in rows if "rank" in r]
    total = {
        "numel": numel_total, "changed": changed_total, "sparsity": 1.0 - changed_total / max(1, numel_total),
        "mean_rank_frac": sum(r["rank_frac"] for r in ranked) / len(ranked) if ranked else None,
    }
    return {"tol": tol, "tensors": rows, "total": total, "only_in_one": only}


def print_report(report: dict[str, Any], a: str, b: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"update from {a} to {b} (tol {report['tol']:g})")
    for col in ("tensor", "shape", "changed", "sparsity %", "update rank", "rank %"):
        table.add_column(col, justify="left" if col == "tensor" else "right")
    for r in report["tensors"]:
        table.add_row(
            r["name"], "x".join(map(str, r["shape"])), f"{r['changed']:,}", f"{100 * r['sparsity']:.1f}",
            f"{r['rank']}/{r['max_rank']}" if "rank" in r else "", f"{100 * r['rank_frac']:.1f}" if "rank" in r else "",
        )
    t = report["total"]
    mean_rank = f"{100 * t['mean_rank_frac']:.1f}" if t["mean_rank_frac"] is not None else ""
    table.add_row("total", "", f"{t['changed']:,}", f"{100 * t['sparsity']:.1f}", "", mean_rank, style="bold")
    Console(width=None if sys.stdout.isatty() else 140).print(table)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
