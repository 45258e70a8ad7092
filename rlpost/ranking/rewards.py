"""Rerankers' training rewards.

ERank (cohort-level): every rollout of a query's N documents x G samples is scored by where its score lands
in the ranking of all the query's formatted scores (r_RR; r_nDCG and the pointwise r_SE as ablations).
GroupRank (prompt-local): NDCG@10 + gamma * Recall@10 + eps * (1 - JS) over one group, behind a format gate.
The case structure is the papers'; the constants and boundaries are the spec's proposals (keyword arguments)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rlpost.ranking.parsing import parse_grouprank

ERANK_KINDS = ("rr", "ndcg", "se")
NEG_ABOVE_RULES = ("any_positive", "all_positives", "share")


def global_ranks(scores: Sequence[Sequence[int | None]]) -> list[list[int | None]]:
    """1 + the number of formatted scores in the whole cohort strictly above each one (ties share the
    smallest rank); None for unformatted rollouts, which take no rank."""
    formatted = np.array([s for row in scores for s in row if s is not None], dtype=float)
    return [[None if s is None else 1 + int((formatted > s).sum()) for s in row] for row in scores]


def check_erank_options(kind: str = "rr", neg_above_rule: str = "any_positive") -> None:
    """ValueError naming the option when ``kind`` or ``neg_above_rule`` is not one erank_rewards knows."""
    if kind not in ERANK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ERANK_KINDS)}, got {kind!r}")
    if neg_above_rule not in NEG_ABOVE_RULES:
        raise ValueError(f"neg_above_rule must be one of {', '.join(NEG_ABOVE_RULES)}, got {neg_above_rule!r}")


def erank_rewards(
    scores: Sequence[Sequence[int | None]],
    positive: Sequence[bool],
    reference: Sequence[float],
    kind: str = "rr",
    format_penalty: float = -1.0,
    neg_above_penalty: float = -1.0,
    neg_above_rule: str = "any_positive",
    se_scale: float = 10.0,
) -> np.ndarray:
    """Rewards [N, G] of one query's cohort: ``scores[i][j]`` is document i's j-th rollout's parsed score
    (None: unformatted), ``positive[i]`` its label and ``reference[i]`` its reference score t_i (the SFT
    model's for r_RR and r_nDCG, the teacher's for r_SE).

    - unformatted: ``format_penalty``;
    - a positive document: 1 / rank (rr) or (1 / log2(rank + 1)) / IDCG, the ideal with every positive
      rollout first (ndcg);
    - a negative one ranked with the positives: ``neg_above_penalty``. any_positive: rank <= the worst positive
      rank; all_positives: rank < the best positive rank, with 0 between the best and the worst; share (our
      proposal): rank <= the worst positive rank, the penalty times the share of positive rollouts ranked at or
      below it, so that a negative's rollouts that outrank fewer positives are penalised less (under
      any_positive they can all get -1, and the document's group then carries no gradient);
    - any other negative (and every rollout when no positive rollout is formatted): 1 - ((s - t) / se_scale)^2.
    ``se`` gives every formatted rollout that last value."""
    check_erank_options(kind, neg_above_rule)
    if not (len(scores) == len(positive) == len(reference)):
        raise ValueError(f"scores, positive and reference need one entry per document: {len(scores)}, {len(positive)}, {len(reference)}")
    ranks = global_ranks(scores)
    positive_ranks = [r for row, pos in zip(ranks, positive) if pos for r in row if r is not None]
    rollouts = max((len(row) for row in scores), default=0)
    idcg = sum(1 / math.log2(k + 1) for k in range(1, sum(positive) * rollouts + 1))
    out = np.zeros((len(scores), rollouts))
    for i, (row, row_ranks) in enumerate(zip(scores, ranks)):
        for j, (s, rank) in enumerate(zip(row, row_ranks)):
            smooth = 1 - ((s - reference[i]) / se_scale) ** 2 if s is not None else 0.0
            if s is None:
                out[i, j] = format_penalty
            elif kind == "se" or not positive_ranks and not positive[i]:
                out[i, j] = smooth
            elif positive[i]:
                out[i, j] = 1 / rank if kind == "rr" else (1 / math.log2(rank + 1)) / idcg
            elif neg_above_rule == "any_positive":
                out[i, j] = neg_above_penalty if rank <= max(positive_ranks) else smooth
            elif neg_above_rule == "share":
                outranked = sum(rank <= p for p in positive_ranks)
                out[i, j] = neg_above_penalty * outranked / len(positive_ranks) if outranked else smooth
            else:
                out[i, j] = neg_above_penalty if rank < min(positive_ranks) else smooth if rank > max(positive_ranks) else 0.0
    return out


def ndcg(predicted: Sequence[float], gains: Sequence[float], k: int = 10) -> float:
    """NDCG@k of a group with linear ``gains`` (discount 1 / log2(rank + 1)) in the order of ``predicted``
    scores, ties ordered pessimistically (the smaller gain first), so constant scores earn no credit."""
    order = sorted(range(len(gains)), key=lambda d: (-predicted[d], gains[d]))
    ideal = sorted(gains, reverse=True)
    dcg = sum(gains[d] / math.log2(r + 2) for r, d in enumerate(order[:k]))
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:k]))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(predicted: Sequence[float], relevant: Sequence[bool], gains: Sequence[float], k: int = 10) -> float:
    """|top-k(predicted) with relevant| / |relevant| (1.0 when none is relevant), ties as in ``ndcg``."""
    if not any(relevant):
        return 1.0
    order = sorted(range(len(gains)), key=lambda d: (-predicted[d], gains[d]))
    return sum(relevant[d] for d in order[:k]) / sum(relevant)


def js_bits(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (in [0, 1]) of two distributions; 0 log 0 = 0."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return kl(p) / 2 + kl(q) / 2


def distribution(values: Sequence[float]) -> np.ndarray:
    """values / their sum; uniform when they are all 0."""
    v = np.asarray(values, dtype=float)
    return v / v.sum() if v.sum() > 0 else np.full(len(v), 1 / len(v))


def group_reward(
    predicted: Sequence[float], gold: Sequence[float], relevant: Sequence[bool] | None = None,
    gamma: float = 0.2, eps: float = 0.1, k: int = 10,
) -> float:
    """R_G = NDCG@k + gamma * Recall@k + eps * (1 - JS(P, Q)) of a group's ``predicted`` scores against its
    ``gold`` gains (0..10); ``relevant``: members in the label top-k of the whole pool (None: none known,
    Recall 1). P and Q are the scores and the gains normalised to sum 1."""
    relevant = relevant if relevant is not None else [False] * len(gold)
    return (ndcg(predicted, gold, k) + gamma * recall_at(predicted, relevant, gold, k)
            + eps * (1 - js_bits(distribution(predicted), distribution(gold))))


def grouprank_reward(
    text: str, gold: Sequence[float], relevant: Sequence[bool] | None = None, gamma: float = 0.2, eps: float = 0.1,
    invalid_json: float = -0.1, bad_tags: float = -0.5,
) -> float:
    """GroupRank's reward of one completion: R_G when its tags and JSON are valid, ``invalid_json`` when only
    the tags are, ``bad_tags`` otherwise."""
    tags, scores = parse_grouprank(text, len(gold))
    if scores is None:
        return invalid_json if tags else bad_tags
    return group_reward(scores, gold, relevant, gamma, eps)


def fused_label(rank_pointwise: int, rank_listwise: int, beta: float = 0.5) -> float:
    """GroupRank's label score from two teachers' 1-based ranks: -beta ln L_p - (1 - beta) ln L_l."""
    return -beta * math.log(rank_pointwise) - (1 - beta) * math.log(rank_listwise)


def gold_scores(fused: Sequence[float]) -> list[float] | None:
    """The group's fused labels min-max rescaled to [0, 10]; None when they are all equal (no signal)."""
    lo, hi = min(fused), max(fused)
    return None if hi == lo else [10 * (f - lo) / (hi - lo) for f in fused]
