"""GroupRank's test-time scaling from one run: nDCG@10 when only the first r shuffled passes are averaged.

`rlpost rerank --method grouprank --passes R` logs each document's score in every pass (<out>.details.jsonl);
pass r's groups do not depend on R (seeded per query and pass), so the first r passes of an R-pass run are
the r-pass run. This re-merges them for r = 1..R, scores each against the qrels, and compares each with
the first stage and with the R-pass merge (paired over queries: mean difference, its standard error, queries
better / worse). The first stage's order is the reranked documents' first-stage order, so nDCG@10 needs --top 10
or more in the rerank. `--compare` reads a second run over the same queries (e.g. `--placement rotate`) and
compares its first r passes with the first run's, r for r. `--more` appends the passes of the same model's run
with another `--seed` (other groups) to the first run's, for more draws without rerunning the first passes
(`--compare-more` to the compared run's).
`--hybrid W --candidates FILE` adds the same rows fused with the first stage as `rlpost rerank --hybrid W` fuses
them: W z(first-stage score) + (1 - W) z(merged GroupRank score) per query over the reranked documents, the
first-stage scores read from the candidates file the run reranked.

The first r passes are one draw of the groups. The rows "any r passes" average nDCG@10 over every subset of r
of the R passes (at most SUBSETS of them, drawn with a fixed seed): what r passes read whichever groups are
drawn, with the spread over the draws (min / max); their paired columns use each query's mean over the subsets.

    python scripts/bench/grouprank_passes.py runs/eval/x.trec.details.jsonl --qrels qrels.dl19-passage.txt \
        --relevance-level 2 --out runs/bench/grouprank_passes/x
"""
from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import details_parser, machine_info, plot_runs, print_table, read_details, write_json  # noqa: E402


def label(r: int) -> str:
    return f"{r} pass" if r == 1 else f"{r} passes"


def any_label(r: int) -> str:
    """The ranking averaged over subsets of r passes (any r of them, not the first r)."""
    return f"any {label(r)}"


SUBSETS = 50  # most subsets of r passes averaged for one r


def merged_run(queries: list[dict], chosen: Sequence[int], hybrid_weight: float = 0.0) -> dict[str, list[tuple[str, float]]]:
    """{qid: [(docid, score), ...] best first} from the passes ``chosen`` of queries whose docs are in
    first-stage order; a document none of their parsed groups scored goes after the scored ones, in first-stage
    order (as the reranker ranks it). A ``hybrid_weight`` above 0 fuses the merged scores with the documents'
    ``first_stage_score`` as `rlpost rerank --hybrid` does."""
    from rlpost.ranking.scores import hybrid, merge_passes

    run = {}
    for q in queries:
        docs = q["docs"]
        merged = merge_passes([{d["docid"]: d["pass_scores"][p] for d in docs if d["pass_scores"][p] is not None} for p in chosen])
        scores = [merged.get(d["docid"], -1.0) for d in docs]
        if hybrid_weight > 0:
            scores = hybrid([d["first_stage_score"] for d in docs], scores, hybrid_weight).tolist()
        run[q["qid"]] = sorted(zip((d["docid"] for d in docs), scores), key=lambda x: -x[1])  # stable: ties keep first-stage order
    return run


def fused(name: str, weight: float) -> str:
    """A ranking's name when fused with the first stage at ``weight`` (0: not fused)."""
    return f"hybrid {weight:g}, {name}" if weight > 0 else name


def merged_runs(queries: list[dict], passes: int, weights: Sequence[float] = ()) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """{"first stage" | label(r) | fused(label(r), w): {qid: [(docid, score), ...] best first}} for the first r
    passes, r = 1..passes, alone and fused at each of ``weights``."""
    first = {q["qid"]: [(d["docid"], -float(d["first_stage_rank"])) for d in q["docs"]] for q in queries}
    return {"first stage": first, **{fused(label(r), w): merged_run(queries, range(r), w) for w in (0.0, *weights) for r in range(1, passes + 1)}}


def pass_subsets(passes: int, r: int, limit: int = SUBSETS, seed: int = 0) -> list[tuple[int, ...]]:
    """Every subset of r of the passes, or ``limit`` of them drawn with ``seed`` where there are more."""
    every = list(combinations(range(passes), r))
    return every if len(every) <= limit else random.Random(seed).sample(every, limit)


