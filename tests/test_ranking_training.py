"""Training rerankers: the ranking tasks, the cohort prompt stream, ERank's cohort reward as a recipe component,
SFT's micro-batches and cutoff, and both tiny recipes end to end (SFT, GRPO, then `rlpost rerank` on the result)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlpost.cli import main
from rlpost.config import ConfigError, load_config
from rlpost.data import DataError, PromptDataset
from rlpost.data.tasks import load_task
from rlpost.ranking.parsing import parse_grouprank
from rlpost.ranking.prompts import grouprank_json
from rlpost.ranking.rewards import erank_rewards
from rlpost.ranking.scores import groups
from rewards.ranking import erank

QUERIES = {"q1": "do goldfish grow", "q2": "what is weather", "q3": "how tall are giraffes", "q4": "why is the sky blue"}


@pytest.fixture
def pools(tmp_path) -> dict[str, str]:
    """Four queries of three candidates each (rank_llm JSON) and graded qrels; q4 is unjudged."""
    hits = [{"query": text, "hits": [{"qid": q, "docid": f"{q}d{i}", "score": 3.0 - i, "content": f"{text} passage {i}"} for i in range(3)]}
            for q, text in QUERIES.items()]
    (tmp_path / "c.json").write_text(json.dumps(hits))
    (tmp_path / "qrels.txt").write_text("q1 0 q1d0 3\nq1 0 q1d2 1\nq2 0 q2d1 2\nq3 0 q3d2 0\n")
    return {"candidates": str(tmp_path / "c.json"), "qrels": str(tmp_path / "qrels.txt")}


# ------------------------------------------------------------------ tasks

def test_erank_task_keeps_judged_queries_and_maps_grades_to_scores(pools):
    records = load_task("erank", "train", train=pools, top=2)
    assert [(r["qid"], r["docid"], r["grade"], r["answer"], r["relevant"]) for r in records] == [
        ("q1", "q1d0", 3, "10", True), ("q1", "q1d1", 0, "0", False),  # unjudged: grade 0, as trec_eval counts it
        ("q2", "q2d0", 0, "0", False), ("q2", "q2d1", 2, "7", True),
        ("q3", "q3d0", 0, "0", False), ("q3", "q3d1", 0, "0", False),
    ]
    assert records[0]["ref_score"] == 10.0 and "do goldfish grow" in records[0]["question"]


def test_grouprank_task_groups_by_interval_and_aligns_gold_with_the_shown_order(pools):
    records = load_task("grouprank", "test", test=pools, top=3, group_size=3, groups_per_query=2, seed=1)
    assert len(records) == 6 and [r["qid"] for r in records] == ["q1", "q1", "q2", "q2", "q3", "q3"]
    grades = {"q1d0": 10, "q1d2": 3, "q2d1": 7}
    for r in records:
        assert sorted(r["docids"]) == sorted(f"{r['qid']}d{i}" for i in range(3))
        assert r["gold"] == [grades.get(d, 0) for d in r["docids"]]
        assert parse_grouprank(f"<reason></reason><answer>{r['answer']}</answer>", 3) == (True, [int(g) for g in r["gold"]])
        assert r["system"].startswith("You rank documents")
    assert load_task("grouprank", "test", test=pools, top=3, group_size=3, seed=1) == records[::1][:len(records)]  # seeded
    echoed = load_task("grouprank", "test", test=pools, top=3, group_size=3, groups_per_query=2, seed=1, echo_words=6)
    for r, e in zip(records, echoed):  # the same groups; each key repeats its document's first 6 words (numbers too)
        q = QUERIES[r["qid"]]
        assert e["answer"] == grouprank_json([int(g) for g in r["gold"]], [f"{q} passage {d[-1]}" for d in r["docids"]], 6)
        assert f'"[1] {" ".join(f"{q} passage".split()[:6])}' in e["answer"] and "first 6 words" in e["question"]
        assert parse_grouprank(f"<reason></reason><answer>{e['answer']}</answer>", 3) == (True, [int(g) for g in r["gold"]])
    blocks = load_task("grouprank", "test", test=pools, top=3, group_size=3, groups_per_query=2, seed=1, score_at="block")
    for r, b in zip(records, blocks):  # the same records; the ranking term reads each block's end instead of an answer
        assert {k: v for k, v in b.items() if k != "rank_marks"} == {k: v for k, v in r.items() if k != "rank_answer"}
        assert [b["question"][m] for m in b["rank_marks"]] == [d[-1] for d in r["docids"]]
    with pytest.raises(DataError, match="score_at 'middle' is unknown"):
        load_task("grouprank", "test", test=pools, top=3, score_at="middle")
    scoped = load_task("grouprank", "test", test=pools, top=3, group_size=3, groups_per_query=2, seed=1, rank_scope="query")
    assert [r["rank_group"] for r in scoped] == [r["qid"] for r in records]  # a query's groups rank together
    assert len({r["rank_group"] for r in records}) == 6
    with pytest.raises(DataError, match="rank_scope 'corpus' is unknown"):
        load_task("grouprank", "test", test=pools, top=3, rank_scope="corpus")


def test_grouprank_shuffle_grouping_cuts_the_pool_as_the_reranker_does(pools):
    """``grouping: shuffle`` takes the reranker's groups (a seeded shuffle cut into consecutive groups), and a
    second shuffled pass when groups_per_query needs more groups than one pass gives."""
    records = load_task("grouprank", "test", test=pools, top=3, group_size=2, groups_per_query=3, seed=4, grouping="shuffle")
    for qid in ("q1", "q2", "q3"):
        pool = [f"{qid}d{i}" for i in range(3)]
        expected = groups(pool, 2, seed=f"4:{qid}:0") + groups(pool, 2, seed=f"4:{qid}:1")[:1]
        assert [sorted(r["docids"]) for r in records if r["qid"] == qid] == [sorted(g) for g in expected]
    assert [len(r["docids"]) for r in records[:3]] == [2, 1, 2]  # a pass of 3 is a pair and a single
    with pytest.raises(DataError, match="grouping 'stride' is unknown"):
        load_task("grouprank", "test", test=pools, top=3, grouping="stride")


def test_a_teacher_run_mixes_into_the_targets(pools, tmp_path):
    """q1's teacher scores 0.2, 0.6, 1.0 scale to 0, 5, 10; at weight 0.5 against the grade scores 10, 0, 3:
    targets 5, 2.5, 6.5, written 5, 2, 6 (round half to even); 0.15 over 0.05..1.05 scales to 1 and, mixed
    with 0 at weight 0.5, 0.5 is written 0, never 1. The ranking term orders by the unrounded targets."""
    (tmp_path / "t.trec").write_text("".join(f"{q} Q0 {q}d{i} {i + 1} {v} t\n" for q, vs in
                                             {"q1": [0.2, 0.6, 1.0], "q2": [0.05, 1.05, 0.15], "q3": [1, 1, 1]}.items()
                                             for i, v in enumerate(vs)))
    records = load_task("erank", "train", train=pools, top=3, teacher=str(tmp_path / "t.trec"), teacher_weight=0.5)
    assert [r["answer"] for r in records[:3]] == ["5", "2", "6"]
    assert [r["rank_gains"][0] for r in records[:3]] == pytest.approx([5.0, 2.5, 6.5])
    assert [r["answer"] for r in records[3:]] == ["0", "8", "0", "0", "0", "0"]  # q2: 0, 8.5, 0.5; q3: a tie scales to 0
    groups = load_task("grouprank", "train", train=pools, top=3, group_size=3, groups_per_query=1,
                       teacher=str(tmp_path / "t.trec"), teacher_weight=0.5)
    q1 = groups[0]
    assert [q1["gold"][q1["docids"].index(f"q1d{i}")] for i in range(3)] == [5.0, 2.0, 6.0]
    assert sorted(q1["rank_gains"]) == pytest.approx([2.5, 5.0, 6.5])
    plain = load_task("erank", "train", train=pools, top=3)
    assert load_task("erank", "train", train=pools, top=3, teacher=str(tmp_path / "t.trec"), teacher_weight=0.0) == plain


def test_a_teacher_run_that_misses_a_candidate_is_one_line(pools, tmp_path):
    (tmp_path / "t.trec").write_text("q1 Q0 q1d0 1 0.5 t\n")
    with pytest.raises(DataError, match="the teacher run has no score for query q1, document q1d1"):
        load_task("erank", "train", train=pools, top=3, teacher=str(tmp_path / "t.trec"))
    with pytest.raises(DataError, match=r"teacher_weight must lie in \[0, 1\], got 2"):
        load_task("erank", "train", train=pools, top=3, teacher=str(tmp_path / "t.trec"), teacher_weight=2)


def test_a_reference_run_gives_erank_its_t_i(pools, tmp_path):
    """``reference`` (the SFT model's scores, as `rlpost rerank` writes them) sets each record's ref_score; the
    targets stay the grades'. Without it t_i is the written target; a run that misses a candidate or scores off
    ERank's 0..10 scale is one line."""
    (tmp_path / "r.trec").write_text("".join(f"{q} Q0 {q}d{i} {i + 1} {v} sft\n" for q, vs in
                                             {"q1": [6.5, 2.25, 0.0], "q2": [1.0, 9.75, 3.0], "q3": [4, 4, 10]}.items()
                                             for i, v in enumerate(vs)))
    plain = load_task("erank", "train", train=pools, top=3)
    records = load_task("erank", "train", train=pools, top=3, reference=str(tmp_path / "r.trec"))
    assert [r["ref_score"] for r in records] == [6.5, 2.25, 0.0, 1.0, 9.75, 3.0, 4.0, 4.0, 10.0]
    assert [r["ref_score"] for r in plain] == [10.0, 0.0, 3.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]
    assert [{k: v for k, v in r.items() if k != "ref_score"} for r in records] == [
        {k: v for k, v in r.items() if k != "ref_score"} for r in plain]
    # the run scores the training split (the SFT model on RL's queries): the test split keeps the targets
    assert load_task("erank", "test", test=pools, top=3, reference=str(tmp_path / "missing.trec")) == load_task(
        "erank", "test", test=pools, top=3)
    (tmp_path / "short.trec").write_text("q1 Q0 q1d0 1 5 sft\n")
    with pytest.raises(DataError, match="the reference run has no score for query q1, document q1d1"):
        load_task("erank", "train", train=pools, top=3, reference=str(tmp_path / "short.trec"))
    (tmp_path / "off.trec").write_text("".join(f"q{q} Q0 q{q}d{i} 1 {-1 if (q, i) == (2, 1) else 5} sft\n"
                                               for q in (1, 2, 3) for i in range(3)))
    with pytest.raises(DataError, match="the reference run scores query q2, document q2d1 -1; expected ERank's scores on 0..10"):
        load_task("erank", "train", train=pools, top=3, reference=str(tmp_path / "off.trec"))


@pytest.mark.parametrize("kwargs, message", [
    ({"train": "dl18"}, "ranking dataset 'dl18' is unknown (known: dl19, dl20"),
    ({"train": {"candidates": "c.json"}}, "missing qrels"),
    ({"top": 0}, "top must be >= 1"),
])
def test_ranking_task_bad_input_is_one_line(pools, kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_task("erank", "train", **{"train": pools, **kwargs})


def test_qrels_that_judge_no_query_is_one_line(pools, tmp_path):
    (tmp_path / "other.txt").write_text("q9 0 x 1\n")
    with pytest.raises(DataError, match="judges none of the 4 queries"):
        load_task("erank", "train", train={**pools, "qrels": str(tmp_path / "other.txt")})


# ------------------------------------------------------------------ the cohort stream

def test_cohorts_stay_whole_in_every_batch_and_resume_exactly():
    records = [{"qid": q, "i": i} for q, n in (("a", 3), ("b", 2), ("c", 3), ("d", 1)) for i in range(n)]
    data = PromptDataset(records, seed=0, cohort="qid")
    batches = [[records[i]["qid"] for i, _ in data.next_batch(5)] for _ in range(6)]
    for batch in batches:
        assert len(batch) <= 5 or len(set(batch)) == 1
        for q in set(batch):
            assert batch.count(q) == sum(r["qid"] == q for r in records)  # whole cohorts only
    replay = PromptDataset(records, seed=0, cohort="qid")
    replay.next_batch(5), replay.next_batch(5)
    again = PromptDataset(records, seed=0, cohort="qid")
    again.load_state_dict(replay.state_dict())
    assert [[records[i]["qid"] for i, _ in again.next_batch(5)] for _ in range(4)] == batches[2:]
    with pytest.raises(DataError, match="cohort=None but this dataset has cohort='qid'"):
        again.load_state_dict({**PromptDataset(records, seed=0).state_dict()})
    with pytest.raises(DataError, match="data.cohort 'query': record 0 has no such column"):
        PromptDataset(records, seed=0, cohort="query")


# ------------------------------------------------------------------ ERank's reward as a component

def test_erank_reward_ranks_each_query_cohort_on_its_own():
    """Spec T-E1's cohort (d1 positive, t = 0, 2, 1) interleaved with a second query's, in mixed order."""
    cohort = [("d1", 9, True, 0), ("d1", 7, True, 0), ("d2", 8, False, 2), ("d2", 2, False, 2), ("d3", 3, False, 1), ("d3", None, False, 1)]
    other = [("e1", 10, False, 5), ("e2", 1, True, 0)]
    rows = [("q1", *cohort[0]), ("q2", *other[0]), ("q1", *cohort[2]), ("q1", *cohort[4]), ("q1", *cohort[1]),
            ("q2", *other[1]), ("q1", *cohort[3]), ("q1", *cohort[5])]
    texts = ["no answer" if s is None else f"<think>x</think><answer>{s}</answer>" for _, _, s, _, _ in rows]
    got = erank([""] * len(rows), texts, [{}] * len(rows), qid=[r[0] for r in rows], docid=[r[1] for r in rows],
                relevant=[r[3] for r in rows], ref_score=[r[4] for r in rows])
    # T-E1: [[1.0, 1/3], [-1.0, 1.0], [0.96, -1.0]]; q2: its negative outranks its positive
    np.testing.assert_allclose(got, [1.0, -1.0, -1.0, 0.96, 1 / 3, 1 / 2, 1.0, -1.0], atol=1e-6)
    assert erank.locality == "cohort"
    np.testing.assert_allclose(erank_rewards([[10], [1]], [False, True], [5, 0]).ravel(), [-1.0, 1 / 2])


@pytest.mark.parametrize("recipe, overrides, expected", [
    ("erank", ["data.cohort=null"], ["reward 'erank' compares a whole cohort", "set data.cohort"]),
    ("erank", ["data.cohort=null", "algo.advantage.name=cohort_grpo", "algo.select=[{name: keep_all}]"],
     ["algo.advantage 'cohort_grpo' compares a whole cohort"]),
    ("erank", ["train.prompts_per_step=2"], ["a cohort has 3 records but train.prompts_per_step is 2"]),
    ("erank", ["train.eval_after=true"], ["verify.verifiers is empty: turn them off (rerankers evaluate with `rlpost rerank`"]),
])
def test_grpo_it_cannot_run_stops_in_one_line_before_any_model_loads(tmp_path, capsys, pools, recipe, overrides, expected):
    args = ["train", f"recipes/{recipe}/tiny.yaml", f"run.output_dir={tmp_path / 'run'}", *overrides,
            f"data.task_kwargs.train={json.dumps(pools)}", f"data.task_kwargs.test={json.dumps(pools)}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(e in err for e in expected)
    assert not (tmp_path / "run" / "sft").exists()


# ------------------------------------------------------------------ SFT

def test_sft_micro_batches_give_the_batch_gradient_and_the_cutoff_is_counted(tmp_path, capsys, pools):
    from rlpost.sft import run_sft, within_cutoff
    from rlpost.types import SFTExample
    from safetensors.torch import load_file

    base = ["recipes/erank/tiny.yaml", f"data.task_kwargs.train={json.dumps(pools)}", "sft.steps=2", "sft.batch_size=4"]
    whole = run_sft(load_config(base[0], base[1:] + [f"run.output_dir={tmp_path / 'a'}"]))
    parts = run_sft(load_config(base[0], base[1:] + [f"run.output_dir={tmp_path / 'b'}", "sft.micro_batch_size=1"]))
    a, b = load_file(whole / "model.safetensors"), load_file(parts / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4

    kept = within_cutoff([SFTExample([1] * 5, [2] * 2), SFTExample([1] * 9, [2] * 2)], max_length=8)
    assert kept == [SFTExample([1] * 5, [2] * 2)] and "1 of 2 examples are longer than sft.max_length=8" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="every SFT example is longer"):
        within_cutoff([SFTExample([1] * 9, [2])], max_length=4)


@pytest.mark.parametrize("recipe, slots_per_example, echo, score_at",
                         [("erank", 1, 0, "answer"), ("grouprank", 3, 0, "answer"), ("grouprank", 3, 8, "answer"), ("grouprank", 3, 0, "block")])
def test_the_tiny_recipes_sft_examples_carry_score_slots_for_the_ranking_term(recipe, slots_per_example, echo, score_at, pools):
    """With echo_words the keys hold the documents' words ("... passage 2"): their numbers are no score slots.
    With score_at: block the slots are each block's last prompt token (<= 0, from the target's start)."""
    from rlpost.data.recipe import encode_prompts, load_split
    from rlpost.learner.learner import rank_pairs
    from rlpost.models.loading import load_tokenizer, resolve_model_path
    from rlpost.ranking.prompts import grouprank_direct
    from rlpost.ranking.slots import digit_ids
    from rlpost.sft import sft_examples

    cfg = load_config(f"recipes/{recipe}/tiny.yaml", [f"data.task_kwargs.train={json.dumps(pools)}",
                                                       *([f"data.task_kwargs.echo_words={echo}"] if echo else []),
                                                       *([f"data.task_kwargs.score_at={score_at}"] if score_at != "answer" else [])])
    assert cfg.sft.rank_weight > 0
    records = load_split(cfg, cfg.data.train_split, sft=True)
    tokenizer = load_tokenizer(str(resolve_model_path(cfg.model)))
    texts, prompt_ids = encode_prompts(cfg, records, tokenizer)
    examples = sft_examples(cfg.sft, records, prompt_ids, tokenizer, texts)
    digits = digit_ids(tokenizer)
    for e, r in zip(examples, records):
        assert len(e.slots) == slots_per_example and e.gains == [float(g) for g in r["rank_gains"]]
        if score_at == "block":  # the char-level tokenizer: each block's last token is its document's last character
            assert all(s <= 0 for s in e.slots) and not e.rank_ids and "rank_answer" not in r
            assert [tokenizer.decode([e.prompt_ids[len(e.prompt_ids) - 1 + s]]) for s in e.slots] == [d[-1] for d in r["docids"]]
        elif recipe == "grouprank":  # read where direct scoring reads them: the answer with every score 0
            assert [e.rank_ids[s] for s in e.slots] == [digits[0]] * slots_per_example
            docs = [f"{QUERIES[r['qid']]} passage {d[-1]}" for d in r["docids"]]
            assert e.rank_ids == tokenizer(grouprank_direct(docs, echo), add_special_tokens=False).input_ids  # the recipe's template is that answer's
        else:
            assert [e.target_ids[s] for s in e.slots] == [digits[int(r["answer"][0])]] and not e.rank_ids
    assert rank_pairs(examples) > 0
    with pytest.raises(ConfigError, match="finds 0 scores"):
        sft_examples(cfg.sft.model_copy(update={"target_template": "no score here"}), records, [[1]] * len(records), tokenizer)


# ------------------------------------------------------------------ the tiny recipes end to end

COHORT_ADVANTAGE = ["algo.advantage.name=cohort_grpo", "algo.select=[{name: keep_all}]"]


@pytest.mark.parametrize("recipe, method, extra", [("erank", "erank", []), ("erank", "erank", COHORT_ADVANTAGE), ("grouprank", "grouprank", [])])
def test_tiny_recipe_trains_and_its_model_reranks(recipe, method, extra, tmp_path, pools):
    run = tmp_path / recipe
    args = ["train", f"recipes/{recipe}/tiny.yaml", f"run.output_dir={run}", "log.tensorboard=false",
            f"data.task_kwargs.train={json.dumps(pools)}", f"data.task_kwargs.test={json.dumps(pools)}", *extra]
    assert main(args) == 0
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if f"reward/{method}" in s]
    assert len(steps) == 2 and all(np.isfinite(s[f"reward/{method}"]) for s in steps)
    if recipe == "erank":  # prompts_per_step 8 holds two whole cohorts of 3: 6 prompts x n=2 per step
        assert all(s["train/completions"] == 12 for s in steps)
    if extra:  # with the cohort as the baseline every row trains, a document whose rollouts tied included
        assert all(s["train/kept_frac"] == 1.0 for s in steps)
    for folder, sft in (("sft", True), ("final", False)):  # the task each model was trained on, for rlpost rerank
        cfg = load_config(f"recipes/{recipe}/tiny.yaml")
        kwargs = {**cfg.data.task_kwargs, **(cfg.sft.task_kwargs if sft else {}), "train": pools, "test": pools}
        assert json.loads((run / folder / "rlpost_task.json").read_text()) == {"task": method, "task_kwargs": kwargs}
    out = tmp_path / f"{recipe}.trec"
    assert main(["rerank", "--model", str(run / "final"), "--method", method, "--candidates", pools["candidates"],
                 "--qrels", pools["qrels"], "--top", "3", "--out", str(out), "--max-new-tokens", "8"]) == 0
    assert len(out.read_text().splitlines()) == 12


def test_rank_eval_reads_ndcg_of_the_current_weights_during_rl(tmp_path, pools):
    """The rank_eval callback reranks a TREC set with the learner's weights every step (and after the last):
    each step's metrics carry the nDCG@10 `rlpost rerank` wrote, its run file stays, its weights do not."""
    run = tmp_path / "run"
    spec = {"name": "rank_eval", "kwargs": {"method": "erank", "candidates": pools["candidates"], "qrels": pools["qrels"],
                                            "every": 1, "options": ["--top", "3"]}}
    args = ["train", "recipes/erank/tiny.yaml", f"run.output_dir={run}", "log.tensorboard=false", "train.steps=3",
            f"data.task_kwargs.train={json.dumps(pools)}", f"callbacks=[{json.dumps(spec)}]"]
    assert main(args) == 0
    steps = [s for s in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "reward/erank" in s]
    for label, row in (("step1", steps[0]), ("step2", steps[1])):
        written = json.loads((run / "rank_eval" / label / "c.trec.json").read_text())
        assert row["rank_eval/ndcg@10"] == written["erank top 3"]["ndcg_cut_10"] and 0 < row["rank_eval/ndcg@10"] <= 1
        assert not (run / "rank_eval" / label / "model").exists()
    assert "rank_eval/ndcg@10" not in steps[2]  # the last step's weights are read once, as "after"
    assert (run / "rank_eval" / "after" / "c.trec").is_file() and not (run / "rank_eval" / "step3").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "monot5"}, "method 'monot5' is unknown (expected erank or grouprank)"),
    ({"method": "erank", "candidates": "dl18.json"}, "candidates 'dl18.json' is a file: give its qrels too"),
    ({"method": "erank", "options": ["--out", "x.trec"]}, "options may not set --out"),
    ({"method": "erank", "options": ["--model=x"]}, "options may not set --model"),
    ({"method": "erank", "options": ["--tpo", "3"]}, "are not `rlpost rerank` options"),
])
def test_rank_eval_refuses_bad_kwargs_in_one_line_before_any_model_loads(kwargs, message, capsys, tmp_path):
    spec = {"name": "rank_eval", "kwargs": kwargs}
    assert main(["train", "recipes/erank/tiny.yaml", f"run.output_dir={tmp_path}", f"callbacks=[{json.dumps(spec)}]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "callbacks[0] 'rank_eval'" in err[0]
