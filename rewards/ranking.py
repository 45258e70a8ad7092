"""Rerankers' rewards as recipe components. GroupRank's is prompt-local: each completion scores one group,
whose gold gains (and, optionally, which members are in the whole pool's label top 10) are dataset columns.
ERank's compares a query's whole cohort and waits for cohorts in the prompt stream (rlpost/ranking/rewards.py
holds it as a pure function)."""
from __future__ import annotations

from typing import Any

from rewards.registry import REWARDS
from rlpost.ranking.rewards import grouprank_reward


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
