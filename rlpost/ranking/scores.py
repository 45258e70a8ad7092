"""Rerankers' inference scores: ERank's expected score, the BM25 hybrid, GroupRank's shuffled (or
position-balanced) groups and their test-time-scaling merge, and final scores strictly decreasing so every TREC tool reads one order."""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def erank_score(score: int, answer_logprobs: Sequence[float]) -> float:
    """ERank's ranking score: the generated integer times the probability of its answer tokens (the product
    over digits when the tokenizer splits "10" into "1" "0")."""
    return score * math.exp(sum(answer_logprobs))


def zscores(values: Sequence[float]) -> np.ndarray:
    """(v - mean) / population std within a candidate list; all 0 when the std is 0."""
    import numpy as np  # here: the CLI's parser imports this module for PLACEMENTS

    v = np.asarray(values, dtype=float)
    std = v.std()
    return (v - v.mean()) / std if std > 0 else np.zeros_like(v)


def hybrid(first_stage: Sequence[float], rerank: Sequence[float], weight: float = 0.2) -> np.ndarray:
    """weight * z(first stage) + (1 - weight) * z(rerank), per query."""
    return weight * zscores(first_stage) + (1 - weight) * zscores(rerank)


def groups(docids: Sequence[str], size: int, stride: int | None = None, seed: int | str | None = None) -> list[list[str]]:
    """Windows ``docids[i : i + size]`` for i = 0, stride, 2 stride, ... (stride defaults to size: disjoint
    groups), after a shuffle seeded by ``seed`` (e.g. f"{seed}:{qid}:{pass}"); None keeps the order."""
    if size < 1 or (stride is not None and stride < 1):
        raise ValueError(f"group size and stride must be at least 1, got {size} and {stride}")
    order = list(docids)
    if seed is not None:
        random.Random(str(seed)).shuffle(order)
    step = stride or size
    return [order[i : i + size] for i in range(0, len(order), step) if order[i : i + size]]


def rotated_groups(docids: Sequence[str], size: int, index: int, seed: int | str) -> list[list[str]]:
    """Pass ``index`` of position-balanced passes: one shuffle seeded by ``seed`` (the same every pass, e.g.
    f"{seed}:{qid}") deals the documents into ``size`` lanes of ceil(n / size); in pass r lane c holds place
    (c + r) mod size of every group, its documents reshuffled (seeded by seed and r) so a document meets new
    company each pass. Over any ``size`` consecutive passes each document holds every place once (exactly when
    ``size`` divides n; otherwise a short lane leaves its place empty in the last groups)."""
    if size < 1 or index < 0:
        raise ValueError(f"group size must be at least 1 and the pass index at least 0, got {size} and {index}")
    order = list(docids)
    random.Random(str(seed)).shuffle(order)
    width = -(-len(order) // size)
    lanes = [order[c * width : (c + 1) * width] for c in range(size)]
    rng = random.Random(f"{seed}:{index}")
    for lane in lanes:
        rng.shuffle(lane)
    by_place = [lanes[(p - index) % size] for p in range(size)]
    return [[lane[j] for lane in by_place if j < len(lane)] for j in range(width)]


PLACEMENTS = ("shuffle", "rotate")


def merge_passes(passes: Sequence[dict[str, float]], scale: float = 10.0) -> dict[str, float]:
    """Each document's mean score over every group that scored it, divided by ``scale``; documents no group
    scored are left out (rank them after the scored ones, in first-stage order)."""
    sums: dict[str, list[float]] = {}
    for scores in passes:
        for docid, s in scores.items():
            sums.setdefault(docid, []).append(s)
    return {d: sum(v) / len(v) / scale for d, v in sums.items()}


def strictly_decreasing(ranked: Sequence[tuple[str, float]], gap: float = 1e-5) -> list[tuple[str, float]]:
    """(docid, score) sorted by score, ties kept in the given order (e.g. first-stage), with scores nudged to
    strictly decrease: trec_eval re-sorts by score and breaks ties by docid, which would reorder ties."""
    order = sorted(range(len(ranked)), key=lambda i: -ranked[i][1])  # stable: ties keep their order
    out: list[tuple[str, float]] = []
    for i in order:
        docid, score = ranked[i]
        out.append((docid, min(score, out[-1][1] - gap) if out else score))
    return out
