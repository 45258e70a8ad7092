"""Unlikeliness reward on the spec's hand-computed numbers (shared/specs/unlikeliness_and_knapsack.md, 1.7)."""
from __future__ import annotations

import pytest
import torch

from rlpost.algos.advantages import grpo
from rlpost.algos.policy_loss import ppo_clip
from rlpost.algos.stage import StageContext
from rlpost.algos.unlikeliness import likelihood_ranks, sequence_logprob, unlikeliness_multipliers, unlikeliness_rewards
from rlpost.config import AlgoConfig
from rlpost.pipeline import Pipeline
from tests.batches import make_batch, with_old_logprobs


def t(x):
    return torch.tensor(x, dtype=torch.float32)


G0 = torch.zeros(4, dtype=torch.long)
LP = t([-0.2, -0.9, -0.5, -1.4])


def shaped_advantages(rewards, logprobs, beta=0.25, ids=G0):
    r = unlikeliness_rewards(t(rewards), t(logprobs), ids, beta)
    return r, grpo(r, ids)


def test_u1_basic_group():
    ranks, size = likelihood_ranks(LP, G0)
    assert ranks.tolist() == [3, 1, 2, 0] and size.tolist() == [4] * 4
    assert unlikeliness_multipliers(LP, G0, 0.25).tolist() == [0.8125, 0.9375, 0.875, 1.0]
    r, a = shaped_advantages([1, 1, 0, 1], LP.tolist())
    assert r.tolist() == [0.8125, 0.9375, 0.0, 1.0]
    torch.testing.assert_close(a, t([0.268866, 0.537732, -1.478762, 0.672165]), atol=2e-6, rtol=0)
    assert a[3] > a[1] > a[0]  # the reverse of likelihood order among correct samples


def test_u2_beta_zero_is_grpo():
    _, a = shaped_advantages([1, 1, 0, 1], LP.tolist(), beta=0.0)
    torch.testing.assert_close(a, t([0.5, 0.5, -1.5, 0.5]), atol=5e-6, rtol=0)  # eps moves the 6th decimal


def test_u3_all_correct_group_is_reshaped_and_the_filter_drops_it():
    r, a = shaped_advantages([1, 1, 1, 1], LP.tolist())
    assert r.tolist() == [0.8125, 0.9375, 0.875, 1.0]
    torch.testing.assert_close(a, t([-1.161881, 0.387294, -0.387294, 1.161881]), atol=2e-5, rtol=0)
    # through the pipeline: the filter judges the rewards as scored, so the reshaped group still goes
    algo = AlgoConfig(shape=["unlikeliness"], select=["degenerate_filter"])
    batch = with_old_logprobs(make_batch([[1, 1, 1, 1], [1, 1, 0, 1]], [[1] * 4, [1] * 4]), [[x] for x in LP.tolist() * 2])
    Pipeline.from_config(algo)(batch, StageContext(0, 10))
    assert batch.keep.tolist() == [False] * 4 + [True] * 4
    torch.testing.assert_close(batch.advantages[4:], t([0.268866, 0.537732, -1.478762, 0.672165]), atol=2e-6, rtol=0)


def test_u4_all_wrong_and_singleton():
    _, a = shaped_advantages([0, 0, 0, 0], LP.tolist())
    assert a.tolist() == [0.0] * 4
    _, a = shaped_advantages([1], [-0.3], ids=torch.zeros(1, dtype=torch.long))
    assert a.tolist() == pytest.approx([1.0], abs=1e-5)


def test_u5_incorrect_samples_shift_the_ranks():
    r, a = shaped_advantages([1, 0, 0, 1], [-0.3, -0.1, -0.2, -0.4])
    assert r.tolist() == [0.9375, 0, 0, 1.0]
    torch.testing.assert_close(a, t([0.809310, -0.865124, -0.865124, 0.920939]), atol=2e-6, rtol=0)
    r, a = shaped_advantages([1, 0, 0, 1], [-0.3, -0.5, -0.6, -0.4])
    assert r.tolist() == [0.8125, 0, 0, 0.875]
    torch.testing.assert_close(a, t([0.800776, -0.864838, -0.864838, 0.928900]), atol=2e-6, rtol=0)


def test_u6_ties_are_stable_or_averaged():
    lp = t([-0.5, -0.5, -0.9, -0.1])
    assert likelihood_ranks(lp, G0)[0].tolist() == [1, 2, 0, 3]
    assert unlikeliness_rewards(t([1, 1, 0, 0]), lp, G0, 0.25).tolist() == [0.9375, 0.875, 0, 0]
    assert likelihood_ranks(lp, G0, ties="average")[0].tolist() == [1.5, 1.5, 0, 3]


def test_u7_paper_scale_bounds():
    m = unlikeliness_multipliers(torch.linspace(-3, -1, 32), torch.zeros(32, dtype=torch.long), 0.25)
    assert float(m.max()) == 1.0 and float(m.min()) == 0.7578125


def test_u8_length_normalisation_ignores_padding():
    logp = t([[-0.1] * 6, [-0.3, -0.3, -9.0, -9.0, -9.0, -9.0]])
    mask = t([[1] * 6, [1, 1, 0, 0, 0, 0]])
    assert sequence_logprob(logp, mask).tolist() == pytest.approx([-0.1, -0.3])
    assert sequence_logprob(logp, mask, "sum").tolist() == pytest.approx([-0.6, -0.6])
    ranks, _ = likelihood_ranks(sequence_logprob(logp, mask), torch.zeros(2, dtype=torch.long))
    assert ranks.tolist() == [1, 0]  # A is "more likely" and penalised more


def test_u9_interleaved_groups_equal_each_group_alone():
    r1, l1 = [1, 1, 0, 1], [-0.2, -0.9, -0.5, -1.4]
    r2, l2 = [1, 0, 0, 1], [-0.3, -0.1, -0.2, -0.4]
    alone = torch.cat([shaped_advantages(r1, l1)[1], shaped_advantages(r2, l2)[1]])
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])[order]
    r, lp = t(r1 + r2)[order], t(l1 + l2)[order]
    mixed = grpo(unlikeliness_rewards(r, lp, ids, 0.25), ids)
    torch.testing.assert_close(mixed, alone[order])


def test_u10_clip_focus_zero_gradient_past_the_clip():
    old = torch.zeros(1, 2)
    logp = torch.log(t([[1.25, 1.05]])).requires_grad_(True)
    loss, _ = ppo_clip(logp, old, t([1.0]), torch.ones(1, 2), aggregation="token-mean", agg_kwargs={"norm": 1.0})
    loss.backward()
    assert logp.grad[0, 0] == 0  # ratio 1.25 > 1 + 0.2 with A > 0: clipped
    assert logp.grad[0, 1] == pytest.approx(-1.05)  # d(-A * rho)/dlogp = -A * rho


def test_u11_one_correct_sample_is_unchanged():
    ids = G0
    a = grpo(t([1, 0, 0, 0]), ids)
    b = grpo(t([0.8125, 0, 0, 0]), ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a, t([1.5, -0.5, -0.5, -0.5]), atol=1e-5, rtol=0)


def test_negative_rewards_are_not_scaled():
    r = unlikeliness_rewards(t([-1.0, 1.0, -1.0, 0.5]), LP, G0, 0.25)
    assert r.tolist() == [-1.0, 0.9375, -1.0, 0.5]
