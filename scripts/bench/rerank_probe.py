"""Does a model's ERank or GroupRank score position carry relevance? Linear probes on frozen hidden states (issue 14).

For every (query, passage) pair of the BM25 top K of TREC DL20 (training) and DL19 (test), one forward pass
over ERank's prompt and answer prefix keeps the last position's hidden state after every layer. Per layer, a
ridge regression on the qrels grade is fitted on DL20 (its penalty chosen by 6-fold cross-validation over
DL20's queries) and its scores rerank DL19. The table puts each layer's DL19 nDCG@10 beside BM25's and a
random order's (the mean of 200 shuffles of the same candidates): a probe near the random order says the
representation holds no relevance that 54 training queries can read linearly.

    python scripts/bench/rerank_probe.py --model runs/erank-smollm2/sft --threads 2
    python scripts/bench/rerank_probe.py --model ~/.cache/rlpost/gguf/SmolLM2-135M-Instruct.Q4_1 --prompt short-query-last

With ``--prompt grouprank`` each judged query's top K are shuffled into groups of 5 as ``rlpost rerank``
shuffles them (seed 0, one pass), and a document's features are read in its group's forward: where the
zero-filled answer writes its score (``--where slot``: the token before the digit, whose output predicts it;
``--echo-words`` as the task's) or at the last token of its block in the prompt (``--where end``: with
``--layout query-each`` the query repeated after it):

    python scripts/bench/rerank_probe.py --model M --prompt grouprank --layout query-last --echo-words 8
    python scripts/bench/rerank_probe.py --model M --prompt grouprank --layout query-each --where end

Features are cached beside the JSON (<out>/<label>-<split>.npz); --label names them (default: the model
folder's name and the prompt)."""
from __future__ import annotations

import argparse
import functools
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, print_table, write_json  # noqa: E402

# The query after the passage, nearer the score position: the first wording tried, shorter than the
# ERank message in layout query-last (rlpost.ranking.prompts), which swaps the blocks and keeps the rest.
QUERY_LAST = """Rate how relevant the document below is to the query, using a whole number from 0 to 10.

Document:
{document}

Query:
{query}

How relevant is the document to this query? Reply as: <think> your reasoning </think><answer> the integer from 0 to 10 </answer>"""


@functools.cache
def reranker(model_path: str, layout: str):
    """The model, tokenizer, document cut (256 tokens) and prompt as ``rlpost rerank`` uses them (bf16)."""
    from rlpost.ranking.rerankers import ERankReranker

    return ERankReranker(model_path, "bfloat16", layout=layout)


def hidden_states(r, seqs: list[list[int]], positions: list[list[int]], batch: int) -> np.ndarray:
    """[rows, layers + 1, hidden]: every layer's hidden state at each sequence's ``positions`` (bf16 forwards
    of ``batch`` left-padded sequences through reranker ``r``'s model), in order."""
    import torch

    from rlpost.models.forward import left_pad

    rows = []
    with torch.no_grad():
        for start in range(0, len(seqs), batch):
            chunk = seqs[start : start + batch]
            ids, mask = left_pad(chunk, r.tokenizer.pad_token_id)
            out = r.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                          output_hidden_states=True, logits_to_keep=1)
            states = torch.stack(out.hidden_states, 1)  # [B, layers + 1, T, hidden]
            for b, seq in enumerate(chunk):
                at = [ids.shape[1] - len(seq) + q for q in positions[start + b]]
                rows.append(states[b][:, at].permute(1, 0, 2).float().numpy())
    return np.concatenate(rows)


def save(cache: Path, x: np.ndarray, meta: list[tuple]) -> dict[str, np.ndarray]:
    """The features with their (qid, docid, grade) rows, cached in ``cache``."""
    data = {"x": x, "qid": np.array([m[0] for m in meta]), "docid": np.array([m[1] for m in meta]),
            "grade": np.array([m[2] for m in meta])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def features(model_path: str, prompt: str, split: str, top: int, cache: Path) -> dict[str, np.ndarray]:
    """{x [pairs, layers + 1, hidden], qid, docid, grade} for a split's judged queries, cached in ``cache``."""
    if cache.exists():
        return dict(np.load(cache))
    from rlpost.ranking.prompts import ERANK_DIRECT, render
    from rlpost.ranking.tasks import judged_pools

    short = prompt == "short-query-last"
    r = reranker(model_path, "query-last" if short else prompt)
    meta, prompts = [], []
    for pool in judged_pools(split, top):
        for c in pool["candidates"]:
            meta.append((pool["qid"], c["docid"], c["grade"]))
            prompts.append(render(r.tokenizer, QUERY_LAST.format(query=pool["query"], document=r.truncate(c["text"])),
                                  answer_prefix=ERANK_DIRECT) if short else r.prompt(pool["query"], c["text"]))
    return save(cache, hidden_states(r, prompts, [[len(p) - 1] for p in prompts], 16), meta)


@functools.cache
def group_reranker(model_path: str, layout: str, echo_words: int):
    from rlpost.ranking.rerankers import GroupRankReranker

    return GroupRankReranker(model_path, "bfloat16", group_size=5, direct=True, layout=layout, echo_words=echo_words)


def grouprank_features(model_path: str, layout: str, echo_words: int, where: str, split: str, top: int,
                       cache: Path) -> dict[str, np.ndarray]:
    """As ``features``, one row per document, read in its group's forward (bf16, 4 groups a batch)."""
    if cache.exists():
        return dict(np.load(cache))
    from rlpost.ranking.scores import groups
    from rlpost.ranking.tasks import judged_pools

    r = group_reranker(model_path, layout, echo_words)
    meta, seqs, positions = [], [], []
    for pool in judged_pools(split, top):
        byid = {c["docid"]: c for c in pool["candidates"]}
        for g in groups(list(byid), 5, seed=f"0:{pool['qid']}:0"):
            members = [byid[d]["text"] for d in g]
            prompt = r.prompt(pool["query"], members)
            if where == "slot":
                answer, slots = r.direct_answer(members)
                seqs.append(prompt + answer)
                positions.append([len(prompt) + s - 1 for s in slots])
            else:  # where score_at: block reads the scores
                seqs.append(prompt)
                positions.append(r.block_prompt(pool["query"], members)[1])
            meta += [(pool["qid"], d, byid[d]["grade"]) for d in g]
    return save(cache, hidden_states(r, seqs, positions, 4), meta)


def ndcg(data: dict[str, np.ndarray], scores: np.ndarray, qrels: dict) -> float:
    from rlpost.ranking.trec import evaluate

    run: dict[str, dict[str, float]] = {}
    for qid, docid, s in zip(data["qid"], data["docid"], scores):
        run.setdefault(str(qid), {})[str(docid)] = float(s)
    return evaluate(run, qrels)["ndcg_cut_10"]


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)


