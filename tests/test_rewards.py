"""Tests for rewards: the built-ins on hand-computed cases, compute_rewards' error handling, and the weighted sum."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rewards import REWARDS, RewardResult, compute_rewards, resolve_rewards, reward_locality, weighted_sum

NAN = float("nan")


def _same(actual, expected) -> bool:
    """Element-wise equality where NaN equals NaN."""
    return np.array_equal(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), equal_nan=True)


@pytest.fixture
def plugins_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))


# ---------------------------------------------------------------- built-ins


def test_builtin_names():
    assert REWARDS.names() == ["conciseness", "correctness", "erank", "format", "grouprank", "grouprank_block", "length_penalty"]
    assert {n: reward_locality(REWARDS.get(n)) for n in REWARDS.names() if reward_locality(REWARDS.get(n)) != "row"} == {"erank": "cohort"}


def test_correctness_is_nan_for_failed_or_missing_facts():
    facts = [
        {"math": {"correct": True, "parsed": "2"}},
        {"math": {"correct": False, "parsed": "3"}},
        {"math": {"error": "timeout after 5.0s"}},
        {"other": {"correct": True}},  # no facts from "math" for this row
    ]
    assert _same(REWARDS.get("correctness")([""] * 4, [""] * 4, facts), [1.0, 0.0, NAN, NAN])
    assert _same(REWARDS.get("correctness")([""] * 4, [""] * 4, facts, verifier="other"), [NAN, NAN, NAN, 1.0])


def test_correctness_rejects_a_verifier_that_never_ran_or_does_not_judge():
    correctness = REWARDS.get("correctness")
    with pytest.raises(ValueError, match=r"no facts from verifier 'math' \(verifiers that ran: \['regex'\]\)"):
        correctness([""], [""], [{"regex": {"correct": True}}])
    with pytest.raises(ValueError, match="does not judge correctness"):
        correctness([""], [""], [{"math": {"parsed": "2"}}])


def test_format():
    completions = ["<think>a\nb</think> 4", "no tags", "<think>x</think>"]
    fmt = REWARDS.get("format")
    assert fmt([""] * 3, completions, [{}] * 3, pattern=r"(?s)^<think>.*</think>") == [1.0, 0.0, 1.0]
    assert fmt([""] * 3, completions, [{}] * 3, pattern=r"</think> \d+$") == [1.0, 0.0, 0.0]


def test_length_penalty_counts_tokens_when_given_else_characters():
    penalty = REWARDS.get("length_penalty")
    ids = [[0] * 2, [0] * 4, [0] * 6, [0] * 8]
    # -2 * max(0, L - 4) / 4 for L = 2, 4, 6, 8
    out = penalty([""] * 4, ["x"] * 4, [{}] * 4, target_length=4, scale=2.0, completion_ids=ids)
    assert out == [0.0, 0.0, -1.0, -2.0]
    assert penalty([""] * 2, ["abc", "abcdefghij"], [{}] * 2, target_length=5) == [0.0, -1.0]
    with pytest.raises(ValueError, match="target_length must be > 0"):
        penalty([""], ["a"], [{}], target_length=0)


# ---------------------------------------------------------------- compute_rewards


def test_compute_rewards_matrix_with_nan_propagation():
    completions = ["\\boxed{2} done", "\\boxed{3}", "long answer here"]
    facts = [{"math": {"correct": True}}, {"math": {"correct": False}}, {"math": {"error": "ValueError: x"}}]
    specs = [
        ("correct", "correctness", {"verifier": "math"}),
        ("boxed", "format", {"pattern": r"\\boxed\{"}),
        ("short", "length_penalty", {"target_length": 2, "scale": 0.5}),
    ]
    ids = [[1, 2], [1, 2, 3], [1] * 6]
    result = compute_rewards(specs, ["p"] * 3, completions, facts, columns={"answer": ["2"] * 3}, completion_ids=ids)
    assert isinstance(result, RewardResult)
    assert result.names == ["correct", "boxed", "short"]
    assert result.values.dtype == np.float64 and result.values.shape == (3, 3)
    # short: -0.5 * max(0, L - 2) / 2 for L = 2, 3, 6
    assert _same(result.values, [[1.0, 1.0, 0.0], [0.0, 1.0, -0.25], [NAN, 0.0, -1.0]])
    assert result.errors == {}
    assert result.nan_counts == {"correct": 1, "boxed": 0, "short": 0}


def test_plugin_reward_by_module_path_gets_dataset_columns(plugins_on_path):
    specs = [("mentions", "plugin_rewards:answer_mentioned", {"bonus": 2.0})]
    columns = {"answer": ["42", "7"], "difficulty": [1, 2]}
    result = compute_rewards(specs, ["q1", "q2"], ["it is 42", "it is 8"], [{}, {}], columns, completion_ids=None)
    # bonus (2.0) if the answer column appears, plus 0.5 * difficulty
    assert _same(result.values[:, 0], [2.5, 1.0])
    assert result.errors == {}


def test_reward_kwargs_override_a_column_of_the_same_name(plugins_on_path):
    specs = [("mentions", "plugin_rewards:answer_mentioned", {"bonus": 2.0})]
    columns = {"answer": ["42"], "difficulty": [0], "bonus": [100.0]}
    result = compute_rewards(specs, ["q"], ["42"], [{}], columns)
    assert _same(result.values, [[2.0]])


def test_failing_rewards_become_nan_columns_and_errors(plugins_on_path, caplog):
    specs = [
        ("boxed", "format", {"pattern": "x"}),
        ("broken", "plugin_rewards:broken", {}),
        ("short", "plugin_rewards:too_short", {}),
        ("strings", "plugin_rewards:not_numbers", {}),
        ("no_target", "length_penalty", {}),
    ]
    with caplog.at_level(logging.WARNING, logger="rlpost.rewards"):
        result = compute_rewards(specs, ["p", "p"], ["x", "y"], [{}, {}], columns={})
    assert _same(result.values[:, 0], [1.0, 0.0])  # the healthy reward is intact
    assert np.isnan(result.values[:, 1:]).all()
    assert result.errors == {
        "broken": "RuntimeError: reward backend unavailable",
        "short": "ValueError: returned 1 values for 2 completions",
        "strings": "TypeError: returned a non-number at index 0: '1.0'",
        "no_target": "TypeError: length_penalty() missing 1 required positional argument: 'target_length'",
    }
    assert result.nan_counts == {"boxed": 0, "broken": 2, "short": 2, "strings": 2, "no_target": 2}
    logged = [r.getMessage() for r in caplog.records if r.name == "rlpost.rewards"]
    assert "reward 'broken' failed, its column is NaN: RuntimeError: reward backend unavailable" in logged
    assert len(logged) == 4


def test_reward_outputs_arrays_none_and_infinities(plugins_on_path):
    specs = [
        ("array", "plugin_rewards:as_array", {}),
        ("none", "plugin_rewards:none_first", {}),
        ("inf", "plugin_rewards:infinite_first", {}),
    ]
    result = compute_rewards(specs, ["p", "p"], ["x", "y"], [{}, {}], columns={})
    # An int array is taken as floats; None means unknown (NaN) as in TRL; inf is an error.
    assert _same(result.values, [[1.0, NAN, NAN], [2.0, 0.5, NAN]])
    assert result.errors == {"inf": "ValueError: returned an infinite value at index 0"}
    assert result.nan_counts == {"array": 0, "none": 1, "inf": 2}


@pytest.mark.parametrize(
    "specs, message",
    [
        ([("r", "no_such_reward", {})], "reward 'r': cannot resolve 'no_such_reward'"),
        ([("r", "no_such_module_xyz:fn", {})], "cannot import 'no_such_module_xyz'"),
        ([("r", "format", {"pattern": "x"}), ("r", "correctness", {})], "'r' appears twice"),
        ([("r", "correctness", {"facts": []})], r"kwargs may not set \['facts'\]"),
        ([("r", "math:sqrt", {})], r"reward 'r' \('math:sqrt'\) does not fit fn\(prompts, completions, facts"),
    ],
)
def test_resolve_rewards_names_the_bad_spec(specs, message):
    with pytest.raises(ValueError, match=message):
        resolve_rewards(specs)


def test_resolve_rewards_checks_kwargs_against_the_signature(plugins_on_path):
    assert len(resolve_rewards([("s", "plugin_rewards:strict", {"scale": 2.0})])) == 1
    with pytest.raises(ValueError, match=r"reward 's' \('plugin_rewards:strict'\) does not fit .* \{'scael': 2.0\}"):
        resolve_rewards([("s", "plugin_rewards:strict", {"scael": 2.0})])


def test_compute_rewards_checks_batch_shapes():
    specs = [("boxed", "format", {"pattern": "x"})]
    with pytest.raises(ValueError, match=r"2 completions but lengths \{\"column 'answer'\": 1\}"):
        compute_rewards(specs, ["p", "p"], ["a", "b"], [{}, {}], columns={"answer": ["1"]})
    with pytest.raises(ValueError, match="clash"):
        compute_rewards(specs, ["p"], ["a"], [{}], columns={"completions": ["1"]})


# ---------------------------------------------------------------- the weighted sum


def test_weighted_sum_and_nan_rules():
    values = np.array([[1.0, 0.5, NAN], [NAN, 1.0, 2.0], [0.0, -1.0, 4.0]])
    combine = weighted_sum
    # 1*c0 + 2*c1 + 0*c2: the NaN in zero-weight c2 is ignored, the NaN in c0 is not.
    assert _same(combine(values, [1.0, 2.0, 0.0]), [2.0, NAN, -2.0])
    assert _same(combine(values, [0.0, 1.0, 0.5]), [NAN, 2.0, 1.0])
    assert _same(combine(values, [0.0, 0.0, 0.0]), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="expected values"):
        combine(values, [1.0, 2.0])
