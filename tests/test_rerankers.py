"""The reranking API and `rlpost rerank` on the tiny model: ERank's score distribution against an
independent full forward, GroupRank's groups, a TREC run that trec_eval reads, and bad input in one line."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlpost.cli import main
from rlpost.config import ConfigError
from rlpost.data import DataError
from rlpost.ranking.rerankers import ERankReranker, GroupRankReranker
from rlpost.ranking.scores import groups, rotated_groups

REPO = Path(__file__).resolve().parent.parent
QUERY = "do goldfish grow"
DOCS = ["Goldfish grow to fit their tank.", "The stock market fell today.", "Fish tanks need filters."]


def test_erank_distribution_matches_a_full_forward_over_each_score(tiny_model_path):
    """P(s) for s = 0..9 and "10" from the last-position forward (plus one conditioned on "1") equals the
    probability of each score's tokens under a full forward, with "1" meaning "1" not followed by "0"."""
    from rlpost.models.forward import completion_logprobs
    from rlpost.ranking.prompts import ERANK_DIRECT, erank_prompt, render

    r = ERankReranker(tiny_model_path, max_doc_tokens=None)
    assert r.ten is None and len(set(r.digits)) == 10  # the char tokenizer spells "10" as "1" "0"
    dist = r.distributions([(QUERY, DOCS[0])])[0]
    prompt = render(r.tokenizer, erank_prompt(QUERY, DOCS[0]), answer_prefix=ERANK_DIRECT)
    completions = [[d] for d in r.digits] + [[r.digits[1], r.digits[0]]]
    logp, mask, _ = completion_logprobs(r.model, [prompt] * 11, completions, r.tokenizer.pad_token_id)
    p = (logp * mask).sum(dim=1).exp()
    p[1] -= p[10]  # "1" then anything but "0"
    torch.testing.assert_close(dist, p / p.sum(), rtol=1e-4, atol=1e-6)


def test_rerank_returns_every_document_best_first(tiny_model_path):
    r = ERankReranker(tiny_model_path)
    out = r.rerank(QUERY, DOCS)
    assert sorted(s.docid for s in out) == ["0", "1", "2"] and [s.rank for s in out] == [1, 2, 3]
    assert all(a.score >= b.score for a, b in zip(out, out[1:])) and all(0 <= s.score <= 10 for s in out)
    assert [s.docid for s in r.rerank(QUERY, DOCS, top_k=2)] == [s.docid for s in out[:2]]
    batch = r.rerank_batch([(QUERY, DOCS), ("stocks", [{"docid": "x", "text": "The stock market fell."}])])
    assert [s.score for s in batch[0]] == pytest.approx([s.score for s in out], abs=1e-3)  # other padding
    assert batch[1][0].docid == "x"
    with pytest.raises(ConfigError, match="the candidate list is empty"):
        r.rerank(QUERY, [])


