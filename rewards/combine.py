"""The recipe's weighted sum of the reward matrix ``[B, K] -> [B]``: each completion's scalar reward as
scored (samplers and metrics read it; the pipeline's combine stage starts from the same function)."""
from __future__ import annotations

import numpy as np


def weighted_sum(values: np.ndarray, weights: list[float]) -> np.ndarray:
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
