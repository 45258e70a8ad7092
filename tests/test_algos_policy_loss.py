import math

import pytest
import torch

from rlpost.algos import POLICY_LOSSES

ppo_clip = POLICY_LOSSES.get("ppo_clip")


def _one_token(log_ratio, adv, **kw):
    logp = torch.tensor([[log_ratio]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=torch.float64)
    loss, metrics = ppo_clip(logp, old, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1), **kw)
    loss.backward()
    return loss.item(), logp.grad.item(), metrics


def test_on_policy_loss_is_minus_mean_advantage():
    logp = torch.randn(3, 4)
    adv = torch.tensor([1.0, -2.0, 0.5])
    mask = torch.ones(3, 4)
    loss, metrics = ppo_clip(logp, logp.clone(), adv, mask)
    torch.testing.assert_close(loss, -adv.mean())
    assert metrics["clip_frac"] == 0.0 and metrics["approx_kl"] == 0.0
    assert metrics["ratio_mean"] == pytest.approx(1.0) and metrics["ratio_max"] == pytest.approx(1.0)


def test_reinforce_ada_token_mean_example():
    mask = torch.tensor([[1.0] * 3 + [0.0] * 2, [1.0] * 5])
    logp = torch.full((2, 5), -0.7)
    adv = torch.tensor([0.75, -0.25])
    loss, _ = ppo_clip(logp, logp.clone(), adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=10.0)
    torch.testing.assert_close(loss, torch.tensor(-0.125))


def test_d6_kept_vs_all_normalisation():
    # D3S D6: kept tokens A = -1.5, +1.5, +1.5 among 9 valid tokens, ratio 1.
    adv = torch.tensor([[1.5, 1.5, 1.5, 1.5], [-1.5, -1.5, -1.5, 0.0], [0.5, 0.5, 0.0, 0.0]])
    kept = torch.zeros(3, 4)
    kept[1, 2] = kept[0, 1] = kept[0, 3] = 1
    logp = torch.zeros(3, 4)
    loss_kept, _ = ppo_clip(logp, logp, adv, kept)
    loss_all, _ = ppo_clip(logp, logp, adv, kept, agg_kwargs={"norm": 9})
    torch.testing.assert_close(loss_kept, torch.tensor(-0.5))
    torch.testing.assert_close(loss_all, torch.tensor(-1.5 / 9))


def test_clip_zeroes_gradient_beyond_trust_region():
    # A > 0: ratio above 1 + eps is clipped (no grad); below 1 - eps it is not.
    loss, grad, m = _one_token(math.log(1.5), 1.0)
    assert loss == pytest.approx(-1.2) and grad == 0.0 and m["clip_frac"] == 1.0
    loss, grad, m = _one_token(math.log(0.5), 1.0)
    assert loss == pytest.approx(-0.5) and grad == pytest.approx(-0.5) and m["clip_frac"] == 0.0
    # A < 0: mirror image.
    loss, grad, m = _one_token(math.log(0.5), -1.0)
    assert loss == pytest.approx(0.8) and grad == 0.0 and m["clip_frac"] == 1.0
    loss, grad, m = _one_token(math.log(1.5), -1.0)
    assert loss == pytest.approx(1.5) and grad == pytest.approx(1.5) and m["clip_frac"] == 0.0


def test_clip_higher_asymmetry():
    kw = {"clip_low": 0.2, "clip_high": 0.28}
    loss, grad, _ = _one_token(math.log(1.25), 1.0, **kw)  # inside [0.8, 1.28]: live gradient
    assert loss == pytest.approx(-1.25) and grad == pytest.approx(-1.25)
    loss, grad, _ = _one_token(math.log(1.3), 1.0, **kw)
    assert loss == pytest.approx(-1.28) and grad == 0.0
    loss, grad, _ = _one_token(math.log(0.79), -1.0, **kw)
    assert loss == pytest.approx(0.8) and grad == 0.0
    # with the symmetric default, 1.25 is already clipped
    loss, grad, _ = _one_token(math.log(1.25), 1.0)
    assert loss == pytest.approx(-1.2) and grad == 0.0


def test_dual_clip_bounds_negative_advantage_loss():
    loss, grad, m = _one_token(3.0, -2.0)
    assert loss == pytest.approx(2 * math.exp(3)) and grad == pytest.approx(2 * math.exp(3))
    loss, grad, m = _one_token(3.0, -2.0, dual_clip=10.0)
    assert loss == pytest.approx(20.0) and grad == 0.0 and m["clip_frac_lower"] == 1.0
    # below the dual bound the ordinary PPO loss is kept
    loss, grad, m = _one_token(math.log(3.0), -2.0, dual_clip=10.0)
    assert loss == pytest.approx(6.0) and grad == pytest.approx(6.0) and m["clip_frac_lower"] == 0.0
    # positive advantages are untouched by dual-clip
    assert _one_token(3.0, 2.0, dual_clip=10.0)[0] == pytest.approx(-2.4)
    with pytest.raises(ValueError):
        _one_token(0.0, 1.0, dual_clip=1.0)


def test_gradcheck_and_analytic_gradient():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(3, 5, generator=g, dtype=torch.float64)
    # log-ratios well inside the clip range so the loss is smooth there
    logp = (old + 0.05 * torch.randn(3, 5, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(3, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 5, generator=g) > 0.3).double()
    fn = lambda lp: ppo_clip(lp, old, adv, mask)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logp,))
    fn(logp).backward()
    expected = -adv[:, None] * torch.exp(logp.detach() - old) * mask / mask.sum()
    torch.testing.assert_close(logp.grad, expected)


def test_token_advantages_match_broadcast():
    logp, old = torch.randn(2, 3), torch.randn(2, 3)
    adv, mask = torch.tensor([0.4, -1.1]), torch.ones(2, 3)
    a, _ = ppo_clip(logp, old, adv, mask)
    b, _ = ppo_clip(logp, old, adv[:, None].expand(2, 3), mask)
    torch.testing.assert_close(a, b)


def test_is_weights_scale_loss_and_are_detached():
    logp = torch.zeros(1, 2, requires_grad=True)
    w = torch.tensor([[2.0, 0.5]], requires_grad=True)
    loss, _ = ppo_clip(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), is_weights=w)
    torch.testing.assert_close(loss, torch.tensor(-(2.0 + 0.5) / 2))
    loss.backward()
    assert w.grad is None
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -0.25]]))


def test_metrics_hand_numbers():
    logp = torch.log(torch.tensor([[1.5, 1.0, 0.9, 5.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    _, m = ppo_clip(logp, torch.zeros(1, 4), torch.tensor([1.0]), mask)
    assert m["clip_frac"] == pytest.approx(1 / 3)
    assert m["ratio_mean"] == pytest.approx((1.5 + 1.0 + 0.9) / 3)
    assert m["ratio_max"] == pytest.approx(1.5)  # the masked 5.0 is ignored
    assert m["approx_kl"] == pytest.approx(-(math.log(1.5) + math.log(0.9)) / 3)
    assert all(isinstance(v, float) for v in m.values())


def test_other_aggregation_and_empty_mask():
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, 2.0])
    loss, _ = ppo_clip(
        logp, logp.detach(), adv, mask, aggregation="seq-mean-token-sum-norm", agg_kwargs={"max_len": 8}
    )
    torch.testing.assert_close(loss, torch.tensor(-(2 * 1.0 + 4 * 2.0) / (2 * 8)))
    loss, m = ppo_clip(logp, logp.detach(), adv, torch.zeros(2, 4))
    assert loss.item() == 0.0 and loss.requires_grad and m["ratio_max"] == 0.0