def test_the_query_last_layout_is_the_prompt_the_task_trains_on(tiny_model_path, tmp_path):
    """An ERank reranker with layout query-last scores the erank task's user message with that layout (the
    document block before the query block, the rest unchanged), which changes the scores; GroupRank's task
    puts its documents before the query, and with query-each the query after each document too; an unknown
    layout is one line before the model loads."""
    from rlpost.data.tasks import load_task
    from rlpost.ranking.prompts import ERANK_DIRECT, erank_prompt, grouprank_prompt, render

    (tmp_path / "c.json").write_text(json.dumps([{"query": QUERY, "hits": [{"qid": 1, "docid": "a", "score": 1, "content": DOCS[0]}]}]))
    (tmp_path / "q.txt").write_text("1 0 a 1\n")
    record = load_task("erank", "train", train={"candidates": str(tmp_path / "c.json"), "qrels": str(tmp_path / "q.txt")},
                       layout="query-last")[0]
    last, first = ERankReranker(tiny_model_path, layout="query-last", max_doc_tokens=None), ERankReranker(tiny_model_path)
    assert last.prompt(QUERY, DOCS[0]) == render(last.tokenizer, record["question"], answer_prefix=ERANK_DIRECT)
    text = record["question"]
    swapped = text.replace(f"Document:\n{DOCS[0]}\n\nQuery:\n{QUERY}", f"Query:\n{QUERY}\n\nDocument:\n{DOCS[0]}")
    assert text.index("Document:") < text.index("Query:") and swapped == erank_prompt(QUERY, DOCS[0])
    assert not torch.allclose(last.distributions([(QUERY, DOCS[0])]), first.distributions([(QUERY, DOCS[0])]))
    with pytest.raises(ConfigError, match="erank layout 'sideways' is unknown"):
        ERankReranker("/nowhere", layout="sideways")
    with pytest.raises(DataError, match="erank layout 'sideways' is unknown"):
        load_task("erank", "train", train={"candidates": str(tmp_path / "c.json"), "qrels": str(tmp_path / "q.txt")}, layout="sideways")
    group = load_task("grouprank", "train", train={"candidates": str(tmp_path / "c.json"), "qrels": str(tmp_path / "q.txt")},
                      group_size=1, groups_per_query=1, layout="query-last")[0]["question"]
    assert group.index("Documents:\n[1]. Goldfish") < group.index(f"Query:\n{QUERY}")
    each = grouprank_prompt(QUERY, DOCS[:2], "query-each")  # the query also after every document; one document: query-last
    assert each == grouprank_prompt(QUERY, DOCS[:2], "query-last").replace(f"{DOCS[0]}\n", f"{DOCS[0]}\nQuery: {QUERY}\n").replace(
        f"{DOCS[1]}\n", f"{DOCS[1]}\nQuery: {QUERY}\n") and each.count(QUERY) == 3
    assert erank_prompt(QUERY, DOCS[0], layout="query-each") == text
    around = grouprank_prompt(QUERY, DOCS[:2], "query-around")  # query-each's blocks after the query-first header
    assert around == grouprank_prompt(QUERY, DOCS[:2]).replace(f"{DOCS[0]}\n", f"{DOCS[0]}\nQuery: {QUERY}\n").replace(
        f"{DOCS[1]}\n", f"{DOCS[1]}\nQuery: {QUERY}\n") and around.index(QUERY) < around.index(DOCS[0])
    assert erank_prompt(QUERY, DOCS[0], layout="query-around") == erank_prompt(QUERY, DOCS[0]).replace(
        f"Document:\n{DOCS[0]}", f"Document:\n{DOCS[0]}\n\nQuery:\n{QUERY}")
    with pytest.raises(ConfigError, match="grouprank layout 'sideways' is unknown"):
        GroupRankReranker("/nowhere", layout="sideways")


def test_grouprank_scores_every_group_and_ranks_unscored_documents_last(tiny_model_path):
    """The untrained tiny model writes no JSON: every document is unscored, its groups counted as unparsed,
    and the first-stage order is kept."""
    r = GroupRankReranker(tiny_model_path, group_size=2, passes=2, max_new_tokens=8)
    out = r.rerank(QUERY, DOCS)
    assert [s.docid for s in out] == ["0", "1", "2"] and all(not s.details["scored"] for s in out)
    assert out[0].details["groups_unparsed"] == 4  # 2 passes x 2 groups
    for s in out:  # each pass puts every document in one of its 2 groups, unscored here
        assert s.details["pass_scores"] == [None, None] and all(w in (0, 1) for w in s.details["pass_groups"])
    for r_ in range(2):  # the logged windows are the pass's seeded groups
        logged = [sorted([s for s in out if s.details["pass_groups"][r_] == w], key=lambda s: s.details["pass_positions"][r_]) for w in (0, 1)]
        assert groups(["0", "1", "2"], 2, seed=f"0:0:{r_}") == [[s.docid for s in g] for g in logged]  # in the prompt's order
        assert [[s.details["pass_positions"][r_] for s in g] for g in logged] == [[1, 2], [1]]
    assert r.prompts_per_query(3) == 4  # 2 groups x 2 passes: how many queries `rlpost rerank` batches


