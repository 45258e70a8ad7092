"""Dynamic reward weighting (Lu et al. 2025), the pure parts: hypervolume of a Pareto front, the
meta-reward rule, and the gradient-based multiplicative-weights update.

Every objective vector here is "larger is better": minimised coordinates are negated first
(``oriented``). The combine stages that use these live in ``rlpost/algos/combine.py``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def oriented(points: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool], scale: Sequence[float] | None = None) -> np.ndarray:
    """Points [N, m] as "larger is better": minimised coordinates negated, each divided by its scale."""
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        p = p.reshape(0, len(maximize))
    sign = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    s = np.ones(p.shape[-1]) if scale is None else np.asarray(scale, dtype=np.float64)
    return p * sign / s


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume of the union of the boxes [reference, p] over the points strictly above the reference in
    every coordinate (maximisation); 0 for none. Exact, by slicing along the first coordinate."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, len(reference))
    q = np.asarray(reference, dtype=np.float64)
    p = p[(p > q).all(axis=1)]
    if len(p) == 0:
        return 0.0
    if len(q) == 1:
        return float(p[:, 0].max() - q[0])
    volume, lower = 0.0, q[0]
    for x in np.unique(p[:, 0]):  # ascending: the slab (lower, x] is covered by every point with p_1 >= x
        volume += (x - lower) * hypervolume(p[p[:, 0] >= x, 1:], q[1:])
        lower = x
    return volume


def nondominated(points: np.ndarray) -> np.ndarray:
    """[N] bool: the points no other point weakly dominates with one strict gain (maximisation);
    of equal points the first is kept."""
    p = np.asarray(points, dtype=np.float64)
    keep = np.ones(len(p), dtype=bool)
    for i in range(len(p)):
        ge = (p >= p[i]).all(axis=1)
        gt = (p > p[i]).any(axis=1)
        equal_before = (p == p[i]).all(axis=1) & (np.arange(len(p)) < i)
        keep[i] = not (ge & gt).any() and not equal_before.any()
    return keep


def add_to_front(front: np.ndarray, point: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """(the front with ``point`` when it adds volume, pruned to its non-dominated points; the volume it adds).
    Pruning changes no volume: a dominated point's box lies inside its dominator's."""
    front = np.asarray(front, dtype=np.float64).reshape(-1, len(reference))
    grown = np.vstack([front, np.asarray(point, dtype=np.float64)[None]])
    delta = hypervolume(grown, reference) - hypervolume(front, reference)
    if delta <= 0.0:
        return front, 0.0
    return grown[nondominated(grown)], float(delta)


def meta_reward(delta: float, base: float = 0.5, scale: float = 1.5) -> float:
    """``base + scale * tanh(max(delta, 0))``: 0.5 when the newest policy adds no volume, below 2 always."""
    return base + scale * math.tanh(max(delta, 0.0))


def clip_rows(grads: Tensor, max_norm: float) -> Tensor:
    """Each row scaled to norm at most ``max_norm`` (the per-objective gradient clip)."""
    norms = grads.norm(dim=1, keepdim=True)
    return grads * (max_norm / norms.clamp(min=1e-12)).clamp(max=1.0)


def influence(gram: Tensor) -> Tensor:
    """[m] ``I_i = <g_i, sum_j g_j>``: each objective's gradient projected on the unweighted sum."""
    return gram.sum(dim=1)


def exponentiated_update(weights: Tensor, step_influence: Tensor, step: float) -> Tensor:
    """``w_i exp(step * I_i) / sum_j w_j exp(step * I_j)``, in log space (mirror descent on the simplex)."""
    logits = weights.double().clamp(min=1e-300).log() + step * step_influence.double()
    return torch.softmax(logits, dim=0).to(weights.dtype)
