"""Ranking tasks: first-stage candidates and graded qrels as prompt records for the reranker recipes.

- ``erank``: one record per (query, candidate) with the pointwise prompt; a query's records share its
  ``qid`` (the recipe's ``data.cohort``), so ERank's reward sees all of them in one step.
- ``grouprank``: one record per group of candidates cut from a query's pool by interval sampling, shown
  in a seeded shuffled order, with the gold gains of its members in presentation order.

A split names a dataset in the shared data (``dl19``, ``dl20``) or gives ``{candidates, qrels}`` paths
(a rank_llm JSON of first-stage hits with passage text, and TREC qrels). Only queries the qrels judge are
kept, and each query's top ``top`` candidates. The SFT targets come from the qrels: grade g maps to the
score ``scores[g]`` (ERank answers it; GroupRank's JSON gives it to every member). With ``teacher`` (a TREC
run of a stronger model's scores over the same candidates, as the papers' SFT data comes from a teacher
LLM) each query's teacher scores are scaled to 0..10 and mixed in: target = w * teacher + (1 - w) * grade
score, written as an integer (never 1: the ranking term reads a leading "1" as 10), while the ranking term
orders candidates by the unrounded mix.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rlpost.data.errors import DataError
from rlpost.data.paths import shared_data_path
from rlpost.data.tasks import TASKS, Record, _check_split
from rlpost.ranking.prompts import (
    GROUPRANK_SYSTEM, SCORE_AT, erank_prompt, grouprank_block_ends, grouprank_json, grouprank_prompt, unknown_layout,
)
from rlpost.ranking.scores import groups
from rlpost.ranking.trec import Run, read_candidates, read_qrels, read_run

DATASETS = {
    "dl19": ("trec-dl-2019-passage", "qrels.dl19-passage.txt"),
    "dl20": ("trec-dl-2020-passage", "qrels.dl20-passage.txt"),
}
DL_SCORES = [0, 3, 7, 10]  # TREC DL grades 0..3 as 0..10 scores


def dataset_paths(name: str) -> dict[str, Path]:
    """A shared dataset's (one of DATASETS) BM25 candidates (rank_llm JSON) and qrels."""
    folder, qrels_file = DATASETS[name]
    return {"candidates": shared_data_path("retrieval", folder, "bm25_top100.rank_llm.json"),
            "qrels": shared_data_path("retrieval", folder, qrels_file)}


def judged_pools(source: str | dict[str, str], top: int) -> list[dict[str, Any]]:
    """[{qid, query, candidates: [{docid, text, grade}]}] for every judged query, top ``top`` candidates each
    (unjudged candidates have grade 0, as in trec_eval)."""
    if isinstance(source, str):
        if source not in DATASETS:
            raise DataError(f"ranking dataset '{source}' is unknown (known: {', '.join(DATASETS)}; or give {{candidates, qrels}} paths)")
        paths = dataset_paths(source)
    else:
        missing = sorted({"candidates", "qrels"} - set(source))
        if missing:
            raise DataError(f"ranking split {source}: missing {', '.join(missing)} (expected {{candidates: rank_llm.json, qrels: file}})")
        paths = {k: Path(source[k]) for k in ("candidates", "qrels")}
    if top < 1:
        raise DataError(f"top must be >= 1, got {top}")
    items, qrels = read_candidates(paths["candidates"]), read_qrels(paths["qrels"])
    pools = [
        {"qid": it["qid"], "query": it["query"],
         "candidates": [{**c, "grade": int(qrels[it["qid"]].get(c["docid"], 0))} for c in it["candidates"][:top]]}
        for it in items if it["qid"] in qrels
    ]
    if not pools:
        raise DataError(f"{paths['qrels']} judges none of the {len(items)} queries in {paths['candidates']}")
    return pools


def _split_source(task: str, split: str, train: str | dict[str, str], test: str | dict[str, str]) -> str | dict[str, str]:
    _check_split(task, split, ("train", "test"))
    return train if split == "train" else test


def _score(grade: int, scores: list[int]) -> int:
    return scores[max(0, min(grade, len(scores) - 1))]


def read_teacher(path: str | None, weight: float) -> Run | None:
    """A teacher's TREC run with each query's scores min-max scaled to 0..10 (None without a path)."""
    if path is None:
        return None
    if not 0 <= weight <= 1:
        raise DataError(f"teacher_weight must lie in [0, 1], got {weight}")
    out = {}
    for qid, docs in read_run(path).items():
        lo, hi = min(docs.values()), max(docs.values())
        out[qid] = {d: 10 * (v - lo) / (hi - lo) if hi > lo else 0.0 for d, v in docs.items()}
    return out


