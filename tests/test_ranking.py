"""Reranking's pure parts on the spec's hand-computed numbers (shared/specs/rerankers_erank_grouprank.md,
2.8 and 3.8): output parsing, ERank's cohort rewards, GroupRank's reward, inference scores, TREC files and
nDCG against a hand-computed ranking and against BM25 on TREC DL19 (0.5058)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rlpost.algos.advantages import grpo
from rlpost.data.errors import DataError
from rlpost.ranking.parsing import parse_erank, parse_grouprank, parse_grouprank_lenient
from rlpost.ranking.rewards import (
    distribution, erank_rewards, fused_label, gold_scores, group_reward, grouprank_reward, js_bits, ndcg, recall_at,
)
from rlpost.ranking.scores import erank_score, groups, hybrid, merge_passes, rotated_groups, strictly_decreasing, zscores
from rlpost.ranking.trec import evaluate, read_candidates, read_qrels, read_run, read_topics, write_run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval"


def answer(scores: list[int]) -> str:
    body = ", ".join(f'"[{i}]": {s}' for i, s in enumerate(scores, 1))
    return f"<reason>\nd1 answers it\n</reason>\n<answer>\n```json\n{{{body}}}\n```\n</answer>"


# ------------------------------------------------------------------ ERank (2.8)

def test_te1_cohort_rewards_and_their_advantages():
    rewards = erank_rewards([[9, 7], [8, 2], [3, None]], positive=[True, False, False], reference=[0, 2, 1])
    np.testing.assert_allclose(rewards, [[1.0, 1 / 3], [-1.0, 1.0], [0.96, -1.0]], atol=1e-4)
    adv = grpo(torch.tensor(rewards.ravel(), dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2]))
    np.testing.assert_allclose(adv.numpy(), [0.7071, -0.7071, -0.7071, 0.7071, 0.7071, -0.7071], atol=1e-4)


def test_te2_ties_share_the_smallest_rank():
    rewards = erank_rewards([[10, 10], [10, 0]], positive=[True, False], reference=[0, 0])
    np.testing.assert_allclose(rewards, [[1.0, 1.0], [-1.0, 1.0]])
    adv = grpo(torch.tensor(rewards.ravel(), dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    np.testing.assert_allclose(adv.numpy(), [0, 0, -0.7071, 0.7071], atol=1e-4)


def test_share_rule_keeps_a_gradient_on_negatives_any_positive_flattens():
    # a positive rollout scored 0 puts every negative rollout "above a positive": any_positive gives both of the
    # negative's rollouts -1 (no advantage, nothing pushes its score down); share grades them by how many they outrank
    flat = erank_rewards([[10, 0], [10, 5]], [True, False], [10, 0])
    graded = erank_rewards([[10, 0], [10, 5]], [True, False], [10, 0], neg_above_rule="share")
    np.testing.assert_allclose(flat[1], [-1.0, -1.0])
    np.testing.assert_allclose(graded[1], [-1.0, -0.5])
    adv = grpo(torch.tensor(graded.ravel(), dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    assert adv[3] > 0 > adv[2]  # the lower score of the negative is the better one


def test_te3_ndcg_reward():
    rewards = erank_rewards([[9, 7], [8, 2], [3, None]], [True, False, False], [0, 2, 1], kind="ndcg")
    np.testing.assert_allclose(rewards, [[0.6131, 0.3066], [-1.0, 1.0], [0.96, -1.0]], atol=1e-4)


def test_erank_variants_and_edge_cases():
    # r_SE: every formatted rollout against its reference (the teacher's score)
    np.testing.assert_allclose(erank_rewards([[9, None]], [True], [7], kind="se"), [[0.96, -1.0]])
    # all_positives: a negative between the best and worst positive rollout gets 0, above all of them the penalty
    rewards = erank_rewards([[9, 5], [10, 7, ], [3, 1]], [True, False, False], [0, 6, 1], neg_above_rule="all_positives")
    np.testing.assert_allclose(rewards, [[1 / 2, 1 / 4], [-1.0, 0.0], [0.96, 1.0]])
    # share: the penalty times the share of positive rollouts (ranks 2 and 4) a negative ranks at or above
    rewards = erank_rewards([[9, 5], [10, 7], [3, 1]], [True, False, False], [0, 6, 1], neg_above_rule="share")
    np.testing.assert_allclose(rewards, [[1 / 2, 1 / 4], [-1.0, -0.5], [0.96, 1.0]])
    # no formatted positive rollout: every negative gets the smooth term
    np.testing.assert_allclose(erank_rewards([[None], [8]], [True, False], [0, 6]), [[-1.0], [0.96]])
    with pytest.raises(ValueError, match="kind must be one of rr, ndcg, se"):
        erank_rewards([[1]], [True], [0], kind="mrr")
    with pytest.raises(ValueError, match="neg_above_rule must be one of any_positive, all_positives, share"):
        erank_rewards([[1]], [True], [0], neg_above_rule="half")


def test_te4_expected_score():
    assert erank_score(7, [math.log(0.8)]) == pytest.approx(5.6)
    assert erank_score(10, [math.log(0.9), math.log(0.95)]) == pytest.approx(8.55)
    assert erank_score(9, [math.log(0.99)]) == pytest.approx(8.91)  # a confident 9 outranks a less sure 10


def test_te5_bm25_hybrid():
    np.testing.assert_allclose(zscores([12, 10, 8]), [1.2247, 0, -1.2247], atol=1e-4)
    np.testing.assert_allclose(zscores([5.6, 8.55, 0.0]), [0.2491, 1.0810, -1.3301], atol=1e-4)
    final = hybrid([12, 10, 8], [5.6, 8.55, 0.0], weight=0.2)
    np.testing.assert_allclose(final, [0.4442, 0.8648, -1.3091], atol=1e-4)
    assert list(np.argsort(-final)) == [1, 0, 2]
    assert list(zscores([3, 3, 3])) == [0, 0, 0]


@pytest.mark.parametrize("text, score", [
    ("<think>x</think><answer>7</answer>", 7), ("<answer> 10 </answer>", 10), ("  <think>a\nb</think>\n<answer>0</answer>\n", 0),
    ("<answer>7.5</answer>", None), ("<answer>11</answer>", None), ("<answer>1</answer><answer>2</answer>", None),
    ("<think>x</think><answer>7", None), ("<answer>7</answer><think>x</think>", None), ("<answer>-3</answer>", None),
    ("<answer>seven</answer>", None), ("", None),
])
def test_te6_erank_parser(text, score):
    assert parse_erank(text) == score


# ------------------------------------------------------------------ GroupRank (3.8)

GOLD = [10, 6, 2, 0]


def test_tg1_reward_of_a_good_answer():
    assert ndcg([8, 9, 1, 0], GOLD) == pytest.approx(13.3093 / 14.7856, abs=1e-4) == pytest.approx(0.9002, abs=1e-4)
    assert js_bits(distribution([8, 9, 1, 0]), distribution(GOLD)) == pytest.approx(0.02337, abs=1e-5)
    assert grouprank_reward(answer([8, 9, 1, 0]), GOLD) == pytest.approx(1.1978, abs=1e-4)


def test_tg2_constant_scores_earn_less():
    assert ndcg([5, 5, 5, 5], GOLD) == pytest.approx(0.5795, abs=1e-4)  # ties ordered pessimistically
    assert js_bits(distribution([5] * 4), distribution(GOLD)) == pytest.approx(0.1919, abs=1e-4)
    assert grouprank_reward(answer([5, 5, 5, 5]), GOLD) == pytest.approx(0.8603, abs=1e-4)


def test_tg3_perfect_answer():
    assert grouprank_reward(answer(GOLD), GOLD) == pytest.approx(1.3)


def test_tg4_format_gate():
    assert grouprank_reward(answer([1, 2, 3]), GOLD) == -0.1  # "[4]" missing
    assert grouprank_reward(answer(GOLD).replace("<reason>\nd1 answers it\n</reason>\n", ""), GOLD) == -0.5
    assert grouprank_reward("Sure! " + answer(GOLD), GOLD) == -0.5
    for bad in ([1, 2, 3, 11], [1, 2, 3, 2.5]):
        assert parse_grouprank(answer(bad), 4) == (True, None)
    assert parse_grouprank(answer(GOLD).replace('"[4]": 0', '"[3]": 0'), 4) == (True, None)  # a duplicate key
    assert parse_grouprank(answer(GOLD).replace("```json", "").replace("```", ""), 4) == (True, GOLD)  # no fence: last {...}


def test_tg5_recall_at_10_with_12_documents():
    gains = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5, 0]
    predicted = [12, 11, 0, 10, 9, 8, 7, 6, 5, 4, 3, 2]  # d3 falls out of the top 10
    assert recall_at(predicted, [True, True, True] + [False] * 9, gains) == pytest.approx(2 / 3)
    assert recall_at(predicted, [False] * 12, gains) == 1.0
    assert group_reward(predicted, gains, [True, True, True] + [False] * 9) < group_reward(predicted, gains)


def test_tg6_label_fusion_and_gold_scores():
    assert [round(fused_label(*r), 4) for r in [(1, 4), (16, 16), (3, 12), (1, 2)]] == [-0.6931, -2.7726, -1.7918, -0.3466]
    np.testing.assert_allclose(gold_scores([-0.3466, -1.3863, -3.8177]), [10.0, 7.0, 0.0], atol=0.01)
    assert gold_scores([-1.0, -1.0]) is None


def test_tg7_groups_and_test_time_scaling_merge():
    assert groups("abcde", 2) == [["a", "b"], ["c", "d"], ["e"]]
    merged = merge_passes([{"a": 8, "b": 4, "c": 6, "d": 2, "e": 10}, {"e": 9, "c": 7, "a": 7, "d": 3, "b": 5}])
    assert merged == pytest.approx({"a": 0.75, "b": 0.45, "c": 0.65, "d": 0.25, "e": 0.95})
    assert sorted(merged, key=lambda d: -merged[d]) == ["e", "a", "c", "b", "d"]
    shuffled = groups([str(i) for i in range(10)], 4, seed="0:q1:1")
    assert shuffled == groups([str(i) for i in range(10)], 4, seed="0:q1:1") != groups([str(i) for i in range(10)], 4, seed="0:q1:2")
    assert sorted(sum(shuffled, [])) == [str(i) for i in range(10)] and [len(g) for g in shuffled] == [4, 4, 2]
    assert groups("abcde", 3, stride=2) == [["a", "b", "c"], ["c", "d", "e"], ["e"]]


def test_rotated_groups_put_every_document_at_every_place_once_in_group_size_passes():
    docs = [str(i) for i in range(20)]
    passes = [rotated_groups(docs, 5, r, seed="0:q1") for r in range(6)]
    for cut in passes:  # each pass is a partition into 4 groups of 5
        assert sorted(sum(cut, [])) == sorted(docs) and [len(g) for g in cut] == [5] * 4
    places = {d: [next(g.index(d) for g in cut if d in g) for cut in passes] for d in docs}
    assert all(sorted(p[:5]) == [0, 1, 2, 3, 4] and p[5] == p[0] for p in places.values())  # the sixth pass starts over
    company = {d: [frozenset(next(g for g in cut if d in g)) for cut in passes] for d in docs}
    assert sum(len(set(c[:5])) for c in company.values()) > 4 * 20  # new company: a group seldom repeats
    assert passes[1] == rotated_groups(docs, 5, 1, seed="0:q1") != rotated_groups(docs, 5, 1, seed="0:q2")
    # lane 0 = the first ceil(n/size) of the seeded shuffle holds place r in pass r
    lane0 = set(groups(docs, 4, seed="0:q1")[0])
    assert all({g[r] for g in passes[r]} == lane0 for r in range(5))
    short = [rotated_groups("abcdefg", 3, r, seed="s") for r in range(3)]  # 7 into lanes of 3, 3, 1
    assert all(sorted(sum(cut, [])) == list("abcdefg") and sorted(map(len, cut)) == [2, 2, 3] for cut in short)
    with pytest.raises(ValueError, match="pass index at least 0"):
        rotated_groups(docs, 5, -1, seed="s")


def test_answer_keys_may_repeat_each_documents_first_words():
    """Keys "[k] <the document's first words>" (echo_words) parse as "[k]", in either parser; a number used twice,
    or a key whose text does not start "[k] ", is still an invalid object."""
    from rlpost.ranking.prompts import GROUPRANK_ANSWER, grouprank_json, opening

    docs = ['The "Manhattan" Project, 1942 to 1946', "Apollo 11 landed", "no", "C:\\ drive"]
    assert opening(docs[0], 3) == "The Manhattan Project," and opening(docs[3], 5) == "C: drive"
    body = grouprank_json(GOLD, docs, echo_words=3)
    assert body == '{"[1] The Manhattan Project,": 10, "[2] Apollo 11 landed": 6, "[3] no": 2, "[4] C: drive": 0}'
    text = GROUPRANK_ANSWER.format(answer=body)
    assert parse_grouprank(text, 4) == (True, GOLD) and grouprank_reward(text, GOLD) == pytest.approx(1.3)
    assert parse_grouprank_lenient(text, 4) == dict(enumerate(map(float, GOLD), 1))
    swapped = text.replace('"[1] The', '"[2] The')
    assert parse_grouprank(swapped, 4) == (True, None) and parse_grouprank(text.replace('"[3] no"', '"[3]no"'), 4) == (True, None)


@pytest.mark.parametrize("text, scores", [
    ('{"[7]]": 5}', {7: 5.0}), ('<answer>{"[1]": 3, "[2]": 4</answer>', {1: 3.0, 2: 4.0}), ('{"3": 2}', {3: 2.0}),
    ('{"[1]": "11"}', {1: 10.0}), ('{"[1]": 2.5, "[99]": 3}', {1: 2.5}), ("no scores here", {}), ('{1: 7, "[2]": -1}', {1: 7.0, 2: 0.0}),
])
def test_tg8_lenient_parser(text, scores):
    assert parse_grouprank_lenient(text, 10) == scores


# ------------------------------------------------------------------ runs, qrels, nDCG

def test_ndcg_against_a_hand_computed_ranking():
    # ranking b (rel 1), a (rel 3), c (0): DCG = 1 + 3/log2(3); IDCG = 3 + 1/log2(3)
    result = evaluate({"q1": {"a": 1.0, "b": 2.0, "c": 0.5}}, {"q1": {"a": 3, "b": 1, "c": 0}})
    assert result["ndcg_cut_10"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert result["queries"] == 1 and result["missing"] == 0


def test_a_missing_query_counts_zero_and_must_be_allowed():
    run, qrels = {"q1": {"a": 1.0}}, {"q1": {"a": 1}, "q2": {"b": 1}}
    with pytest.raises(DataError, match="1 of 2 judged queries are missing from the run"):
        evaluate(run, qrels)
    assert evaluate(run, qrels, allow_missing=True)["ndcg_cut_10"] == 0.5
    with pytest.raises(DataError, match="name no query of the run"):
        evaluate({"q9": {"a": 1.0}}, qrels)


def test_written_runs_read_back_by_trec_eval_with_ties_kept_in_order(tmp_path):
    import pytrec_eval

    path = write_run({"q1": [("d3", 5.0), ("d1", 7.0), ("d2", 5.0)], "q2": [("x", 1.0)]}, tmp_path / "run.trec", tag="erank")
    lines = path.read_text().splitlines()
    assert lines[:3] == ["q1 Q0 d1 1 7.000000 erank", "q1 Q0 d3 2 5.000000 erank", "q1 Q0 d2 3 4.999990 erank"]
    with path.open() as f:
        parsed = pytrec_eval.parse_run(f)
    assert sorted(parsed["q1"], key=lambda d: -parsed["q1"][d]) == ["d1", "d3", "d2"]
    assert read_run(path) == parsed
    nudged = strictly_decreasing([("a", 1.0), ("b", 1.0), ("c", 1.0)])
    assert [d for d, _ in nudged] == ["a", "b", "c"] and [s for _, s in nudged] == pytest.approx([1.0, 0.99999, 0.99998])


@pytest.mark.parametrize("content, expected", [
    ("q1 Q0 d1 1 x tag\n", "line 1: the score 'x' is not a number"),
    ("q1 Q0 d1 1\n", "line 1: expected 6 columns"),
    ("", "no run lines"),
])
def test_bad_run_files_are_one_line(tmp_path, content, expected):
    (tmp_path / "run").write_text(content)
    with pytest.raises(DataError, match=expected):
        read_run(tmp_path / "run")


def test_bad_qrels_topics_and_candidates_are_one_line(tmp_path):
    (tmp_path / "qrels").write_text("q1 0 d1 2\nq1 0 d2 high\n")
    with pytest.raises(DataError, match="line 2: the relevance 'high' is not an integer"):
        read_qrels(tmp_path / "qrels")
    (tmp_path / "topics").write_text("1\tdo goldfish grow\n2 no tab\n")
    with pytest.raises(DataError, match="line 2: expected 'qid<TAB>query'"):
        read_topics(tmp_path / "topics")
    (tmp_path / "c.json").write_text('[{"query": "q", "hits": []}]')
    with pytest.raises(DataError, match="has an empty candidate list"):
        read_candidates(tmp_path / "c.json")
    (tmp_path / "c.json").write_text('[{"query": "q", "hits": [{"qid": 1, "docid": 7, "content": " ", "score": 1}]}]')
    with pytest.raises(DataError, match="document 7 has no text"):
        read_candidates(tmp_path / "c.json")
    with pytest.raises(DataError, match="run file not found"):
        read_run(tmp_path / "nowhere")


@pytest.mark.skipif(not DATA.is_dir(), reason=f"TREC DL data not at {DATA}")
def test_bm25_on_dl19_scores_the_published_ndcg():
    """The BM25 top-100 run of TREC DL19 scores nDCG@10 0.5058 (Pyserini's published figure) over its 43
    judged queries; its candidate file holds the same 43 queries with 100 passages each."""
    d = DATA / "trec-dl-2019-passage"
    result = evaluate(read_run(d / "bm25_top100.rank_llm.trec"), read_qrels(d / "qrels.dl19-passage.txt"))
    assert result["ndcg_cut_10"] == pytest.approx(0.5058, abs=1e-4) and result["queries"] == 43
    candidates = read_candidates(d / "bm25_top100.rank_llm.json")
    assert len(candidates) == 43 and {len(c["candidates"]) for c in candidates} == {100}
    assert set(read_topics(d / "topics.dl19-passage.tsv")) >= {c["qid"] for c in candidates}


def test_erank_reward_options_are_checked_when_the_recipe_resolves():
    """A wrong kind or rule is one line naming it when the rewards resolve (before any model loads)."""
    from rewards import resolve_rewards

    resolve_rewards([("erank", "erank", {"kind": "ndcg", "neg_above_rule": "share"})])
    with pytest.raises(ValueError, match="reward 'erank': neg_above_rule must be one of any_positive, all_positives, share"):
        resolve_rewards([("erank", "erank", {"neg_above_rule": "half"})])
    with pytest.raises(ValueError, match="reward 'erank': kind must be one of rr, ndcg, se, got 'mrr'"):
        resolve_rewards([("erank", "erank", {"kind": "mrr"})])


def test_grouprank_is_a_recipe_reward_over_the_gold_column():
    """`rewards: [{name: grouprank}]` scores each completion against its record's `gold` gains (T-G1, T-G4)."""
    from rewards import compute_rewards, resolve_rewards

    specs = [("grouprank", "grouprank", {})]
    resolve_rewards(specs)
    completions = [answer([8, 9, 1, 0]), answer([1, 2, 3]), "no tags"]
    result = compute_rewards(specs, ["p"] * 3, completions, [{}] * 3, {"gold": [GOLD] * 3})
    np.testing.assert_allclose(result.values[:, 0], [1.1978, -0.1, -0.5], atol=1e-4)
