import math

import torch

from rlpost.algos import KL_ESTIMATORS
from rlpost.algos.selection import degenerate_filter


def test_kl_hand_numbers():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-2.0, -1.0, -0.5])
    torch.testing.assert_close(KL_ESTIMATORS.get("k1")(logp, ref), torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(KL_ESTIMATORS.get("k2")(logp, ref), torch.tensor([0.5, 0.5, 0.0]))
    k3 = KL_ESTIMATORS.get("k3")(logp, ref)
    torch.testing.assert_close(k3, torch.tensor([math.exp(-1), math.exp(1) - 2, 0.0]))
    torch.testing.assert_close(k3[0], torch.tensor(0.3678794), atol=1e-6, rtol=0)


def test_k3_is_finite_and_nonnegative_for_extreme_ratios():
    logp = torch.tensor([0.0, -200.0, 0.0], requires_grad=True)
    ref = torch.tensor([-200.0, 0.0, 0.0])
    k3 = KL_ESTIMATORS.get("k3")(logp, ref)
    assert torch.isfinite(k3).all() and (k3 >= 0).all()
    torch.testing.assert_close(k3[1], torch.tensor(math.exp(20) - 21))
    k3.sum().backward()
    assert torch.isfinite(logp.grad).all()


def test_k3_gradient_matches_formula():
    logp = torch.tensor([-1.0], requires_grad=True)
    KL_ESTIMATORS.get("k3")(logp, torch.tensor([-2.0])).sum().backward()
    # d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp)
    torch.testing.assert_close(logp.grad, torch.tensor([1 - math.exp(-1)]))


def test_degenerate_filter():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.3, 0.3, 0.3, 0.7, 0.3])
    ids = torch.tensor([5, 5, 2, 2, 9, 8, 8, 8, 5, 8])
    keep = degenerate_filter(rewards, ids)
    # group 5 varied -> kept; 2 all equal, 9 singleton, 8 all equal -> dropped
    assert keep.tolist() == [True, True, False, False, False, False, False, False, True, False]
    assert keep.dtype == torch.bool


def test_degenerate_filter_tolerance_and_empty():
    rewards = torch.tensor([1.0, 1.0 + 1e-12, 0.0, 1e-3], dtype=torch.float64)
    keep = degenerate_filter(rewards, torch.tensor([0, 0, 1, 1]))
    assert keep.tolist() == [False, False, True, True]
    assert degenerate_filter(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)
