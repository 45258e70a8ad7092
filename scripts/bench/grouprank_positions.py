"""GroupRank's scores by place in the prompt: does a member's score carry relevance wherever it is shown?

Reads a `rlpost rerank --method grouprank` run's <out>.details.jsonl and, for each place k in a group's prompt,
reports the mean score (all, relevant, not relevant) and two within-query AUCs: relevant members shown at k
against non-relevant ones shown at k (is there signal at k?) and against non-relevant ones anywhere (does
place k's offset cost relevant documents?). An AUC is the share of (relevant, non-relevant) pairs of one query
and pass ordered right, ties half, averaged over the queries that have both. Places are the logged
`pass_positions`; runs written before they were logged get them from the reranker's seeded groups
(`--group-size`, `--seed` as given to `rlpost rerank`).

    python scripts/bench/grouprank_positions.py runs/eval/x.trec.details.jsonl --qrels qrels.dl19-passage.txt \
        --relevance-level 2 --group-size 5 --out runs/bench/grouprank_positions/x
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import details_parser, machine_info, mean, print_table, read_details, write_json  # noqa: E402


def placed(queries: list[dict], group_size: int | None, seed: int) -> list[tuple[str, int, int, float, str]]:
    """(qid, pass, place, score, docid) for every scored member of every pass."""
    from rlpost.ranking.scores import groups

    out = []
    for q in queries:
        docs = [d for d in sorted(q["docs"], key=lambda d: d["first_stage_rank"]) if d.get("pass_scores")]
        for r in range(len(docs[0]["pass_scores"]) if docs else 0):
            if all("pass_positions" in d for d in docs):
                place = {d["docid"]: d["pass_positions"][r] for d in docs}
            elif group_size:
                windows = groups([d["docid"] for d in docs], group_size, seed=f"{seed}:{q['qid']}:{r}")
                place = {docid: k for g in windows for k, docid in enumerate(g, 1)}
            else:
                sys.exit("this run logs no pass_positions: give --group-size (and --seed) as the rerank had them")
            out += [(q["qid"], r, place[d["docid"]], d["pass_scores"][r], d["docid"]) for d in docs if d["pass_scores"][r] is not None]
    return out


def auc(pos: list[float], neg: list[float]) -> float | None:
    """Share of (pos, neg) pairs with pos above neg, ties counted half; None without both."""
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def main() -> None:
    p = details_parser(__doc__.split("\n")[0], "path stem: <out>.json")
    p.add_argument("--group-size", type=int, help="only for runs that log no pass_positions")
    p.add_argument("--seed", type=int, default=0, help="the rerank's --seed, only for runs that log no pass_positions")
    args = p.parse_args()

    from rlpost.ranking.trec import read_qrels

    queries = read_details(args.details)
    qrels = read_qrels(args.qrels)
    members = placed(queries, args.group_size, args.seed)
    if not members:
        sys.exit(f"{args.details}: no scored members (expected the details of a grouprank run)")
    by = defaultdict(lambda: {True: [], False: []})  # (qid, pass, place) -> relevant? -> scores
    negatives = defaultdict(list)  # (qid, pass) -> every non-relevant member's score
    for qid, r, k, score, docid in members:
        relevant = qrels.get(qid, {}).get(docid, 0) >= args.relevance_level
        by[qid, r, k][relevant].append(score)
        if not relevant:
            negatives[qid, r].append(score)
    rows = []
    for k in sorted({m[2] for m in members}):
        here = {key: v for key, v in by.items() if key[2] == k}
        at_k, anywhere = defaultdict(list), defaultdict(list)
        for (qid, r, _), v in here.items():
            for bucket, neg in ((at_k, v[False]), (anywhere, negatives[qid, r])):
                if (a := auc(v[True], neg)) is not None:
                    bucket[qid].append(a)
        rel = [s for v in here.values() for s in v[True]]
        non = [s for v in here.values() for s in v[False]]
        rows.append({"place": k, "members": len(rel) + len(non), "mean score": mean(rel + non),
                     "relevant": mean(rel) if rel else None, "not relevant": mean(non) if non else None,
                     "AUC at this place": mean(mean(a) for a in at_k.values()) if at_k else None, "queries (same place)": len(at_k),
                     "AUC vs anywhere": mean(mean(a) for a in anywhere.values()) if anywhere else None})
    print_table(f"GroupRank scores by place in the group's prompt: {args.details}", rows,
                ["place", "members", "mean score", "relevant", "not relevant", "AUC at this place", "queries (same place)", "AUC vs anywhere"])
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"details": args.details, "qrels": args.qrels, "relevance_level": args.relevance_level,
                                          "rows": rows, "machine": machine_info()})
    print(f"wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
