"""Shared-prefix forward: each distinct prompt runs once, completions run on its cache.

It must give the plain forward's logprobs, entropies and gradients (autograd sums the group's
contributions to the shared prompt), and fall back where a cache cannot be shared."""
from __future__ import annotations

import random

import pytest
import torch

from rlpost.models.forward import completion_logprobs, supports_shared_prefix, unique_prompts
from rlpost.models.loading import load_model


def test_unique_prompts_keeps_first_seen_order():
    unique, row_of = unique_prompts([[5, 6], [7], [5, 6], [7], [8, 9, 1]])
    assert unique == [[5, 6], [7], [8, 9, 1]]
    assert row_of == [0, 1, 0, 1, 2]


def grouped_batch(seed: int = 0, groups: int = 4, n: int = 3):
    rng = random.Random(seed)
    prompts, comps = [], []
    for _ in range(groups):
        p = [rng.randint(3, 60) for _ in range(rng.randint(2, 7))]  # prompts of different lengths
        for _ in range(n):
            prompts.append(p)
            comps.append([rng.randint(3, 60) for _ in range(rng.randint(1, 5))])
    comps[0] = comps[0][:1]  # a one-token completion: its logit comes from the prompt pass alone
    return prompts, comps


@pytest.mark.parametrize("fixture", ["tiny_model_path", "tiny_untied_model_path"])
def test_shared_prefix_matches_the_plain_forward_and_its_gradients(fixture, request):
    model = load_model(request.getfixturevalue(fixture), "float32").train()
    prompts, comps = grouped_batch()
    weights = torch.randn(len(prompts), 5, generator=torch.Generator().manual_seed(1))
    out = {}
    for share in (False, True):
        model.zero_grad()
        logp, mask, ent = completion_logprobs(model, prompts, comps, 0, temperature=0.7, with_entropy=True, share_prefix=share)
        (logp * mask * weights[:, : logp.shape[1]]).sum().backward()
        out[share] = (logp * mask, ent * mask, mask, {k: p.grad.clone() for k, p in model.named_parameters()})
    assert torch.equal(out[False][2], out[True][2])
    assert torch.allclose(out[False][0], out[True][0], atol=2e-5)
    assert torch.allclose(out[False][1], out[True][1], atol=2e-5)
    for name, g in out[False][3].items():
        assert torch.allclose(g, out[True][3][name], atol=1e-5, rtol=1e-4), name


def test_sliding_window_models_do_not_share():
    from types import SimpleNamespace as NS

    assert supports_shared_prefix(NS(config=NS(layer_types=["full_attention"] * 2)))
    assert not supports_shared_prefix(NS(config=NS(layer_types=["full_attention", "sliding_attention"])))
    assert not supports_shared_prefix(NS(config=NS(sliding_window=4096, use_sliding_window=True)))
    assert supports_shared_prefix(NS(config=NS(sliding_window=4096, use_sliding_window=False)))


def test_distinct_prompts_take_the_plain_path(tiny_model_path):
    model = load_model(tiny_model_path, "float32")
    prompts, comps = grouped_batch(n=1)
    a = completion_logprobs(model, prompts, comps, 0)[0]
    b = completion_logprobs(model, prompts, comps, 0, share_prefix=False)[0]
    assert torch.equal(a, b)  # bitwise: nothing to share, so the same computation


def test_reads_give_the_logits_at_those_prompt_positions_only(tiny_model_path):
    """GroupRank's block scores are read in the prompt: ``reads`` (offsets < 0 from the completion's start) put
    the head at those positions of every left-padded row, first and in the order given, then the completion's."""
    from rlpost.models.forward import completion_logits

    model = load_model(tiny_model_path, "float32").eval()
    prompts, comps = [[5, 9, 14, 3, 22, 7, 11], [8, 4, 19, 6]], [[30, 31], [40]]
    reads = [-3, -1, -2]
    with torch.no_grad():
        logits, targets, mask = completion_logits(model, prompts, comps, 0, reads=reads)
        plain, _, _ = completion_logits(model, prompts, comps, 0)
        assert logits.shape[1] == len(reads) + plain.shape[1]
        assert torch.allclose(logits[:, len(reads):], plain, atol=1e-5)
        for row, (p, c) in enumerate(zip(prompts, comps)):
            alone = model(input_ids=torch.tensor([p + c])).logits[0].float()
            for col, r in enumerate(reads):  # offset r: the position predicting the token r before the completion
                assert torch.allclose(logits[row, col], alone[len(p) - 1 + r], atol=1e-4)