def run_scores(run: Run, pool: dict[str, Any], what: str) -> list[float]:
    """``run``'s score of each of ``pool``'s candidates; a DataError naming the first one it lacks."""
    mine = run.get(pool["qid"])
    missing = [c["docid"] for c in pool["candidates"] if mine is None or c["docid"] not in mine]
    if missing:
        raise DataError(f"the {what} run has no score for query {pool['qid']}, document {missing[0]} (expected a "
                        f"run over the same candidates)")
    return [mine[c["docid"]] for c in pool["candidates"]]


def targets(pool: dict[str, Any], scores: list[int], teacher: Run | None, weight: float) -> list[float]:
    """Each candidate's target on 0..10: its grade's score, mixed with the teacher's scaled score."""
    gold = [float(_score(c["grade"], scores)) for c in pool["candidates"]]
    if teacher is None:
        return gold
    return [weight * t + (1 - weight) * g for t, g in zip(run_scores(teacher, pool, "teacher"), gold)]


def references(pool: dict[str, Any], reference: Run | None, written_scores: list[int]) -> list[float]:
    """ERank's t_i for each candidate: the reference run's score (the SFT model's, on 0..10), else the score the
    SFT target writes."""
    if reference is None:
        return [float(s) for s in written_scores]
    out = run_scores(reference, pool, "reference")
    for c, v in zip(pool["candidates"], out):
        if not -1e-3 <= v <= 10 + 1e-3:  # a run file nudges tied scores apart by 1e-5
            raise DataError(f"the reference run scores query {pool['qid']}, document {c['docid']} {v:g}; expected ERank's "
                            f"scores on 0..10 (e.g. `rlpost rerank --method erank --out` with the SFT model over these candidates)")
    return [min(max(v, 0.0), 10.0) for v in out]


def written(target: float) -> int:
    """A target as the integer the model writes: rounded, and never 1 (the ranking term reads a leading "1"
    as 10), so 1 goes to the nearer of 0 and 2."""
    score = round(target)
    return score if score != 1 else (0 if target < 1 else 2)


@TASKS.register("erank")
def erank(
    split: str,
    train: str | dict[str, str] = "dl20",
    test: str | dict[str, str] = "dl19",
    top: int = 20,
    positive_grade: int = 2,
    scores: list[int] = DL_SCORES,
    instruction: str = "semantic",
    max_doc_chars: int = 2000,
    teacher: str | None = None,
    teacher_weight: float = 1.0,
    layout: str = "query-first",
    reference: str | None = None,
) -> list[Record]:
    """One record per (query, candidate): ``question`` (the ERank user message in ``layout``, one of
    LAYOUTS; rerank with the same), ``answer`` (the target score), ``qid``, ``docid``, ``grade``,
    ``relevant`` (grade >= ``positive_grade``) and ``ref_score`` (t_i, the reference score of r_RR's
    squared-error case: from ``reference``, a TREC run of the SFT model's scores over the training split's
    candidates, as the spec has it; on the test split, or without one, the target score stands in);
    ``rank_gains`` ([the unrounded target]) and ``rank_group`` (the qid) for SFT's ranking term."""
    if problem := unknown_layout(layout):
        raise DataError(f"erank {problem}")
    records, scaled = [], read_teacher(teacher, teacher_weight)
    ref_run = read_run(reference) if reference is not None and split == "train" else None  # t_i is RL's, on train
    for pool in judged_pools(_split_source("erank", split, train, test), top):
        gains = targets(pool, scores, scaled, teacher_weight)
        scores_written = [written(t) for t in gains]
        for c, target, score, ref in zip(pool["candidates"], gains, scores_written, references(pool, ref_run, scores_written)):
            records.append({
                "question": erank_prompt(pool["query"], c["text"][:max_doc_chars], instruction, layout), "answer": str(score),
                "qid": pool["qid"], "docid": c["docid"], "grade": c["grade"], "relevant": c["grade"] >= positive_grade,
                "ref_score": ref, "rank_gains": [target], "rank_group": pool["qid"],
            })
    return records


