import pytest
import torch

from rlpost.algos import STAGES
from rlpost.algos.advantages import dr_grpo, grpo, rloo
from rlpost.algos.stage import StageContext
from tests.batches import make_batch


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


def _ids(n, gid=0):
    return torch.full((n,), gid, dtype=torch.long)


FNS = {"grpo": grpo, "dr_grpo": dr_grpo, "rloo": rloo}


def test_registered_as_advantage_stages():
    for name in FNS:
        assert STAGES.get(name).stage_info.kind == "advantage"
        assert STAGES.get(name).stage_info.locality == "group"
    assert STAGES.get("rlpost.algos.advantages:rloo_stage") is STAGES.get("rloo")


def test_grpo_unbiased_std_hv5():
    a = grpo(_t([1, 0, 0.5, 0.5]), _ids(4))
    torch.testing.assert_close(a, _t([1.2247449, -1.2247449, 0, 0]), atol=1e-5, rtol=0)
    # scale invariance (up to eps)
    torch.testing.assert_close(grpo(_t([0.5, 0, 0.25, 0.25]), _ids(4)), a, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "rewards,pos,neg",
    [([1, 1, 0, 0, 0, 0, 0, 0], 1.6202, -0.5401), ([1, 0, 0, 0, 0, 0, 0, 0], 2.4749, -0.3536)],
)
def test_grpo_binary_groups(rewards, pos, neg):
    r = _t(rewards)
    a = grpo(r, _ids(8))
    torch.testing.assert_close(a[r == 1], torch.full_like(a[r == 1], pos), atol=1e-4, rtol=0)
    torch.testing.assert_close(a[r == 0], torch.full_like(a[r == 0], neg), atol=1e-4, rtol=0)


def test_grpo_d3_graded():
    a = grpo(_t([1.0, 0.9, 0.8, 0.1, 0.0, 0.0]), _ids(6))
    torch.testing.assert_close(a, _t([1.1105, 0.9023, 0.6940, -0.7634, -0.9717, -0.9717]), atol=1e-4, rtol=0)


def test_rloo_hv5():
    a = rloo(_t([1, 0, 0.5, 0.5]), _ids(4))
    torch.testing.assert_close(a, _t([2 / 3, -2 / 3, 0, 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(rloo(_t([0.5, 0, 0.25, 0.25]), _ids(4)), a / 2, atol=1e-6, rtol=0)


def test_dr_grpo_is_mean_centred():
    torch.testing.assert_close(dr_grpo(_t([1, 0, 0, 1]), _ids(4)), _t([0.5, -0.5, -0.5, 0.5]))
    torch.testing.assert_close(dr_grpo(_t([1, 0, 0, 0, 0, 0, 0, 0]), _ids(8))[:2], _t([0.875, -0.125]))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_all_equal_group_is_zero(name):
    for value in (0.0, 1.0, 3.7):
        a = FNS[name](torch.full((5,), value), _ids(5))
        assert torch.all(a == 0)


def test_singleton_groups():
    r = _t([1.0, 0.0, 0.3])
    ids = torch.tensor([7, 3, 11])
    torch.testing.assert_close(grpo(r, ids), r / (1 + 1e-6))  # mean 0, std 1 (U4: [1] -> 1.0)
    assert torch.all(dr_grpo(r, ids) == 0)
    assert torch.all(rloo(r, ids) == 0)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_ragged_interleaved_matches_separate(name):
    fn = FNS[name]
    groups = {42: [1, 0, 0.5, 0.5], -3: [1, 1, 0, 0, 0, 0, 0, 0], 5: [0.2, 0.9, 0.4], 9: [1.0]}
    expected = {g: fn(_t(r), _ids(len(r))) for g, r in groups.items()}
    rows = [(g, i) for g, r in groups.items() for i in range(len(r))]
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    rows = [rows[p] for p in perm]
    rewards = _t([groups[g][i] for g, i in rows])
    ids = torch.tensor([g for g, _ in rows])
    out = fn(rewards, ids)
    for k, (g, i) in enumerate(rows):
        torch.testing.assert_close(out[k], expected[g][i])


def test_rloo_equals_scaled_dr_grpo():
    r = torch.rand(12, generator=torch.Generator().manual_seed(1))
    ids = torch.arange(12) // 4
    torch.testing.assert_close(rloo(r, ids), dr_grpo(r, ids) * 4 / 3)


def test_integer_rewards_and_empty_batch():
    torch.testing.assert_close(grpo(torch.tensor([1, 0]), _ids(2)), _t([0.7071064, -0.7071064]))
    assert grpo(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        grpo(torch.zeros(3), torch.zeros(2, dtype=torch.long))


def _query_batch(rewards_by_doc, qids):
    """One group per document (its rollouts' rewards), each record naming its query in ``qid``."""
    batch = make_batch(rewards_by_doc)
    for key, qid in enumerate(qids):
        batch.groups[key].item.record["qid"] = qid
    batch.rewards = batch.raw_rewards
    return batch


def test_cohort_grpo_normalises_over_each_query():
    """q1: a positive with rewards 1, 0.5 and a negative whose rollouts both got -1; q2 on its own.
    q1's mean -0.125, deviations 1.125, 0.625, -0.875, -0.875, unbiased std sqrt(3.1875 / 3) = 1.030776."""
    batch = _query_batch([[1.0, 0.5], [-1.0, -1.0], [0.2, 0.4]], ["q1", "q1", "q2"])
    STAGES.get("cohort_grpo")(batch, StageContext(0, 1, cohort="qid"))
    std = (3.1875 / 3) ** 0.5
    expected = [1.125 / std, 0.625 / std, -0.875 / std, -0.875 / std, -0.1 / 0.1414214, 0.1 / 0.1414214]
    torch.testing.assert_close(batch.advantages, _t(expected), atol=1e-4, rtol=0)
    # the per-document groups of plain GRPO give the negative document nothing to learn from
    STAGES.get("grpo")(batch, StageContext(0, 1))
    assert torch.all(batch.advantages[2:4] == 0)
    assert STAGES.get("cohort_grpo").stage_info.locality == "cohort"


def test_cohort_grpo_needs_the_cohort_column():
    batch = _query_batch([[1.0, 0.0]], ["q1"])
    with pytest.raises(ValueError, match="cohort_grpo needs data.cohort"):
        STAGES.get("cohort_grpo")(batch, StageContext(0, 1))
    with pytest.raises(ValueError, match="cohort column 'topic' is not in the prompt record"):
        STAGES.get("cohort_grpo")(batch, StageContext(0, 1, cohort="topic"))