def ndcg10(run: dict[str, list[tuple[str, float]]], qrels: dict, relevance_level: int) -> tuple[float, dict[str, float]]:
    """(mean nDCG@10, {qid: nDCG@10}) for a ranked run."""
    from rlpost.ranking.scores import strictly_decreasing
    from rlpost.ranking.trec import evaluate

    written = {q: dict(strictly_decreasing(r)) for q, r in run.items()}
    result = evaluate(written, qrels, ("ndcg_cut_10",), allow_missing=True, relevance_level=relevance_level)
    return result["ndcg_cut_10"], {q: m["ndcg_cut_10"] for q, m in result["per_query"].items()}


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Mean of a - b over the queries both have, its standard error, and how many queries a is above / below b."""
    diffs = [a[q] - b[q] for q in a if q in b]
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (len(diffs) - 1) / len(diffs)) if len(diffs) > 1 else float("nan")
    return {"diff": mean, "se": se, "better": sum(x > 1e-9 for x in diffs), "worse": sum(x < -1e-9 for x in diffs)}


def appended(queries: list[dict], more: str) -> None:
    """Appends the passes of ``more`` (the same model's run over the same candidates with another --seed) to
    each document's pass lists; exits in one line where its queries or documents differ."""
    other = {q["qid"]: {d["docid"]: d for d in q["docs"]} for q in read_details(more)}
    for q in queries:
        docs = other.get(q["qid"], {})
        if set(docs) != {d["docid"] for d in q["docs"]}:
            sys.exit(f"{more}: query {q['qid']} has other documents than the run it adds passes to; expected the same candidates")
        for d in q["docs"]:
            for key in ("pass_groups", "pass_positions", "pass_scores"):
                d[key] = d.get(key, []) + docs[d["docid"]].get(key, [])


def first_stage_scores(queries: list[dict], candidates: dict[str, dict[str, float]]) -> None:
    """Sets each document's ``first_stage_score`` from ``candidates`` ({qid: {docid: score}}); exits in one line
    where a reranked document is not among them."""
    for q in queries:
        scores = candidates.get(q["qid"], {})
        for d in q["docs"]:
            if d["docid"] not in scores:
                sys.exit(f"--candidates: query {q['qid']} has no candidate {d['docid']}; expected the candidates file the run reranked")
            d["first_stage_score"] = scores[d["docid"]]


def scored(details: str, qrels: dict, relevance_level: int, more: Sequence[str] = (), weights: Sequence[float] = (),
           candidates: dict[str, dict[str, float]] | None = None) -> tuple[int, dict[str, dict[str, float]], list[dict]]:
    """(passes, {ranking: {qid: nDCG@10}}, one row per ranking) for one run's details file, with the passes of
    the ``more`` files appended, alone and fused with the first stage at each of ``weights`` (first-stage scores
    from ``candidates``, {qid: {docid: score}})."""
    queries = read_details(details)
    for path in more:
        appended(queries, path)
    if weights:
        first_stage_scores(queries, candidates)
    lengths = {len(d.get("pass_scores", [])) for q in queries for d in q["docs"]}
    if not queries or len(lengths) != 1 or 0 in lengths:
        sys.exit(f"{details}: expected the per-document pass_scores of a grouprank run, one length throughout; got lengths {sorted(lengths)}")
    passes = lengths.pop()
    for q in queries:
        q["docs"].sort(key=lambda d: d["first_stage_rank"])
    per_query, rows = {}, []
    for name, run in merged_runs(queries, passes, weights).items():
        mean, per_query[name] = ndcg10(run, qrels, relevance_level)
        rows.append({"ranking": name, "nDCG@10": mean, "queries": len(per_query[name])})
    for w in (0.0, *weights):
        for r in range(1, passes + 1):
            reads = [ndcg10(merged_run(queries, chosen, w), qrels, relevance_level) for chosen in pass_subsets(passes, r)]
            means = [mean for mean, _ in reads]
            name = fused(any_label(r), w)
            per_query[name] = {q: sum(read[q] for _, read in reads) / len(reads) for q in reads[0][1]}
            rows.append({"ranking": name, "nDCG@10": sum(means) / len(means), "subsets": len(reads),
                         "min": round(min(means), 4), "max": round(max(means), 4), "queries": len(per_query[name])})
    return passes, per_query, rows


def compare(rows: list[dict], per_query: dict, key: str, ref: Callable[[str], dict[str, float] | None]) -> None:
    """Adds to each reranked row, under ``key``, its paired difference from ``ref(its ranking)`` (None: no row to
    pair, e.g. beyond a shorter run's passes)."""
    for row in rows:
        if row["ranking"] != "first stage" and (other := ref(row["ranking"])) is not None:
            d = paired(per_query[row["ranking"]], other)
            row[key] = f"{d['diff']:+.4f} ({d['se']:.4f}); {d['better']}/{d['worse']}"
            row[key + " (raw)"] = d


def tables(title: str, rows: list[dict], paired_columns: list[str]) -> None:
    """Prints the first-r rows, then the any-r rows (mean over subsets of the passes, with their spread)."""
    first_r = [row for row in rows if "subsets" not in row]
    any_r = [row for row in rows if "subsets" in row]
    print_table(f"GroupRank, first r passes averaged: {title}", first_r, ["ranking", "nDCG@10", *paired_columns, "queries"])
    print_table(f"GroupRank, any r passes: nDCG@10 averaged over subsets of the passes (at most {SUBSETS} a row)", any_r,
                ["ranking", "subsets", "nDCG@10", "min", "max", *paired_columns])


def curve(rows: list[dict], passes: int, name: Callable[[int], str]) -> list[list[tuple[int, float]]]:
    """One plotted curve: nDCG@10 of the rows name(1) .. name(passes)."""
    by_name = {row["ranking"]: row["nDCG@10"] for row in rows}
    return [[(r, by_name[name(r)]) for r in range(1, passes + 1)]]


def main() -> None:
    p = details_parser(__doc__.split("\n")[0], "path stem: <out>.json and <out>.png")
    p.add_argument("--compare", metavar="DETAILS",
                   help="a second run's details over the same queries (e.g. --placement rotate): its first r passes against the first run's")
    p.add_argument("--more", metavar="DETAILS", action="append", default=[],
                   help="the same model's run with another --seed: its passes follow the first run's (repeatable)")
    p.add_argument("--compare-more", metavar="DETAILS", action="append", default=[],
                   help="as --more, for the --compare run (repeatable)")
    p.add_argument("--hybrid", type=float, nargs="+", default=[], metavar="W",
                   help="also fuse with the first stage: W z(first stage) + (1 - W) z(GroupRank), as `rlpost rerank --hybrid W` (needs --candidates)")
    p.add_argument("--candidates", help="the rank_llm JSON the run reranked: the first-stage scores --hybrid fuses")
    args = p.parse_args()
    if bad := [w for w in args.hybrid if not 0 < w < 1]:
        sys.exit(f"--hybrid takes the first stage's weights, each above 0 and below 1, got {bad[0]:g}")
    if args.compare_more and not args.compare:
        sys.exit("--compare-more appends passes to the --compare run; give --compare too")
    if args.hybrid and not args.candidates:
        sys.exit("--hybrid needs --candidates: the rank_llm JSON the run reranked, for the first-stage scores")

    from rlpost.data.errors import DataError
    from rlpost.ranking.trec import read_candidates, read_qrels

    weights = list(dict.fromkeys(args.hybrid))
    try:
        qrels = read_qrels(args.qrels)
        items = read_candidates(args.candidates) if weights else []
    except DataError as e:
        sys.exit(str(e))
    candidates = {i["qid"]: {c["docid"]: c["score"] for c in i["candidates"]} for i in items}
    passes, per_query, rows = scored(args.details, qrels, args.relevance_level, args.more, weights, candidates)
    last = label(passes)
    compare(rows, per_query, "vs first stage", lambda _: per_query["first stage"])
    compare(rows, per_query, f"vs {last}", lambda _: per_query[last])
    tables(f"{args.details}, {passes} passes", rows, ["vs first stage", f"vs {last}"])
    curves = {"GroupRank, first r passes": curve(rows, passes, label), "GroupRank, any r (mean over subsets)": curve(rows, passes, any_label)}
    for w in weights:
        curves[f"hybrid {w:g}, any r"] = curve(rows, passes, lambda r, w=w: fused(any_label(r), w))
    result = {"details": args.details, "more": args.more, "qrels": args.qrels, "relevance_level": args.relevance_level,
              "hybrid": weights, "candidates": args.candidates,
              "rows": rows, "per_query_ndcg_cut_10": per_query}
    if args.compare:
        other_passes, other_query, other_rows = scored(args.compare, qrels, args.relevance_level, args.compare_more, weights, candidates)
        compare(other_rows, other_query, "vs first stage", lambda _: per_query["first stage"])
        compare(other_rows, other_query, "vs the first run, same passes", per_query.get)
        tables(f"{args.compare}, {other_passes} passes", other_rows, ["vs first stage", "vs the first run, same passes"])
        curves["compared run, first r passes"] = curve(other_rows, other_passes, label)
        curves["compared run, any r"] = curve(other_rows, other_passes, any_label)
        result["compare"] = {"details": args.compare, "more": args.compare_more, "rows": other_rows, "per_query_ndcg_cut_10": other_query}
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {**result, "machine": machine_info()})
    first = rows[0]["nDCG@10"]
    curves["first stage"] = [[(1, first), (passes, first)]]
    plot_runs([("passes averaged", curves)], out.with_suffix(".png"), "GroupRank test-time scaling", "nDCG@10")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