def test_grouprank_rotate_placement_moves_every_document_through_every_place(dl, tiny_model_path, tmp_path):
    """``placement="rotate"`` (``--placement rotate``): the logged places of each document over group_size
    passes are 1..group_size, the groups are scores.rotated_groups', and an unknown placement is one line."""
    r = GroupRankReranker(tiny_model_path, group_size=2, passes=2, direct=True, placement="rotate")
    docs = [*DOCS, "a fourth document"]
    out = r.rerank(QUERY, docs, qid="q7")
    assert all(sorted(s.details["pass_positions"]) == [1, 2] and len(s.details["pass_scores"]) == 2 for s in out)
    for r_ in range(2):
        logged = [sorted([s for s in out if s.details["pass_groups"][r_] == w], key=lambda s: s.details["pass_positions"][r_]) for w in (0, 1)]
        assert rotated_groups(["0", "1", "2", "3"], 2, r_, seed="0:q7") == [[s.docid for s in g] for g in logged]
    out = tmp_path / "run.trec"
    assert main(["rerank", "--model", tiny_model_path, "--method", "grouprank", "--direct", "--placement", "rotate", "--group-size", "3",
                 "--passes", "3", "--top", "3", "--candidates", str(dl["candidates"]), "--out", str(out)]) == 0
    for q in map(json.loads, out.with_name(out.name + ".details.jsonl").read_text().splitlines()):
        assert all(sorted(d["pass_positions"]) == [1, 2, 3] for d in q["docs"])
    with pytest.raises(ConfigError, match="placement 'zigzag' is unknown"):
        GroupRankReranker("/nowhere", placement="zigzag")


@pytest.mark.parametrize("echo", [0, 2])
def test_grouprank_direct_reads_each_members_expected_score_where_the_answer_writes_it(tiny_model_path, echo):
    """Direct scoring equals the expectation of the digit distribution at each member's score slot of the
    zero-filled answer (its keys repeating each member's first ``echo`` words) under a full forward, and scores
    every document without generating."""
    from rlpost.models.forward import completion_logits
    from rlpost.ranking.prompts import GROUPRANK_SYSTEM, grouprank_direct, grouprank_prompt, render
    from rlpost.ranking.slots import score_slots

    r = GroupRankReranker(tiny_model_path, group_size=3, direct=True, echo_words=echo)
    out = r.rerank(QUERY, DOCS)
    assert all(s.details["scored"] for s in out) and out[0].details["groups_unparsed"] == 0
    (g,) = groups(["0", "1", "2"], 3, seed="0:0:0")
    members = [DOCS[int(d)] for d in g]
    ids, slots = score_slots(grouprank_direct(members, echo), r.tokenizer, expected=3)
    assert len(set(slots)) == 3 and all(ids[s] == r.digits[0] for s in slots)
    prompt = render(r.tokenizer, grouprank_prompt(QUERY, members, echo_words=echo), GROUPRANK_SYSTEM)
    logits, _, _ = completion_logits(r.model, [prompt], [ids], r.tokenizer.pad_token_id)
    p = torch.softmax(logits[0, slots][:, r.digits], dim=-1)
    want = p @ torch.tensor([0.0, 10, 2, 3, 4, 5, 6, 7, 8, 9])
    got = {s.docid: s.score for s in out}
    assert [got[d] for d in g] == pytest.approx((want / 10).tolist(), abs=1e-4)  # merge_passes divides by 10


