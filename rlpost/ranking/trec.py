"""TREC runs and qrels, the rank_llm candidate files, and nDCG / recall against qrels with pytrec_eval (the
C trec_eval behind BEIR, BRIGHT and Diver). Ids are strings. Every bad line is one DataError naming the file
and the line."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlpost.config import ConfigError
from rlpost.data.errors import DataError
from rlpost.ranking.scores import strictly_decreasing
from rlpost.textfile import read_utf8

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def _lines(path: Path, what: str) -> Iterable[tuple[int, str]]:
    """(line number, line) of the file's non-blank lines; DataError naming ``what`` when it is missing."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    for n, line in enumerate(read_utf8(path, what, DataError).splitlines(), 1):
        if line.strip():
            yield n, line


def _columns(path: Path, kind: str, layout: str, value: int, convert: type, expected: str) -> dict[str, dict[str, Any]]:
    """{column 0: {column 2: convert(column ``value``)}} of a whitespace-separated TREC file."""
    width = len(layout.split())
    out: dict[str, dict[str, Any]] = {}
    for n, line in _lines(path, f"{kind} file"):
        cols = line.split()
        if len(cols) != width:
            raise DataError(f"{path} line {n}: expected {width} columns '{layout}', got {len(cols)}")
        try:
            out.setdefault(cols[0], {})[cols[2]] = convert(cols[value])
        except ValueError:
            raise DataError(f"{path} line {n}: the {layout.split()[value]} {cols[value]!r} is not {expected}") from None
    if not out:
        raise DataError(f"{path}: no {kind} lines")
    return out


def read_run(path: str | Path) -> Run:
    """``qid Q0 docid rank score tag`` lines -> {qid: {docid: score}}."""
    return _columns(Path(path), "run", "qid Q0 docid rank score tag", 4, float, "a number")


def read_qrels(path: str | Path) -> Qrels:
    """``qid iteration docid relevance`` lines -> {qid: {docid: relevance}}."""
    return _columns(Path(path), "qrels", "qid 0 docid relevance", 3, int, "an integer")


def read_topics(path: str | Path) -> dict[str, str]:
    """``qid<TAB>query`` lines -> {qid: query}."""
    path = Path(path)
    topics = {}
    for n, line in _lines(path, "topics file"):
        qid, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise DataError(f"{path} line {n}: expected 'qid<TAB>query'")
        topics[qid.strip()] = text.strip()
    if not topics:
        raise DataError(f"{path}: no topics (expected 'qid<TAB>query' lines)")
    return topics


