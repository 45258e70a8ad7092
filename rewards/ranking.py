"""Rerankers' rewards as recipe components (the formulas are pure functions in rlpost/ranking/rewards.py).

ERank's compares a query's whole cohort (locality ``cohort``): every completion of the step with the same
``qid`` is ranked together, so the recipe sets ``data.cohort: qid``. GroupRank's is prompt-local: each
completion scores one group, whose gold gains (and, optionally, which members count as relevant) are
dataset columns."""
from __future__ import annotations

from typing import Any

from rewards.registry import REWARDS
from rlpost.ranking.parsing import parse_erank
from rlpost.ranking.parsing import parse_block_scores
from rlpost.ranking.rewards import check_erank_options, erank_rewards, group_reward, grouprank_reward


@REWARDS.register("erank")
def erank(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    qid: list[Any],
    docid: list[Any],
    relevant: list[bool],
    ref_score: list[float],
    kind: str = "rr",
    format_penalty: float = -1.0,
    neg_above_penalty: float = -1.0,
    neg_above_rule: str = "any_positive",
    se_scale: float = 10.0,
    **kwargs: Any,
) -> list[float]:
    """ERank's reward (``kind`` rr, ndcg or se): each query's completions (``qid``), grouped by document
    (``docid``), are ranked together by their parsed scores; ``relevant`` marks the positive documents and
    ``ref_score`` is each document's reference score t_i for the squared-error case."""
    out = [0.0] * len(completions)
    cohorts: dict[Any, dict[Any, list[int]]] = {}
    for i, (q, d) in enumerate(zip(qid, docid)):
        cohorts.setdefault(q, {}).setdefault(d, []).append(i)
    for docs in cohorts.values():
        rows = list(docs.values())
        values = erank_rewards(
            [[parse_erank(completions[i]) for i in row] for row in rows],
            [bool(relevant[row[0]]) for row in rows],
            [float(ref_score[row[0]]) for row in rows],
            kind, format_penalty, neg_above_penalty, neg_above_rule, se_scale,
        )
        for row, vals in zip(rows, values):
            for j, i in enumerate(row):
                out[i] = float(vals[j])
    return out


erank.locality = "cohort"
# called when the recipe's rewards resolve, so a wrong kind or rule stops the run before any model loads
erank.check_kwargs = lambda kind="rr", neg_above_rule="any_positive", **_: check_erank_options(kind, neg_above_rule)  # type: ignore[attr-defined]


@REWARDS.register("grouprank")
def grouprank(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    gold: list[list[float]],
    relevant: list[list[bool]] | None = None,
    gamma: float = 0.2,
    eps: float = 0.1,
    invalid_json: float = -0.1,
    bad_tags: float = -0.5,
    **kwargs: Any,
) -> list[float]:
    """GroupRank's reward per completion: NDCG@10 + gamma Recall@10 + eps (1 - JS) of its JSON scores against
    the ``gold`` column (the group's gains 0..10 in presentation order) when its tags and JSON are valid,
    ``invalid_json`` when only the tags are, ``bad_tags`` otherwise. ``relevant``: a column of per-member
    flags (in the pool's label top 10); without it Recall@10 is 1."""
    rel = relevant or [None] * len(completions)
    return [grouprank_reward(c, g, r, gamma, eps, invalid_json, bad_tags) for c, g, r in zip(completions, gold, rel)]


@REWARDS.register("grouprank_block")
def grouprank_block(
    prompts: list[str],
    completions: list[str],
    facts: list[dict[str, dict[str, Any]]],
    gold: list[list[float]],
    relevant: list[list[bool]] | None = None,
    gamma: float = 0.2,
    eps: float = 0.1,
    malformed: float = -0.5,
    **kwargs: Any,
) -> list[float]:
    """GroupRank's R_G for block scoring (``score_at: block``): a sample is one score chosen at each member's
    block end (parsing.parse_block_scores), so there is no format to get wrong; ``malformed`` only if the
    count does not match the group (which the engine never writes)."""
    rel = relevant or [None] * len(completions)
    out = []
    for c, g, r in zip(completions, gold, rel):
        scores = parse_block_scores(c, len(g))
        out.append(malformed if scores is None else group_reward(scores, g, r, gamma, eps))
    return out


grouprank_block.reads_choices = True  # its samples are choices in the prompt (rank_marks), not generated text