@pytest.mark.parametrize("layout", ["query-first", "query-each", "query-around"])
def test_grouprank_score_at_block_reads_each_members_score_where_its_block_ends(tiny_model_path, layout):
    """score_at="block": member k's score is the expected digit at the last token of its block in the prompt
    (its text, or with query-each and query-around the query after it) under a plain forward of the prompt alone; an unknown
    place, or block without direct, is one line before the model loads."""
    from rlpost.ranking.prompts import GROUPRANK_SYSTEM, grouprank_block_ends, grouprank_prompt, render

    r = GroupRankReranker(tiny_model_path, group_size=3, direct=True, layout=layout, score_at="block", batch_size=2)
    out = r.rerank_batch([(QUERY, DOCS), (QUERY, DOCS[:2])])  # two queries, left-padded in one batch
    assert all(s.details["scored"] for q in out for s in q)
    for qi, docs in enumerate((DOCS, DOCS[:2])):  # the second prompt is the shorter: padded on the left
        (g,) = groups([str(i) for i in range(len(docs))], 3, seed=f"0:{qi}:0")
        members = [docs[int(d)] for d in g]
        user = grouprank_prompt(QUERY, members, layout)
        ends = grouprank_block_ends(QUERY, members, layout)
        tail = QUERY if layout != "query-first" else None
        assert [user[e - len(tail or m) + 1 : e + 1] for e, m in zip(ends, members)] == [tail or m for m in members]
        prompt, positions = r.block_prompt(QUERY, members)
        assert prompt == render(r.tokenizer, user, GROUPRANK_SYSTEM)
        with torch.no_grad():
            logits = r.model(input_ids=torch.tensor([prompt])).logits[0, positions].float()
        want = torch.softmax(logits[:, r.digits], dim=-1) @ torch.tensor([0.0, 10, 2, 3, 4, 5, 6, 7, 8, 9])
        got = {s.docid: s.score for s in out[qi]}
        assert [got[d] for d in g] == pytest.approx((want / 10).tolist(), abs=1e-4)  # merge_passes divides by 10
        assert all(s.details["pass_scores"] == [pytest.approx(s.score * 10)] and s.details["pass_groups"] == [0] for s in out[qi])
    with pytest.raises(ConfigError, match="score_at 'middle' is unknown"):
        GroupRankReranker("/nowhere", direct=True, score_at="middle")
    with pytest.raises(ConfigError, match="needs direct=True"):
        GroupRankReranker("/nowhere", score_at="block")


def test_mark_positions_finds_each_marked_characters_token_or_says_in_one_line_why_not(tiny_model_path):
    """The char-level tiny tokenizer makes each character a token: a mark at offset m of the message lands on
    token (message start + m); a message the text lacks, or a mark past its end, is a ConfigError."""
    from rlpost.models.loading import load_tokenizer
    from rlpost.ranking.slots import mark_positions

    tok = load_tokenizer(tiny_model_path)
    ids, positions = mark_positions("ab: cdef", tok, "cdef", [0, 3])
    assert ids == tok("ab: cdef", add_special_tokens=False).input_ids and positions == [4, 7]
    with pytest.raises(ConfigError, match="does not contain the message"):
        mark_positions("ab: cdef", tok, "xyz", [0])
    with pytest.raises(ConfigError, match="character 9 of the marked message"):
        mark_positions("ab: cdef", tok, "cdef", [9])


def test_both_rerankers_cut_long_documents_to_max_doc_tokens(tiny_model_path):
    """The char-level tiny tokenizer makes a token a character: a cut keeps the first max_doc_tokens."""
    long = "goldfish " * 40
    for r in (ERankReranker(tiny_model_path, max_doc_tokens=12), GroupRankReranker(tiny_model_path, max_doc_tokens=12)):
        assert r.truncate(long) == long[:12] and r.truncate("short") == "short"
    assert GroupRankReranker(tiny_model_path).truncate(long) == long  # no limit by default in the API


@pytest.fixture
def dl(tmp_path) -> dict[str, Path]:
    """Two queries of three candidates each, as rank_llm JSON, a TREC run + topics + corpus, and qrels."""
    hits = {"q1": ["d1", "d2", "d3"], "q2": ["d4", "d5", "d6"]}
    texts = {f"d{i}": t for i, t in enumerate(["", "Goldfish grow.", "Stocks fell.", "Fish tanks.", "Rain.", "Snow.", "Hail."])}
    queries = {"q1": "do goldfish grow", "q2": "what is weather"}
    files = {"candidates": tmp_path / "c.json", "run": tmp_path / "bm25.trec", "topics": tmp_path / "topics.tsv",
             "corpus": tmp_path / "corpus.jsonl", "qrels": tmp_path / "qrels.txt"}
    files["candidates"].write_text(json.dumps([
        {"query": queries[q], "hits": [{"qid": q, "docid": d, "score": 3.0 - i, "content": texts[d]} for i, d in enumerate(ds)]}
        for q, ds in hits.items()]))
    files["run"].write_text("".join(f"{q} Q0 {d} {i + 1} {3.0 - i} bm25\n" for q, ds in hits.items() for i, d in enumerate(ds)))
    files["topics"].write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()))
    files["corpus"].write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in texts.items() if t))
    files["qrels"].write_text("q1 0 d1 2\nq1 0 d3 0\nq2 0 d6 1\n")
    return files


