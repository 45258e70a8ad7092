"""D3S on the spec's hand-computed numbers (shared/specs/reinforce_ada_and_d3s.md, 2.6)."""
from __future__ import annotations

import pytest
import torch

from rlpost.algos.advantages import grpo
from rlpost.algos.aggregation import token_mean
from rlpost.algos.d3s import D3SSamples, D3STokens, linear_schedule, max_variance_subset, round_half_up, topk_token_mask
from rlpost.algos.stage import StageContext
from tests.batches import make_batch, with_old_logprobs


def adv(rewards):
    return grpo(torch.tensor(rewards, dtype=torch.float32), torch.zeros(len(rewards), dtype=torch.long))


def pop_var(x):
    return float(x.var(unbiased=False))


def test_d1_intra_binary_balanced():
    a = adv([1, 1, 0, 0, 0, 0, 0, 0])
    assert a[:2].tolist() == pytest.approx([1.6202] * 2, abs=1e-4) and a[2] == pytest.approx(-0.5401, abs=1e-4)
    keep = max_variance_subset(a, 4)
    assert keep.tolist() == [0, 1, 2, 3]
    assert pop_var(a[keep]) == pytest.approx(1.1667, abs=1e-4)
    assert pop_var(a[[0, 2, 3, 4]]) == pytest.approx(0.8750, abs=1e-4)  # k = 1


def test_d2_one_success():
    a = adv([1, 0, 0, 0, 0, 0, 0, 0])
    keep = max_variance_subset(a, 4)
    assert keep.tolist() == [0, 1, 2, 3] and pop_var(a[keep]) == pytest.approx(1.5, abs=1e-4)


def test_d3_graded_rewards_beat_the_half_split():
    a = adv([1.0, 0.9, 0.8, 0.1, 0.0, 0.0])
    torch.testing.assert_close(a, torch.tensor([1.1105, 0.9023, 0.6940, -0.7634, -0.9717, -0.9717]), atol=1e-4, rtol=0)
    keep = max_variance_subset(a, 3)
    assert keep.tolist() == [0, 4, 5] and pop_var(a[keep]) == pytest.approx(0.9634, abs=1e-4)


def test_d4_cross_group_selection():
    batch = make_batch([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    batch.rewards = batch.raw_rewards
    from rlpost.algos.advantages import on_kept_rows

    batch.advantages = on_kept_rows(batch, grpo, 1e-6)
    torch.testing.assert_close(batch.advantages[:8], torch.tensor([1.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -1.5]), atol=1e-5, rtol=0)
    assert max_variance_subset(batch.advantages, 4).tolist() == [0, 1, 4, 7]  # X0, X1, Y0, Y3
    # 3 groups x round(1.33) = 3 rows: k=1 {+1.5 | -1.5, -0.5} and k=2 {+1.5, +0.5 | -1.5} tie (variance 1.556),
    # equally far from m/2, so the smaller k wins
    D3SSamples("cross", n_init=4 / 3, n_final=4 / 3)(batch, StageContext(0, 10))
    assert batch.keep.nonzero().flatten().tolist() == [0, 1, 7]
    stage = D3SSamples("intra", n_init=2, n_final=2)
    fresh = make_batch([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    fresh.rewards = fresh.raw_rewards
    fresh.advantages = on_kept_rows(fresh, grpo, 1e-6)
    stage(fresh, StageContext(0, 10))
    assert fresh.keep.nonzero().flatten().tolist() == [0, 1, 4, 7, 8, 9]  # per group; the uniform group keeps its first 2
    assert D3SSamples("cross").stage_info.locality == "batch" and stage.stage_info.locality == "group"


def test_d4_ragged_counts_and_unchanged_values():
    a = torch.tensor([1.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -1.5, 0, 0, 0, 0])
    keep = max_variance_subset(a, 4)
    assert pop_var(a[keep]) == pytest.approx(1.25)
    assert a[keep].tolist() == [1.5, -0.5, 0.5, -1.5]  # not re-normalised


def test_d5_token_selection_and_d6_normalisation():
    A = torch.tensor([1.5, -1.5, 0.5])
    H = torch.tensor([[0.1, 0.8, 0.05, 0.4], [0.3, 0.02, 0.9, 0.0], [1.1, 0.1, 0.0, 0.0]])
    valid = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])
    mask = topk_token_mask(A.abs()[:, None] * H, valid, 3)
    assert mask.nonzero().tolist() == [[0, 1], [0, 3], [1, 2]]  # (a,1) 1.2, (a,3) 0.6, (b,2) 1.35
    # D6: all ratios 1, so the per-token PPO loss is -A
    per_token = -A[:, None].expand(3, 4)
    assert float(token_mean(per_token, mask)) == pytest.approx(-0.5)
    assert float(token_mean(per_token, mask, norm=float(valid.sum()))) == pytest.approx(-1.5 / 9)


def test_d5_through_the_tokens_stage():
    batch = make_batch([[1, 0, 1]], [[4, 3, 2]])
    batch.advantages = torch.tensor([1.5, -1.5, 0.5])
    with_old_logprobs(batch, [[0.0] * 4, [0.0] * 3, [0.0] * 2], [[0.1, 0.8, 0.05, 0.4], [0.3, 0.02, 0.9], [1.1, 0.1]])
    D3STokens(k_init=1 / 3, k_final=1 / 3)(batch, StageContext(0, 10))
    assert batch.token_weights.nonzero().tolist() == [[0, 1], [0, 3], [1, 2]]


def test_d7_schedule():
    rows = [(0, 4, 0.2), (25, 5, 0.275), (50, 6, 0.35), (100, 8, 0.5)]
    for step, n, k in rows:
        p = step / 100
        assert round_half_up(linear_schedule(4, 8, p)) == n
        assert linear_schedule(0.2, 0.5, p) == pytest.approx(k)
    assert round_half_up(linear_schedule(4, 8, 0.125)) == 5  # 4.5 rounds half up, not to even


def test_edge_cases():
    assert max_variance_subset(torch.tensor([3.0, 1.0]), 5).tolist() == [0, 1]  # m >= n: keep all
    assert max_variance_subset(torch.zeros(5), 2).tolist() == [0, 1]  # all equal: the first m by index
    assert topk_token_mask(torch.zeros(1, 3), torch.ones(1, 3), 1).tolist() == [[1.0, 0.0, 0.0]]  # at least one token
    with pytest.raises(ValueError, match="mode"):
        D3SSamples(mode="both")
    with pytest.raises(ValueError, match="k_final"):
        D3STokens(k_final=1.5)


def test_max_variance_is_exact_against_brute_force():
    from itertools import combinations

    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        n = int(torch.randint(2, 9, (1,), generator=g))
        m = int(torch.randint(1, n + 1, (1,), generator=g))
        v = torch.randn(n, generator=g).round(decimals=1)
        best = max(pop_var(v[list(c)]) if m > 1 else 0.0 for c in combinations(range(n), m))
        got = max_variance_subset(v, m)
        assert got.numel() == m
        assert (pop_var(v[got]) if m > 1 else 0.0) == pytest.approx(best, abs=1e-9)
