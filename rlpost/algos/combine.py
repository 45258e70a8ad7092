"""Combine stages: the (shaped) objective vector of every row -> its scalar reward."""
from __future__ import annotations

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.types import Batch


@STAGES.register("fixed")
@stage("combine", locality="row")
def fixed(batch: Batch, ctx: StageContext) -> None:
    """Weighted sum with the recipe's reward weights (``rewards[i].weight``); zero-weight columns are
    ignored, so an unknown value there does not matter."""
    used = batch.objective_weights != 0
    batch.rewards = (batch.shaped[:, used] * batch.objective_weights[used]).sum(dim=1)
