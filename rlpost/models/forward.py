"""Forward passes over (prompt, completion) pairs shared by the learner and the engines.

Layout: prompts left-padded to P, completions right-padded to T, so every completion starts
at column P and `logits_to_keep=T+1` skips the LM head on prompt positions.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from rlpost.algos.logprobs import entropy_from_logits, token_logprobs


def build_inputs(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return input_ids, attention_mask, position_ids [B, P+T], targets and completion mask [B, T]."""
    P = max(len(p) for p in prompts)
    T = max(max((len(c) for c in completions), default=0), 1)
    B = len(prompts)
    input_ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, P + T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        input_ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        attention_mask[i, P - len(p) : P] = 1
        if c:
            input_ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
            attention_mask[i, P : P + len(c)] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    targets = input_ids[:, P:]
    mask = attention_mask[:, P:].float()
    return input_ids, attention_mask, position_ids, targets, mask


def completion_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs [B, T] of the completion tokens (and their mask, and entropy)."""
    input_ids, attention_mask, position_ids, targets, mask = build_inputs(prompts, completions, pad_id)
    T = targets.shape[1]
    device = next(model.parameters()).device
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        use_cache=False,
        logits_to_keep=T + 1,
    )
    logits = out.logits[:, :-1, :].float()
    logp = token_logprobs(logits, targets.to(device), temperature=temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits.detach(), temperature=temperature)
    return logp, mask.to(device), entropy
