"""Checks of the rollout-engine contract shared by the HF and vLLM engine tests."""
from __future__ import annotations

from rlpost.types import Request, SamplingParams


def prompts(engine, texts: list[str]) -> list[Request]:
    return [Request(engine.tokenizer(t, add_special_tokens=False).input_ids, key=i) for i, t in enumerate(texts)]


def check_n_samples_in_request_order(engine) -> None:
    """n per request (a request may override it), grouped in request order, with consistent fields."""
    reqs = prompts(engine, ["1+2=", "33+44=", "5="])
    reqs[2].n = 2
    out = engine.generate(reqs, SamplingParams(n=3, max_new_tokens=5))
    assert [c.key for c in out] == [0, 0, 0, 1, 1, 1, 2, 2]
    for c in out:
        assert 1 <= len(c.token_ids) <= 5 and len(c.logprobs) == len(c.token_ids)
        assert c.finish_reason in ("stop", "length") and c.policy_version == engine.version
        assert all(lp <= 0 for lp in c.logprobs)
        assert c.prompt_ids == reqs[c.key].prompt_ids
