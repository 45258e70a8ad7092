"""Response selectors: rewards and group ids -> a keep mask over the batch."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from rlpost.registry import Registry

SelectorFn = Callable[[Tensor, Tensor], Tensor]
SELECTORS: Registry[SelectorFn] = Registry("selector")


@SELECTORS.register("keep_all")
def keep_all(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """Keep every response: ``keep = True`` for all B."""
    return torch.ones_like(group_ids, dtype=torch.bool)


@SELECTORS.register("degenerate_filter")
def degenerate_filter(rewards: Tensor, group_ids: Tensor, tol: float = 1e-8) -> Tensor:
    """Drop degenerate groups: ``keep_i = max_g(r) - min_g(r) > tol`` for i's group g.

    A group whose rewards are all equal has zero GRPO advantage everywhere; a group of size 1
    has no spread either, so it is dropped too (DAPO-style dynamic-sampling filter).
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"expected rewards [B] and group_ids [B], got {tuple(rewards.shape)} and {tuple(group_ids.shape)}"
        )
    if rewards.numel() == 0:
        return torch.zeros_like(group_ids, dtype=torch.bool)
    r = rewards if rewards.is_floating_point() else rewards.float()
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1
    hi = torch.full((n_groups,), float("-inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inv, r, "amax")
    lo = torch.full((n_groups,), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inv, r, "amin")
    return (hi - lo)[inv] > tol