def _member_groups(cands: list[dict], size: int, count: int, grouping: str, rng: random.Random, key: str) -> list[list[dict]]:
    """``count`` groups of ``size`` candidates, by interval sampling or by the reranker's shuffled partition."""
    if grouping == "shuffle":
        cut: list[list[int]] = []
        for p in range(-(-count * size // len(cands))):  # enough shuffled passes over the pool
            cut += groups(range(len(cands)), size, seed=f"{key}:{p}")
        return [[cands[i] for i in g] for g in cut[:count]]
    stride = len(cands) // size
    offsets = rng.sample(range(stride), min(stride, count))
    offsets += [rng.randrange(stride) for _ in range(count - len(offsets))]
    return [[cands[offset + k * stride] for k in range(size)] for offset in offsets]


@TASKS.register("grouprank")
def grouprank(
    split: str,
    train: str | dict[str, str] = "dl20",
    test: str | dict[str, str] = "dl19",
    top: int = 20,
    group_size: int = 10,
    groups_per_query: int = 2,
    positive_grade: int = 2,
    scores: list[int] = DL_SCORES,
    seed: int = 0,
    teacher: str | None = None,
    teacher_weight: float = 1.0,
    layout: str = "query-first",
    echo_words: int = 0,
    score_at: str = "answer",
    rank_scope: str = "group",
    grouping: str = "interval",
) -> list[Record]:
    """One record per group: ``question`` (the GroupRank user message in ``layout``, its answer keys repeating
    ``echo_words`` of each document's first words: prompts.grouprank_json), ``system`` (its
    rubric), ``answer`` (the target JSON object, each member's target score), ``gold`` (those scores, 0..10
    in presentation order), ``relevant`` (grade >= ``positive_grade``), ``qid`` and ``docids``;
    ``rank_gains`` (the members' unrounded targets), ``rank_group`` (the group) and where the ranking term
    reads the scores (``score_at``, prompts.SCORE_AT): ``rank_answer`` (every score 0: the answer direct
    scoring reads), or ``rank_marks`` (each block's last character in ``question``) for SFT's ranking term.
    ``rank_scope``: the term orders the members of one ``group``, or of all a ``query``'s groups (its
    ``groups_per_query`` records then share a ranking group and an SFT step: reranking merges the groups'
    scores into one order, so these pairs are the ones inference compares; our proposal).

    ``grouping: interval`` cuts groups by interval sampling (stride ``len(pool) // group_size``, a seeded
    offset), a query's ``groups_per_query`` groups using different offsets where the stride allows, so every
    group spans the first stage's ranks and a seed changes which offsets, not which documents share a group
    once the offsets are all taken; ``shuffle`` (our proposal) cuts them as the reranker does at inference
    (scores.groups: a seeded shuffle of the pool in consecutive groups, reshuffled when ``groups_per_query``
    needs more than one pass over it), so each seed brings new company. Members are shown in a seeded
    shuffled order."""
    if group_size < 1 or groups_per_query < 1 or echo_words < 0:
        raise DataError(f"group_size and groups_per_query must be >= 1 and echo_words >= 0, got {group_size}, {groups_per_query} and {echo_words}")
    if problem := unknown_layout(layout):
        raise DataError(f"grouprank {problem}")
    if score_at not in SCORE_AT:
        raise DataError(f"grouprank score_at {score_at!r} is unknown (known: {', '.join(SCORE_AT)})")
    if rank_scope not in ("group", "query"):
        raise DataError(f"grouprank rank_scope {rank_scope!r} is unknown (known: group, query)")
    if grouping not in ("interval", "shuffle"):
        raise DataError(f"grouprank grouping {grouping!r} is unknown (known: interval, shuffle)")
    records, scaled = [], read_teacher(teacher, teacher_weight)
    for pool in judged_pools(_split_source("grouprank", split, train, test), top):
        cands = [{**c, "target": t} for c, t in zip(pool["candidates"], targets(pool, scores, scaled, teacher_weight))]
        rng = random.Random(f"{seed}-{pool['qid']}")
        size = min(group_size, len(cands))
        for g, members in enumerate(_member_groups(cands, size, groups_per_query, grouping, rng, f"{seed}:{pool['qid']}")):
            rng.shuffle(members)
            gains = [written(m["target"]) for m in members]
            texts = [m["text"] for m in members]
            records.append({
                "question": grouprank_prompt(pool["query"], texts, layout, echo_words), "system": GROUPRANK_SYSTEM,
                "answer": grouprank_json(gains, texts, echo_words),
                "gold": [float(s) for s in gains], "relevant": [m["grade"] >= positive_grade for m in members],
                "qid": pool["qid"], "group": g, "docids": [m["docid"] for m in members],
                "rank_gains": [m["target"] for m in members], "rank_group": pool["qid"] if rank_scope == "query" else f"{pool['qid']}:{g}",
                **({"rank_marks": grouprank_block_ends(pool["query"], texts, layout, echo_words)} if score_at == "block"
                   else {"rank_answer": grouprank_json([0] * len(members), texts, echo_words)}),  # as direct scoring reads it
            })
    return records