def probe(train: dict, test: dict, layer: int, qrels: dict) -> tuple[float, float, float]:
    """(alpha, DL20 cross-validated nDCG@10, DL19 nDCG@10) of a ridge probe on one layer."""
    x, z = train["x"][:, layer], test["x"][:, layer]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, z = np.c_[(x - mu) / sd, np.ones(len(x))], np.c_[(z - mu) / sd, np.ones(len(z))]
    y = train["grade"].astype(float)
    folds = np.array_split(np.random.default_rng(0).permutation(np.unique(train["qid"])), 6)
    best = (-1.0, 0.0)
    for alpha in (1, 10, 100, 1000, 10000):
        pred = np.zeros(len(y))
        for fold in folds:
            held = np.isin(train["qid"], fold)
            pred[held] = x[held] @ ridge(x[~held], y[~held], alpha)
        best = max(best, (ndcg(train, pred, qrels["dl20"]), alpha))
    return best[1], best[0], ndcg(test, z @ ridge(x, y, best[1]), qrels["dl19"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt", choices=("query-first", "query-last", "short-query-last", "grouprank"), default="query-first",
                        help="ERank's message in either layout, the shorter query-last wording first probed, or GroupRank's")
    parser.add_argument("--layout", default="query-last", help="grouprank: the prompt's layout")
    parser.add_argument("--echo-words", type=int, default=0, help="grouprank: the answer's keys repeat this many first words")
    parser.add_argument("--where", choices=("slot", "end"), default="slot", help="grouprank: the score slot or the block's end")
    parser.add_argument("--label")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench/rerank_probe")
    args = parser.parse_args()

    import torch

    from rlpost.ranking.tasks import judged_pools
    from rlpost.ranking.trec import read_qrels
    from rlpost.data.paths import shared_data_path

    torch.set_num_threads(args.threads)
    load, t = loadavg(), time.perf_counter()
    group = args.prompt == "grouprank"
    label = args.label or f"{Path(args.model).name}-{args.prompt}" + (f"-{args.layout}-echo{args.echo_words}-{args.where}" if group else "")
    out = Path(args.out)
    qrels = {s: read_qrels(shared_data_path("retrieval", f"trec-dl-20{y}-passage", f"qrels.dl{y}-passage.txt"))
             for s, y in (("dl19", "19"), ("dl20", "20"))}
    train, test = ((grouprank_features(args.model, args.layout, args.echo_words, args.where, s, args.top, out / f"{label}-{s}.npz")
                    if group else features(args.model, args.prompt, s, args.top, out / f"{label}-{s}.npz")) for s in ("dl20", "dl19"))
    first = {(p["qid"], c["docid"]): c["score"] for s in ("dl19", "dl20") for p in judged_pools(s, args.top) for c in p["candidates"]}
    bm25, shuffled = {}, {}
    for split, data in (("dl19", test), ("dl20", train)):  # rows in group order for grouprank: look the scores up
        bm25[split] = ndcg(data, np.array([first[(str(q), str(d))] for q, d in zip(data["qid"], data["docid"])]), qrels[split])
        n = len(data["qid"])
        shuffled[split] = [ndcg(data, np.array(random.Random(s).sample(range(n), n)), qrels[split]) for s in range(200)]
    rows = [{"system": "BM25 (first stage)", "dl20 cv": round(bm25["dl20"], 4), "dl19": round(bm25["dl19"], 4)},
            {"system": f"random order (200 shuffles, DL19 sd {np.std(shuffled['dl19']):.4f})",
             "dl20 cv": round(float(np.mean(shuffled["dl20"])), 4), "dl19": round(float(np.mean(shuffled["dl19"])), 4)}]
    for layer in range(1, train["x"].shape[1]):  # 0 is the embedding of the prefix's last token: the same for every pair
        alpha, cv, dl19 = probe(train, test, layer, qrels)
        rows.append({"system": f"probe, layer {layer}", "alpha": alpha, "dl20 cv": round(cv, 4), "dl19": round(dl19, 4)})
    print_table(f"{label}: ridge probes at the score position, nDCG@10 over BM25's top {args.top} (DL20: cross-validated)",
                rows, ["system", "alpha", "dl20 cv", "dl19"])
    path = write_json(out / f"{label}.json", {"rows": rows, "model": args.model, "prompt": args.prompt, "top": args.top,
                                               **({"layout": args.layout, "echo_words": args.echo_words, "where": args.where} if group else {}),
                                               "seconds": round(time.perf_counter() - t, 1),
                                               "machine": machine_info(load, args.threads)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
