"""Loss aggregation modes: per-token losses [B, T] and a mask [B, T] -> one scalar.

Every mode has the signature ``fn(per_token, mask, *, norm=None, **kwargs) -> scalar``. The mask
is float (0/1, or weights). ``norm``, when given, replaces the mode's data-dependent denominator,
so that a learner splitting one mini-batch into micro-batches can divide every micro-batch by the
same global count and sum the results. An empty mask gives 0 (still attached to the graph), not NaN.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from rlpost.registry import Registry

AggregationFn = Callable[..., Tensor]
AGGREGATIONS: Registry[AggregationFn] = Registry("loss aggregation")


def _safe_div(total: Tensor, denom: Tensor | float) -> Tensor:
    """``total / denom``, with a zero denominator treated as 1 (the total is then 0 anyway)."""
    denom = torch.as_tensor(denom, dtype=total.dtype, device=total.device)
    return total / torch.where(denom != 0, denom, torch.ones_like(denom))


def _check(per_token: Tensor, mask: Tensor) -> Tensor:
    if per_token.dim() != 2 or mask.shape != per_token.shape:
        raise ValueError(
            f"expected per_token and mask of one [B, T] shape, got {tuple(per_token.shape)} and {tuple(mask.shape)}"
        )
    return mask.to(per_token.dtype)


@AGGREGATIONS.register("token-mean")
def token_mean(per_token: Tensor, mask: Tensor, *, norm: float | None = None) -> Tensor:
    """``sum(per_token * mask) / sum(mask)``; ``norm`` replaces ``sum(mask)`` when given."""
    mask = _check(per_token, mask)
    total = (per_token * mask).sum()
    return _safe_div(total, mask.sum() if norm is None else norm)


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(per_token: Tensor, mask: Tensor, *, norm: float | None = None) -> Tensor:
    """``sum_i [sum_t(per_token * mask)_i / sum_t mask_i] / n_seq``.

    ``n_seq`` counts the sequences with a non-zero mask (padding rows do not dilute);
    ``norm`` replaces it when given.
    """
    mask = _check(per_token, mask)
    seq_weight = mask.sum(-1)
    seq_loss = _safe_div((per_token * mask).sum(-1), seq_weight)
    n_seq = (seq_weight != 0).sum() if norm is None else norm
    return _safe_div(seq_loss.sum(), n_seq)


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    per_token: Tensor, mask: Tensor, *, norm: float | None = None, max_len: int | None = None
) -> Tensor:
    """Dr. GRPO: ``sum(per_token * mask) / (n_seq * max_len)``.

    ``max_len`` is the generation budget, a constant (default: T, the padded width), so that
    long and short responses are not re-weighted by their own length. ``n_seq`` counts the
    sequences with a non-zero mask; ``norm`` replaces it when given.
    """
    mask = _check(per_token, mask)
    n_seq = (mask.sum(-1) != 0).sum() if norm is None else norm
    width = per_token.shape[-1] if max_len is None else max_len
    return _safe_div((per_token * mask).sum(), n_seq * width)


def aggregation_kwargs(name: str, token_weights: list[list[float]], max_len: int) -> dict:
    """Global denominators for a mini-batch processed in micro-batches, so that the micro-batch
    losses add up to the mini-batch loss: computed from every row's token weights (the mask the
    loss uses), so a row or token weighted 0 does not count. Plug-in aggregations get none
    (per-micro-batch norm)."""
    n_seq = float(sum(1 for w in token_weights if any(x != 0 for x in w)))
    if name == "token-mean":
        return {"norm": float(sum(sum(w) for w in token_weights))}
    if name == "seq-mean-token-mean":
        return {"norm": n_seq}
    if name == "seq-mean-token-sum-norm":
        return {"norm": n_seq, "max_len": max_len}
    return {}
