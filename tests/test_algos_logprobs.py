import pytest
import torch

from rlpost.algos import entropy_from_logits, token_logprobs


def _case(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(5, 4, 11, generator=g)).to(dtype)
    targets = torch.randint(0, 11, (5, 4), generator=g)
    return logits, targets


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_elems", [1, 44 * 2, 10**9])
def test_token_logprobs_matches_naive(temperature, chunk_elems):
    logits, targets = _case()
    naive = torch.log_softmax(logits / temperature, -1).gather(-1, targets[..., None]).squeeze(-1)
    out = token_logprobs(logits, targets, temperature, chunk_elems=chunk_elems)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, naive)


@pytest.mark.parametrize("temperature", [1.0, 1.3])
@pytest.mark.parametrize("chunk_elems", [1, 10**9])
def test_entropy_matches_naive(temperature, chunk_elems):
    logits, _ = _case()
    logp = torch.log_softmax(logits / temperature, -1)
    naive = -(logp.exp() * logp).sum(-1)
    torch.testing.assert_close(entropy_from_logits(logits, temperature, chunk_elems=chunk_elems), naive)


def test_uniform_entropy_and_logprob():
    logits = torch.zeros(2, 3, 8)
    log8 = torch.full((2, 3), torch.log(torch.tensor(8.0)).item())
    torch.testing.assert_close(entropy_from_logits(logits), log8)
    torch.testing.assert_close(token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long)), -log8)


def test_gradients_match_naive_across_chunks():
    logits, targets = _case()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    token_logprobs(a, targets, 0.8, chunk_elems=44).sum().backward()
    torch.log_softmax(b / 0.8, -1).gather(-1, targets[..., None]).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_bfloat16_logits_are_upcast():
    logits, targets = _case(torch.bfloat16)
    out = token_logprobs(logits, targets)
    assert out.dtype == torch.float32
    naive = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(out, naive)
    assert entropy_from_logits(logits).dtype == torch.float32


def test_bad_inputs():
    logits, targets = _case()
    with pytest.raises(ValueError):
        token_logprobs(logits, targets[:, :2])
    with pytest.raises(ValueError):
        token_logprobs(logits, targets, temperature=0.0)