@pytest.mark.parametrize("source", ["candidates", "run"])
def test_rlpost_rerank_writes_a_run_trec_eval_reads(dl, tiny_model_path, tmp_path, capsys, source):
    import pytrec_eval

    inputs = ["--candidates", str(dl["candidates"])] if source == "candidates" else [
        "--run", str(dl["run"]), "--topics", str(dl["topics"]), "--corpus", str(dl["corpus"])]
    out = tmp_path / "out" / "erank.trec"
    assert main(["rerank", "--model", tiny_model_path, *inputs, "--qrels", str(dl["qrels"]), "--top", "2", "--out", str(out)]) == 0
    with out.open() as f:
        run = pytrec_eval.parse_run(f)
    assert {q: sorted(d) for q, d in run.items()} == {"q1": ["d1", "d2", "d3"], "q2": ["d4", "d5", "d6"]}
    assert min(run["q1"], key=run["q1"].get) == "d3"  # beyond --top: kept below the reranked ones
    metrics = json.loads(out.with_name(out.name + ".json").read_text())
    # first stage: q1 ranks its relevance-2 document first (1.0), q2 its relevant one third (1 / log2 4 = 0.5)
    assert metrics["first stage"]["ndcg_cut_10"] == pytest.approx((1.0 + 1 / math.log2(4)) / 2) and metrics["top"] == 2
    assert "ndcg_cut_10" in capsys.readouterr().out
    (q1, _) = [json.loads(line) for line in out.with_name(out.name + ".details.jsonl").read_text().splitlines()]
    assert [d["rank"] for d in q1["docs"]] == [1, 2] and {d["docid"]: d["first_stage_rank"] for d in q1["docs"]} == {"d1": 1, "d2": 2}
    assert all({"argmax", "p"} <= set(d) for d in q1["docs"])  # ERank's details: its most likely score and that score's probability