def read_candidates(path: str | Path) -> list[dict[str, Any]]:
    """A rank_llm JSON list of ``{"query": ..., "hits": [{"qid", "docid", "score", "content"}, ...]}`` ->
    [{"qid", "query", "candidates": [{"docid", "text", "score"}, ...]}] in first-stage order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"candidates file not found: {path}")
    try:
        items = json.loads(read_utf8(path, "candidates file", DataError))
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of {{query, hits}} objects")
    if not items:
        raise DataError(f"{path}: no queries (expected a JSON list of {{query, hits}} objects, got an empty list)")
    out, seen = [], set()
    for i, item in enumerate(items):
        hits = item.get("hits") if isinstance(item, dict) else None
        if not isinstance(hits, list) or not isinstance(item.get("query"), str):
            raise DataError(f"{path}: item {i} needs a 'query' string and a 'hits' list")
        if not hits:
            raise DataError(f"{path}: item {i} ({item['query'][:60]!r}) has an empty candidate list")
        try:
            qid = str(hits[0]["qid"])
            candidates = [{"docid": str(h["docid"]), "text": h["content"], "score": float(h.get("score", 0.0))} for h in hits]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: item {i}: every hit needs 'qid', 'docid', 'content' and a numeric 'score' ({e!r})") from None
        if qid in seen:
            raise DataError(f"{path}: item {i}: query {qid} appears twice")
        seen.add(qid)
        if any(not isinstance(c["text"], str) or not c["text"].strip() for c in candidates):
            bad = next(c["docid"] for c in candidates if not isinstance(c["text"], str) or not c["text"].strip())
            raise DataError(f"{path}: item {i}: document {bad} has no text")
        out.append({"qid": qid, "query": item["query"], "candidates": candidates})
    return out


def write_run(run: dict[str, Sequence[tuple[str, float]]], path: str | Path, tag: str = "rlpost") -> Path:
    """Write ``{qid: [(docid, score), ...]}`` as a TREC run: sorted by score (ties in the given order), ranks
    from 1, scores nudged to strictly decrease so trec_eval cannot reorder ties."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{qid} Q0 {docid} {rank} {score:.6f} {tag}"
        for qid, ranked in run.items()
        for rank, (docid, score) in enumerate(strictly_decreasing(ranked), 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


MEASURES = ("ndcg_cut_10", "recall_100")


def evaluate(
    run: Run, qrels: Qrels, measures: Sequence[str] = MEASURES, allow_missing: bool = False, relevance_level: int = 1,
) -> dict[str, Any]:
    """Mean of each measure over every qrels query (a query missing from the run counts 0, as trec_eval -c),
    with per-query values and the counts. nDCG uses the graded relevance as linear gains; binary measures
    (recall) count relevance >= ``relevance_level`` (TREC DL's convention is 2). DataError when the qrels name
    no query of the run, or when some are missing and ``allow_missing`` is false."""
    try:
        import pytrec_eval
    except ImportError:
        raise ConfigError("evaluating a ranking needs pytrec_eval: pip install 'rlpost[rerank]'") from None

    judged = set(qrels)
    if not judged & set(run):
        raise DataError(f"the qrels ({len(qrels)} queries) name no query of the run ({len(run)} queries, e.g. {next(iter(run), '-')})")
    missing = sorted(judged - set(run))
    if missing and not allow_missing:
        raise DataError(f"{len(missing)} of {len(judged)} judged queries are missing from the run (e.g. {', '.join(missing[:3])})")
    names = {m.replace("_cut_", "_cut.").replace("recall_", "recall.") for m in measures}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, names, relevance_level=relevance_level).evaluate({q: run[q] for q in judged & set(run)})
    result: dict[str, Any] = {
        m: sum(per_query.get(q, {}).get(m, 0.0) for q in judged) / len(judged) for m in measures
    }
    result.update(queries=len(judged), missing=len(missing), per_query=per_query)
    return result


def read_corpus(path: str | Path) -> dict[str, str]:
    """A BEIR corpus.jsonl (``{"_id", "title", "text"}`` per line) -> {docid: "title text"}."""
    path = Path(path)
    corpus = {}
    for n, line in _lines(path, "corpus file"):
        try:
            doc = json.loads(line)
            docid, text, title = str(doc["_id"]), doc.get("text"), doc.get("title") or ""
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} line {n}: expected a JSON object with '_id' and 'text'") from None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} line {n}: document {docid} has no text")
        corpus[docid] = f"{title} {text}".strip() if isinstance(title, str) else text
    if not corpus:
        raise DataError(f"{path}: no documents")
    return corpus


def candidates_from_run(run: Run, topics: dict[str, str], corpus: dict[str, str], run_path: str | Path = "the run") -> list[dict[str, Any]]:
    """The run's queries with their documents' texts, best first, in the shape of ``read_candidates``."""
    out = []
    for qid, scores in run.items():
        if qid not in topics:
            raise DataError(f"{run_path}: query {qid} is not in the topics file")
        missing = [d for d in scores if d not in corpus]
        if missing:
            raise DataError(f"{run_path}: query {qid} names {len(missing)} documents missing from the corpus (e.g. {missing[0]})")
        order = sorted(scores, key=lambda d: -scores[d])
        out.append({"qid": qid, "query": topics[qid], "candidates": [{"docid": d, "text": corpus[d], "score": scores[d]} for d in order]})
    return out
