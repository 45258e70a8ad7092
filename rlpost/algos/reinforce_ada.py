"""Reinforce-Ada (Xiong et al., 2025): sample a prompt in rounds until its pool has the signal the
exit rule asks for, keep a fixed-size group balanced between correct and incorrect answers, and
use the mean reward of the whole pool as the baseline.

Pure functions and the ``global_baseline`` advantage stage; the sampler that runs the rounds is
``rlpost/rollout/reinforce_ada.py``. Spec and hand-checked numbers:
``shared/specs/reinforce_ada_and_d3s.md`` part 1.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.types import Batch

RULES = ("balanced", "positive")


def exit_ok(n_pos: int, n_neg: int, n: int, rule: str) -> bool:
    """``balanced``: at least floor(n/2) positives and n - floor(n/2) negatives; ``positive``: one positive."""
    if rule == "balanced":
        return n_pos >= n // 2 and n_neg >= n - n // 2
    if rule == "positive":
        return n_pos >= 1
    raise ValueError(f"exit rule must be one of {', '.join(RULES)}, got {rule!r}")


def pick_group(positives: list[int], negatives: list[int], n: int, rule: str, retired: bool) -> list[int]:
    """The kept members: first-drawn positives and negatives (lists in generation order).

    A retired prompt (both rules) aims at floor(n/2) positives; one still active after the last round
    aims at floor(n/2) (balanced) or its pool's share of positives, at least 1 and at most take-1
    (positive). Either way a shortfall on one side is filled from the other. Returns the chosen
    items in (positives, negatives) order.
    """
    take = min(n, len(positives) + len(negatives))
    if retired or rule == "balanced":
        want_pos = n // 2
    else:
        share = math.ceil(n * len(positives) / max(1, len(positives) + len(negatives)))
        want_pos = min(max(share, 1), take - 1)
    want_pos = max(0, min(want_pos, len(positives)))
    want_neg = min(take - want_pos, len(negatives))
    want_pos = min(take - want_neg, len(positives))  # fill a shortfall of negatives with positives
    return positives[:want_pos] + negatives[:want_neg]


def global_baseline(rewards: Tensor, counts: Tensor, sums: Tensor, sqsums: Tensor, std: bool = False, eps: float = 1e-6) -> Tensor:
    """``A = r - mu_pool`` (``std``: divided by ``max(sigma_pool, eps) + eps``, unbiased sigma) from each row's
    pool statistics gathered to [B] (``counts``/``sums``/``sqsums``). A pool of <= 1 sample: mu 0, sigma 1."""
    big = counts > 1
    mu = torch.where(big, sums / counts.clamp_min(1), torch.zeros_like(sums))
    adv = rewards - mu
    if not std:
        return adv
    var = (sqsums - counts * mu**2) / (counts - 1).clamp_min(1)
    sigma = torch.where(big, var.clamp_min(0).sqrt(), torch.ones_like(var))
    return adv / (sigma.clamp_min(eps) + eps)


@STAGES.register("global_baseline")
@stage("advantage", locality="group")
def global_baseline_stage(batch: Batch, ctx: StageContext, std: bool = False, eps: float = 1e-6) -> None:
    """Reinforce-Ada's advantage: the kept rows' rewards minus the mean reward of every sample their
    sampler drew for the prompt (``Group.stats``), not just of the rows kept.

    The pool statistics are of the rewards as scored (the recipe's weighted sum); with shape stages or
    another combiner, ``batch.rewards`` is on another scale than the baseline.
    """
    stats = [batch.groups[int(g)].stats for g in batch.group_ids.tolist()]
    col = lambda key: torch.tensor([s.get(key, 0.0) for s in stats], dtype=torch.float32)  # noqa: E731
    adv = global_baseline(batch.rewards, col("count"), col("reward_sum"), col("reward_sqsum"), std, eps)
    batch.advantages = torch.where(batch.keep, adv, torch.zeros_like(adv))
