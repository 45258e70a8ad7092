import pytest
import torch

from rlpost.algos import AGGREGATIONS


def _case():
    x = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 6.0, 7.0], [9.0, 9.0, 9.0, 9.0]], requires_grad=True)
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    return x, m


def test_names():
    assert AGGREGATIONS.names() == ["seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean"]


def test_token_mean():
    x, m = _case()
    agg = AGGREGATIONS.get("token-mean")
    torch.testing.assert_close(agg(x, m), torch.tensor(15.0 / 5))
    torch.testing.assert_close(agg(x, m, norm=10), torch.tensor(1.5))


def test_token_mean_reinforce_ada_example():
    # advantages +0.75 (3 tokens) and -0.25 (5 tokens), ratio 1: loss = -(3*0.75 - 5*0.25)/8
    per_token = -torch.tensor([[0.75] * 3 + [0.0] * 2, [-0.25] * 5])
    mask = torch.tensor([[1.0] * 3 + [0.0] * 2, [1.0] * 5])
    torch.testing.assert_close(AGGREGATIONS.get("token-mean")(per_token, mask), torch.tensor(-0.125))


def test_seq_mean_token_mean_skips_empty_rows():
    x, m = _case()
    agg = AGGREGATIONS.get("seq-mean-token-mean")
    torch.testing.assert_close(agg(x, m), torch.tensor((2.0 + 4.5) / 2))
    torch.testing.assert_close(agg(x, m, norm=4), torch.tensor((2.0 + 4.5) / 4))


def test_seq_mean_token_sum_norm():
    x, m = _case()
    agg = AGGREGATIONS.get("seq-mean-token-sum-norm")
    torch.testing.assert_close(agg(x, m), torch.tensor(15.0 / (2 * 4)))
    torch.testing.assert_close(agg(x, m, max_len=10), torch.tensor(15.0 / (2 * 10)))
    torch.testing.assert_close(agg(x, m, norm=3, max_len=10), torch.tensor(15.0 / 30))


def test_micro_batches_with_global_norm_sum_to_full_batch():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    m = (torch.rand(6, 5, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    m[:, 0] = 1
    for name, norm in [("token-mean", m.sum()), ("seq-mean-token-mean", 6), ("seq-mean-token-sum-norm", 6)]:
        agg = AGGREGATIONS.get(name)
        parts = agg(x[:2], m[:2], norm=norm) + agg(x[2:], m[2:], norm=norm)
        torch.testing.assert_close(parts, agg(x, m))


def test_weighted_mask():
    x = torch.tensor([[2.0, 4.0]])
    w = torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(AGGREGATIONS.get("token-mean")(x, w), torch.tensor(3.5))


@pytest.mark.parametrize("name", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_empty_mask_is_zero_with_grad(name):
    x = torch.randn(2, 3, requires_grad=True)
    loss = AGGREGATIONS.get(name)(x, torch.zeros(2, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(x.grad == 0)


def test_masked_tokens_get_no_gradient():
    x, m = _case()
    AGGREGATIONS.get("token-mean")(x, m).backward()
    torch.testing.assert_close(x.grad, m / 5)
