"""Objective combiners: the ``[B, K]`` reward matrix -> one scalar objective per completion ``[B]``."""
from __future__ import annotations

from typing import Callable

import numpy as np

from rlpost.registry import Registry

CombinerFn = Callable[..., np.ndarray]

COMBINERS: Registry[CombinerFn] = Registry("objective combiner")


@COMBINERS.register("fixed")
def fixed(values: np.ndarray, weights: list[float]) -> np.ndarray:
    """Weighted sum of the reward columns. A NaN in a column with non-zero weight makes that row NaN;
    zero-weight columns are ignored, NaN or not."""
    values = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if values.ndim != 2 or w.shape != (values.shape[1],):
        raise ValueError(f"expected values [B, K] and K weights, got values {values.shape} and {w.shape[0]} weights")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {list(weights)}")
    used = w != 0
    # Selecting the columns (not multiplying by 0) keeps a NaN in a zero-weight column out of the sum.
    return (values[:, used] * w[used]).sum(axis=1)


fixed.row_wise = True  # each row's scalar depends on that row only: a streamed step may score it in parts
