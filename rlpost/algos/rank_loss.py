"""A ranking term for supervised fine-tuning of generative rerankers.

Cross-entropy on a graded target's score token teaches a small model the label prior first (most
candidates are not relevant, so "0" everywhere is the cheapest answer) and nothing about which
candidate beats which. This term trains the order directly: each score slot's expected score under
the model's digit distribution, and a pairwise logistic loss (RankNet) over the slots of one group
(an ERank query's candidates, or the members of one GroupRank prompt) whose gold gains differ. It is
shift-invariant, so a prior alone cannot lower it. A pointwise term beside it (``digit_cross_entropy``)
trains each slot's digit distribution towards its gold score, as a target's cross-entropy does where the
target writes the score (ERank), for slots no target writes (GroupRank's block ends).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def digit_values(scale_max: int = 10) -> list[float]:
    """The score a slot's first digit stands for: ``d`` for 0..9, except that a leading "1" reads as 10
    when the scale's top score is 10 (SFT targets on a 0..10 scale with scores {0, 3, 7, 10} never write 1)."""
    values = [float(d) for d in range(10)]
    if scale_max == 10:
        values[1] = 10.0
    return values


def expected_scores(logits: Tensor, digit_ids: Sequence[int], values: Sequence[float]) -> Tensor:
    """[K, V] logits at K score slots -> [K] expected scores under the distribution renormalised over the
    digit tokens ``digit_ids`` (token of digit d at index d), each digit worth ``values[d]``."""
    p = torch.softmax(logits[:, list(digit_ids)].float(), dim=-1)
    return p @ torch.as_tensor(values, dtype=p.dtype, device=p.device)


def digit_cross_entropy(logits: Tensor, digit_ids: Sequence[int], values: Sequence[float], gains: Tensor) -> Tensor:
    """[K, V] logits at K score slots and their [K] gold gains -> the summed cross-entropy of each slot's gold
    digit (the digit whose value is nearest its gain, the lower one on a tie) under the distribution
    renormalised over ``digit_ids``, the one ``expected_scores`` reads."""
    logp = torch.log_softmax(logits[:, list(digit_ids)].float(), dim=-1)
    v = torch.as_tensor(values, dtype=logp.dtype, device=logp.device)
    gold = ((gains.to(logp)[:, None] - v[None, :]).abs() + v[None, :] * 1e-6).argmin(dim=-1)
    return -logp.gather(1, gold[:, None]).sum()


def pairwise_logistic(scores: Tensor, gains: Tensor, groups: Tensor, sigma: float = 1.0) -> tuple[Tensor, int]:
    """RankNet over every pair (i, j) of one group with ``gains[i] > gains[j]``:
    sum of log(1 + exp(-(s_i - s_j) / sigma)); returns (the sum, the number of pairs)."""
    if not (scores.shape == gains.shape == groups.shape) or scores.dim() != 1:
        raise ValueError(f"expected scores, gains and groups [K], got {tuple(scores.shape)}, {tuple(gains.shape)}, {tuple(groups.shape)}")
    better = (gains[:, None] > gains[None, :]) & (groups[:, None] == groups[None, :])
    pairs = int(better.sum())
    if pairs == 0:
        return scores.sum() * 0.0, 0
    margin = (scores[:, None] - scores[None, :]) / sigma
    return torch.nn.functional.softplus(-margin)[better].sum(), pairs
