"""Select stages: clear ``batch.keep`` for rows that should not reach the learner."""
from __future__ import annotations

import torch
from torch import Tensor

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.types import Batch


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


@STAGES.register("degenerate_filter")
@stage("select", locality="group")
def degenerate_filter_stage(batch: Batch, ctx: StageContext, tol: float = 1e-8) -> None:
    """Drop groups whose kept members all scored the same, judged on the rewards as scored (before any
    shaping: a shaped all-correct group still carries no outcome signal)."""
    k = batch.keep.nonzero().flatten()
    batch.keep[k] = degenerate_filter(batch.raw_rewards[k], batch.group_ids[k], tol)


degenerate_filter_stage.drops_flat_groups = True  # beside an advantage over a cohort it drops rows with advantages (pipeline.py warns)


@STAGES.register("keep_all")
@stage("select", locality="row")
def keep_all(batch: Batch, ctx: StageContext) -> None:
    """Keep every row (a no-op: ``algo.select=[{name: keep_all}]`` reads better than an empty list)."""
