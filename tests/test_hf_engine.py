"""HF rollout engine: sampling contract, stop conditions, logprob parity, weight loading, RNG state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpost.models.forward import completion_logprobs
from rlpost.rollout.hf_engine import HFEngine
from tests.engine_contract import check_n_samples_in_request_order, prompts
from rlpost.types import Request, SamplingParams, WeightPayload


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    return HFEngine(tiny_model_path, seed=0)



def test_n_samples_per_prompt_in_request_order(engine):
    check_n_samples_in_request_order(engine)


def test_sampled_logprobs_match_a_forward_pass_with_mixed_prompt_lengths(engine):
    out = engine.generate(prompts(engine, ["1+2=", "33+44=", "hello world, 5+5="]), SamplingParams(n=4, max_new_tokens=8))
    seqs = [(c.prompt_ids, c.token_ids) for c in out]
    recomputed = engine.logprobs(seqs)
    diff = max(abs(a - b) for c, r in zip(out, recomputed) for a, b in zip(c.logprobs, r))
    assert diff < 1e-4


def test_temperature_scales_logprobs(engine):
    out = engine.generate(prompts(engine, ["12+3="]), SamplingParams(n=4, max_new_tokens=6, temperature=0.7))
    recomputed = engine.logprobs([(c.prompt_ids, c.token_ids) for c in out], temperature=0.7)
    assert max(abs(a - b) for c, r in zip(out, recomputed) for a, b in zip(c.logprobs, r)) < 1e-4


def test_greedy_is_deterministic_and_matches_argmax(engine):
    sp = SamplingParams(n=1, max_new_tokens=6, temperature=0)
    a = engine.generate(prompts(engine, ["7+8=", "10+20="]), sp)
    b = engine.generate(prompts(engine, ["7+8=", "10+20="]), sp)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    p = a[0].prompt_ids
    with torch.no_grad():
        logits = engine.model(torch.tensor([p])).logits[0, -1]
    assert a[0].token_ids[0] == int(logits.argmax())


def test_eos_stops_and_is_kept(tiny_model_path):
    eng = HFEngine(tiny_model_path, seed=0)
    eos = eng.tokenizer.eos_token_id

    def favour_eos(module, args, kwargs, output):  # make EOS the argmax at every position
        output.logits[..., eos] += 1e4
        return output

    eng.model.register_forward_hook(favour_eos, with_kwargs=True)
    out = eng.generate(prompts(eng, ["1+1=", "22+3="]), SamplingParams(n=2, max_new_tokens=5, temperature=0))
    assert all(c.token_ids == [eos] and c.finish_reason == "stop" and c.text == "" for c in out)


def test_stop_strings_end_generation_and_are_cut_from_text(engine):
    sp = SamplingParams(n=1, max_new_tokens=12, temperature=0)
    full = engine.generate(prompts(engine, ["4+4="]), sp)[0]
    if len(full.text) < 3:
        pytest.skip("greedy text too short to place a stop string")
    stop = full.text[1:3]
    cut = engine.generate(prompts(engine, ["4+4="]), SamplingParams(n=1, max_new_tokens=12, temperature=0, stop=[stop]))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert len(cut.token_ids) <= len(full.token_ids)


def test_top_k_one_equals_greedy(engine):
    reqs = prompts(engine, ["9+9="])
    g = engine.generate(reqs, SamplingParams(n=1, max_new_tokens=6, temperature=0))[0]
    k1 = engine.generate(reqs, SamplingParams(n=3, max_new_tokens=6, temperature=1.0, top_k=1))
    assert all(c.token_ids == g.token_ids for c in k1)


def test_rng_state_restores_the_same_samples(engine):
    sp = SamplingParams(n=4, max_new_tokens=6)
    state = engine.state_dict()
    a = engine.generate(prompts(engine, ["3+4="]), sp)
    engine.load_state_dict(state)
    b = engine.generate(prompts(engine, ["3+4="]), sp)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]


def test_load_weights_changes_outputs_and_version(tiny_model_path):
    eng = HFEngine(tiny_model_path)
    src = HFEngine(tiny_model_path)
    with torch.no_grad():
        for p in src.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    params = list(src.model.named_parameters())
    buf = np.concatenate([p.detach().reshape(-1).numpy() for _, p in params]).astype(np.float32)
    specs, off = [], 0
    for name, p in params:
        specs.append((name, tuple(p.shape), off))
        off += p.numel()
    eng.load_weights(WeightPayload(version=3, buffer=buf, specs=specs))
    assert eng.version == 3
    seq = [(eng.tokenizer("1+1=").input_ids, [5, 6, 7])]
    assert eng.logprobs(seq)[0] == pytest.approx(src.logprobs(seq)[0], abs=1e-6)
    with pytest.raises(KeyError, match="does not exist"):
        eng.load_weights(WeightPayload(version=4, buffer=buf[:4], specs=[("nope.weight", (4,), 0)]))


def test_forward_layout_matches_unpadded_forward(tiny_model_path):
    eng = HFEngine(tiny_model_path)
    prompts_ = [[5, 6, 7], [8]]
    comps = [[9, 10], [11, 12, 13]]
    logp, mask, _ = completion_logprobs(eng.model, prompts_, comps, eng.pad_id)
    for i, (p, c) in enumerate(zip(prompts_, comps)):
        with torch.no_grad():
            logits = eng.model(torch.tensor([p + c])).logits[0, len(p) - 1 : -1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        assert torch.allclose(logp[i, : len(c)], ref, atol=1e-5)
        assert mask[i].sum() == len(c)
