"""Unlikeliness reward (He, Fried & Welleck 2025, "Rewarding the Unlikely").

GRPO raises the probability of correct answers the model already likes and neglects rare correct
ones, so pass@N at large N can fall. Inside each group, a positive reward is scaled by
``1 - beta * rank / G``, where ``rank`` (0 = least likely) orders all G members of the group by
their mean token log-probability under the pre-update policy. The least likely member keeps its
reward, the most likely loses up to ``beta``; after group normalisation rare correct samples get
the larger advantages. Ranks use every member, correct or not (as the reference code does).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rlpost.algos.stage import STAGES, StageContext, stage
from rlpost.types import Batch


def sequence_logprob(token_logprobs: Tensor, mask: Tensor, length_norm: str = "mean") -> Tensor:
    """[B]: the mean (or sum) of each row's token log-probs over its mask; an empty row gives 0."""
    total = (token_logprobs * mask).sum(-1)
    if length_norm == "sum":
        return total
    return total / mask.sum(-1).clamp(min=1)


def likelihood_ranks(scores: Tensor, group_ids: Tensor, ties: str = "stable") -> tuple[Tensor, Tensor]:
    """Ascending rank of every row's score within its group (0 = lowest) and the group's size, both [B].

    ``ties="stable"``: equal scores rank by position in the batch (earlier = lower);
    ``"average"``: tied rows share the mean of their ranks.
    """
    B = scores.numel()
    if B == 0:
        return scores.new_zeros(0), scores.new_zeros(0)
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(group_ids[order], stable=True)]  # by group, then score, then position
    g_sorted = group_ids[order]
    _, seg, counts = torch.unique_consecutive(g_sorted, return_inverse=True, return_counts=True)
    pos = (torch.arange(B) - (torch.cumsum(counts, 0) - counts)[seg]).to(torch.float64)
    if ties == "average":
        s_sorted = scores[order]
        new = torch.ones(B, dtype=torch.bool)
        new[1:] = (g_sorted[1:] != g_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])
        tie_id = torch.cumsum(new.long(), 0) - 1
        n_ties = int(tie_id[-1]) + 1
        sums = torch.zeros(n_ties, dtype=torch.float64).index_add_(0, tie_id, pos)
        sizes = torch.zeros(n_ties, dtype=torch.float64).index_add_(0, tie_id, torch.ones(B, dtype=torch.float64))
        pos = (sums / sizes)[tie_id]
    ranks = torch.empty(B, dtype=torch.float64)
    ranks[order] = pos
    group_size = torch.empty(B, dtype=torch.float64)
    group_size[order] = counts[seg].to(torch.float64)
    return ranks.to(scores.dtype), group_size.to(scores.dtype)


def unlikeliness_multipliers(seq_logprob: Tensor, group_ids: Tensor, beta: float, ties: str = "stable") -> Tensor:
    """[B]: ``1 - beta * rank / G`` per row (G: the row's group size)."""
    ranks, size = likelihood_ranks(seq_logprob, group_ids, ties)
    return 1.0 - beta * ranks / size


def unlikeliness_rewards(
    rewards: Tensor, seq_logprob: Tensor, group_ids: Tensor, beta: float, ties: str = "stable"
) -> Tensor:
    """Reshaped rewards [B]: positive rewards times their multiplier; zero and negative rewards unchanged
    (scaling a negative reward would make the most likely wrong answers less penalised)."""
    mult = unlikeliness_multipliers(seq_logprob, group_ids, beta, ties)
    return torch.where(rewards > 0, rewards * mult, rewards)


def distinct_positive(batch: Batch, rows: Tensor) -> float:
    """Mean number of distinct completions among a group's positive rows (over groups that have one).

    Reshaping only moves advantage between different completions: copies of one answer share its
    summed advantage, so with one distinct correct answer per group it changes little."""
    seen: dict[int, set[tuple[int, ...]]] = {}
    for i in rows.tolist():
        seen.setdefault(int(batch.group_ids[i]), set()).add(tuple(batch.rows[i].completion.token_ids))
    return sum(len(s) for s in seen.values()) / max(1, len(seen))


@STAGES.register("unlikeliness")
@stage("shape", locality="group", needs=("old_logprobs",), pairs_with=("degenerate_filter",))
class Unlikeliness:
    """Shape stage: reshape the positive values of the rewards in ``objectives`` (default: every reward
    with a positive weight; a penalty with a negative weight is left alone) for every kept row."""

    def __init__(self, beta: float = 0.25, length_norm: str = "mean", ties: str = "stable",
                 objectives: list[str] | None = None) -> None:
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if objectives is not None and (not isinstance(objectives, list) or not objectives
                                       or not all(isinstance(o, str) for o in objectives)):
            raise ValueError(f"objectives must be a non-empty list of reward names, got {objectives!r}")
        if length_norm not in ("mean", "sum"):
            raise ValueError(f"length_norm must be 'mean' or 'sum', got {length_norm!r}")
        if ties not in ("stable", "average"):
            raise ValueError(f"ties must be 'stable' or 'average', got {ties!r}")
        self.beta, self.length_norm, self.ties, self.objectives = beta, length_norm, ties, objectives

    def check(self, reward_names: list[str]) -> None:
        missing = sorted(set(self.objectives or []) - set(reward_names))
        if missing:
            raise ValueError(f"objectives {missing} are not rewards of this run (rewards: {', '.join(reward_names)})")

    def __call__(self, batch: Batch, ctx: StageContext) -> None:
        k = batch.keep.nonzero().flatten()
        if self.objectives is not None:
            cols = [batch.objective_names.index(n) for n in self.objectives]
        else:
            cols = [i for i, w in enumerate(batch.objective_weights.tolist()) if w > 0]
        if k.numel() == 0 or not cols:
            return
        seq = sequence_logprob(batch.old_logprobs[k], batch.mask[k], self.length_norm)
        mult = unlikeliness_multipliers(seq, batch.group_ids[k], self.beta, self.ties)
        block = batch.shaped[k][:, cols]
        batch.shaped[k[:, None], torch.tensor(cols)[None, :]] = torch.where(block > 0, block * mult[:, None], block)
        positive = (block > 0).any(-1)
        if bool(positive.any()):
            batch.metrics["unlikeliness/multiplier_mean"] = float(mult[positive].mean())
            batch.metrics["unlikeliness/distinct_correct"] = distinct_positive(batch, k[positive])
