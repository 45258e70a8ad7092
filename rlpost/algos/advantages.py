"""Outcome advantage estimators: one scalar reward per response -> one advantage per response.

Every estimator has the signature ``fn(rewards [B] float, group_ids [B] long, eps=1e-6) -> [B]``.
Responses to the same prompt share a group id; groups may be ragged, and ids need not be
contiguous or sorted. Statistics are computed per group without a Python loop over groups.
Each is registered as an ``advantage`` stage (``algo.advantage``) over the batch's kept rows.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.types import Batch

AdvantageFn = Callable[..., Tensor]


class GroupStats(NamedTuple):
    """Per-response view of its group's statistics (all tensors are [B])."""

    size: Tensor  # number of responses in the group (float)
    sum: Tensor  # sum of rewards in the group
    mean: Tensor  # mean reward of the group
    std: Tensor  # unbiased (N-1) std; 0 for groups of size 1


def _as_float(rewards: Tensor) -> Tensor:
    return rewards if rewards.is_floating_point() else rewards.float()


def group_stats(rewards: Tensor, group_ids: Tensor) -> GroupStats:
    """Size, sum, mean and unbiased std of each response's group, gathered back to [B]."""
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"expected rewards [B] and group_ids [B], got {tuple(rewards.shape)} and {tuple(group_ids.shape)}"
        )
    r = _as_float(rewards)
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    size = torch.bincount(inv, minlength=n_groups).to(r.dtype)
    total = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, inv, r)
    mean = total / size
    # Two-pass variance: stable when rewards are large relative to their spread.
    sq_dev = torch.zeros_like(total).index_add_(0, inv, (r - mean[inv]) ** 2)
    std = (sq_dev / (size - 1).clamp_min(1)).sqrt()
    return GroupStats(size[inv], total[inv], mean[inv], std[inv])


def grpo(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO: ``A = (r - mean_g) / (std_g + eps)`` with the unbiased (N-1) group std.

    A group of size 1 uses mean 0 and std 1, so ``A = r / (1 + eps)``, as verl's reference does.
    """
    r = _as_float(rewards)
    st = group_stats(r, group_ids)
    single = st.size == 1
    mean = torch.where(single, torch.zeros_like(st.mean), st.mean)
    std = torch.where(single, torch.ones_like(st.std), st.std)
    return (r - mean) / (std + eps)


def dr_grpo(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """Dr. GRPO: ``A = r - mean_g`` (no std scaling; ``eps`` is unused).

    A group of size 1 gets ``A = 0``: its own mean is its only baseline, so it carries no
    learning signal. (verl's ``norm_adv_by_std_in_grpo=False`` instead gives ``A = r`` there.)
    """
    r = _as_float(rewards)
    return r - group_stats(r, group_ids).mean


def rloo(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """RLOO: ``A_i = r_i - mean(r_j, j != i in the group) = G/(G-1) * (r_i - mean_g)``.

    A group of size 1 has no other member and gets ``A = 0``; ``eps`` is unused.
    """
    r = _as_float(rewards)
    st = group_stats(r, group_ids)
    loo_mean = (st.sum - r) / (st.size - 1).clamp_min(1)
    return torch.where(st.size > 1, r - loo_mean, torch.zeros_like(r))


def on_kept_rows(batch: Batch, fn: AdvantageFn, eps: float, ids: Tensor | None = None) -> Tensor:
    """``fn`` over the kept rows' rewards and groups (or other ``ids``); 0 for rows already dropped."""
    adv = torch.zeros(len(batch))
    k = batch.keep
    ids = batch.group_ids if ids is None else ids
    if bool(k.any()):
        adv[k] = fn(batch.rewards[k], ids[k], eps=eps)
    return adv


def cohort_ids(batch: Batch, column: str) -> Tensor:
    """[B] one id per cohort: the value of each row's prompt record in ``column`` (data.cohort)."""
    ids: dict[Any, int] = {}
    out = []
    for gid in batch.group_ids.tolist():
        record = batch.groups[gid].item.record
        if column not in record:
            raise ValueError(f"cohort column {column!r} is not in the prompt record (it has: {', '.join(record)})")
        out.append(ids.setdefault(record[column], len(ids)))
    return torch.tensor(out, dtype=torch.long)


@STAGES.register("grpo")
@stage("advantage", locality="group")
def grpo_stage(batch: Batch, ctx: StageContext, eps: float = 1e-6) -> None:
    """GRPO advantages (group mean, unbiased std) of the kept rows."""
    batch.advantages = on_kept_rows(batch, grpo, eps)


grpo_stage.scale_invariant = True  # rewards times one positive number: the same advantages


@STAGES.register("dr_grpo")
@stage("advantage", locality="group")
def dr_grpo_stage(batch: Batch, ctx: StageContext, eps: float = 1e-6) -> None:
    """Dr. GRPO advantages (group mean, no std) of the kept rows."""
    batch.advantages = on_kept_rows(batch, dr_grpo, eps)


@STAGES.register("rloo")
@stage("advantage", locality="group")
def rloo_stage(batch: Batch, ctx: StageContext, eps: float = 1e-6) -> None:
    """RLOO advantages (leave-one-out group mean) of the kept rows."""
    batch.advantages = on_kept_rows(batch, rloo, eps)


@STAGES.register("cohort_grpo")
@stage("advantage", locality="cohort")
def cohort_grpo_stage(batch: Batch, ctx: StageContext, eps: float = 1e-6) -> None:
    """GRPO advantages with the whole cohort (``data.cohort``, e.g. all rollouts of a query's documents) as
    the group: ``A = (r - mean_c) / (std_c + eps)``. Our proposal for ERank's cohort reward: the advantages of
    a query's rollouts sum to 0, and a document whose rollouts all got the same reward still trains against
    the query's others (per-document groups give it nothing). On SmolLM2's ERank it did not stop GRPO from
    shifting every document's score the same way (docs/benchmarks.md)."""
    if ctx.cohort is None:
        raise ValueError("cohort_grpo needs data.cohort (the column that names each record's cohort)")
    batch.advantages = on_kept_rows(batch, grpo, eps, cohort_ids(batch, ctx.cohort))


@STAGES.register("adv_clip")
@stage("post", locality="row")
class AdvClip:
    """Clip advantages to ``[-limit, limit]``. Knapsack RL clips at 5: with large groups a lone success
    gets a large normalised advantage (one success in 93: +9.54 before the clip)."""

    def __init__(self, limit: float = 5.0) -> None:
        if not limit > 0:
            raise ValueError(f"kwarg limit must be > 0, got {limit}")
        self.limit = limit

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        batch.advantages = batch.advantages.clamp(-self.limit, self.limit)