@pytest.mark.parametrize("change, expected", [
    (lambda f: f["corpus"].write_text(f["corpus"].read_text().replace('"Snow."', '""')), "line 5: document d5 has no text"),
    (lambda f: f["corpus"].write_text("\n".join(f["corpus"].read_text().splitlines()[1:])), "query q1 names 1 documents missing from the corpus (e.g. d1)"),
    (lambda f: f["qrels"].write_text("q9 0 d1 1\n"), "judges none of the 2 queries to rerank"),
    (lambda f: f["topics"].write_text("q1\tdo goldfish grow\n"), "query q2 is not in the topics file"),
])
def test_bad_rerank_input_is_one_line_before_the_model_loads(dl, capsys, change, expected):
    change(dl)
    argv = ["rerank", "--model", "/nonexistent", "--run", str(dl["run"]), "--topics", str(dl["topics"]),
            "--corpus", str(dl["corpus"]), "--qrels", str(dl["qrels"])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlpost: error: ") and expected in err and len(err.splitlines()) == 1, err


def test_an_empty_candidate_list_and_missing_inputs_are_one_line(dl, capsys, tmp_path):
    dl["candidates"].write_text(json.dumps([{"query": "q", "hits": []}]))
    empty_list, no_topics = tmp_path / "none.json", tmp_path / "none.tsv"
    empty_list.write_text("[]")
    no_topics.write_text("\n")
    for argv, expected in (
        (["--candidates", str(dl["candidates"])], "has an empty candidate list"),
        (["--candidates", str(empty_list)], "no queries (expected a JSON list of {query, hits} objects, got an empty list)"),
        (["--topics", str(no_topics), "--corpus", str(dl["corpus"])], "no topics (expected 'qid<TAB>query' lines)"),
        ([], "rerank needs --candidates FILE.json, or --topics"),
        (["--run", str(dl["run"])], "rerank needs --candidates FILE.json, or --topics"),
        (["--candidates", str(dl["candidates"]), "--corpus", str(dl["corpus"])], "not both"),
        (["--topics", str(dl["topics"]), "--corpus", str(dl["corpus"]), "--depth", "0"], "--depth must be at least 1"),
    ):
        assert main(["rerank", "--model", "/nonexistent", *argv]) == 2
        assert expected in capsys.readouterr().err


def test_candidates_without_a_qid_or_twice_the_same_query_are_one_line(dl, capsys):
    for hits, expected in (
        ([{"query": "q", "hits": [{"docid": "d1", "content": "x", "score": 1}]}], "every hit needs 'qid'"),
        ([{"query": "q", "hits": [{"qid": 1, "docid": "d1", "content": "x"}]}] * 2, "item 1: query 1 appears twice"),
    ):
        dl["candidates"].write_text(json.dumps(hits))
        assert main(["rerank", "--model", "/nonexistent", "--candidates", str(dl["candidates"])]) == 2
        assert expected in capsys.readouterr().err


def test_out_may_not_be_a_folder_and_metrics_never_overwrite_the_run(dl, tiny_model_path, tmp_path, capsys):
    assert main(["rerank", "--model", tiny_model_path, "--candidates", str(dl["candidates"]), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    out = tmp_path / "run.json"
    assert main(["rerank", "--model", tiny_model_path, "--candidates", str(dl["candidates"]), "--qrels", str(dl["qrels"]), "--out", str(out)]) == 0
    assert out.read_text().startswith("q1 Q0 ") and json.loads((tmp_path / "run.json.json").read_text())["top"] == 20


def test_several_hybrid_weights_are_each_scored_and_the_first_is_written(dl, tiny_model_path, tmp_path, capsys):
    from rlpost.ranking.scores import hybrid

    out = tmp_path / "run.trec"
    argv = ["rerank", "--model", tiny_model_path, "--candidates", str(dl["candidates"]), "--qrels", str(dl["qrels"]), "--out", str(out)]
    assert main([*argv, "--hybrid", "0.5", "0.2", "0.5"]) == 0
    metrics = json.loads(out.with_name(out.name + ".json").read_text())
    assert [k for k in metrics if k.startswith("hybrid")] == ["hybrid 0.5", "hybrid 0.2"]
    assert "hybrid 0.5)" in capsys.readouterr().out
    # the run file is the first weight's fusion of the first stage's scores and the reranker's
    rerank_only = tmp_path / "alone.trec"
    assert main(["rerank", "--model", tiny_model_path, "--candidates", str(dl["candidates"]), "--out", str(rerank_only)]) == 0
    first = {h["docid"]: h["score"] for item in json.loads(dl["candidates"].read_text()) for h in item["hits"]}
    written = [line.split() for line in out.read_text().splitlines()]
    alone = {cols[2]: float(cols[4]) for cols in (line.split() for line in rerank_only.read_text().splitlines())}
    for qid in ("q1", "q2"):
        docs = [cols[2] for cols in written if cols[0] == qid]
        fused = hybrid([first[d] for d in docs], [alone[d] for d in docs], 0.5)
        assert list(fused) == sorted(fused, reverse=True), qid
    # a first weight of 0 writes the reranker alone, the later weights are still scored
    argv[-1] = str(tmp_path / "first-off.trec")
    assert main([*argv, "--hybrid", "0", "0.5"]) == 0
    assert (tmp_path / "first-off.trec").read_text() == rerank_only.read_text()
    assert "hybrid 0.5" in json.loads((tmp_path / "first-off.trec.json").read_text())
    assert main([*argv, "--hybrid", "0.2", "1"]) == 2
    assert "--hybrid takes the first stage's weights, each from 0 (off) to below 1, got 1" in capsys.readouterr().err


def test_bm25_first_stage_over_a_corpus(dl, tiny_model_path, tmp_path):
    """Without --run, BM25 over --corpus gives each topic its candidates (with --top 1 the reranker keeps BM25's
    order): "do goldfish grow" finds "Goldfish grow." first; the run is written and scored. In a subprocess:
    bm25s imports numba, whose llvmlite objects break vLLM's kernel dispatcher in the same process."""
    out = tmp_path / "bm25-erank.trec"
    argv = ["rerank", "--model", tiny_model_path, "--topics", str(dl["topics"]), "--corpus", str(dl["corpus"]),
            "--qrels", str(dl["qrels"]), "--depth", "3", "--top", "1", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "rlpost.cli", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split() for line in out.read_text().splitlines()]
    assert {cols[0] for cols in lines} == {"q1", "q2"} and next(c[2] for c in lines if c[0] == "q1") == "d1"
    assert "BM25 over 6 documents: done in" in proc.stdout


def test_a_negative_echo_words_is_one_line_before_the_model_loads(dl, tiny_model_path, tmp_path, capsys):
    from rlpost.data.tasks import load_task

    argv = ["rerank", "--model", tiny_model_path, "--method", "grouprank", "--echo-words", "-1",
            "--candidates", str(dl["candidates"]), "--out", str(tmp_path / "run.trec")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "echo_words at least 0, got 20, 1 and -1" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="echo_words >= 0"):
        load_task("grouprank", "train", train={"candidates": str(dl["candidates"]), "qrels": str(dl["qrels"])}, echo_words=-1)


def test_rerank_takes_the_prompt_format_the_model_was_trained_with(dl, tiny_model_path, tmp_path, capsys):
    """A model folder's rlpost_task.json (written by SFT and by a run's final save) sets --layout, --echo-words
    and --score-at when they are not given (score_at block: --direct); one given that differs gets a note;
    a record of the other method is ignored; without a record the defaults hold."""
    import shutil

    from rlpost.cli import _parse, prompt_format_as_trained

    model = tmp_path / "m"
    shutil.copytree(tiny_model_path, model)
    (model / "rlpost_task.json").write_text(json.dumps({"task": "grouprank", "task_kwargs": {
        "train": "dl20", "layout": "query-each", "echo_words": 0, "score_at": "block"}}))
    base = ["rerank", "--model", str(model), "--candidates", str(dl["candidates"]), "--out", str(tmp_path / "run.trec")]
    args = _parse([*base, "--method", "grouprank"])
    prompt_format_as_trained(args, str(model))
    assert (args.layout, args.echo_words, args.score_at, args.direct) == ("query-each", 0, "block", True)
    args = _parse([*base, "--method", "grouprank", "--layout", "query-last"])
    prompt_format_as_trained(args, str(model))
    assert args.layout == "query-last" and "note: --layout query-last differs from the query-each this model was trained with" in capsys.readouterr().out
    for argv, folder in (([*base, "--method", "erank"], model), ([*base, "--method", "grouprank"], tiny_model_path)):
        args = _parse(argv)
        prompt_format_as_trained(args, str(folder))
        assert (args.layout, args.echo_words, args.score_at, args.direct) == ("query-first", 0, "answer", False)
    assert main([*base, "--method", "grouprank", "--group-size", "3", "--top", "3"]) == 0  # reads at the block ends
    assert (tmp_path / "run.trec").read_text().count("rlpost-grouprank") == 6  # 2 queries x 3 candidates
    logged = [json.loads(line) for line in (tmp_path / "run.trec.details.jsonl").read_text().splitlines()]
    assert [q["qid"] for q in logged] == ["q1", "q2"] and [d["rank"] for d in logged[0]["docs"]] == [1, 2, 3]
    assert sorted(d["first_stage_rank"] for d in logged[1]["docs"]) == [1, 2, 3]
    assert all(d["pass_scores"] == [pytest.approx(d["score"] * 10)] for q in logged for d in q["docs"])
