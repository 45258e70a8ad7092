"""Forward passes over (prompt, completion) pairs shared by the learner and the engines.

Layout: prompts left-padded to P, completions right-padded to T, so every completion starts
at column P and `logits_to_keep=T+1` skips the LM head on prompt positions.

GRPO batches hold n completions of each prompt. With ``share_prefix`` each distinct prompt runs
through the model once; its KV cache is then indexed out to every row that shares it and the
completions run on top. Same logprobs and gradients (autograd sums the rows' contributions to
the shared prompt) for roughly ``P / n`` of the prompt compute: the win grows with prompt length.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch

from rlpost.algos.logprobs import entropy_from_logits, token_logprobs



def with_cache(model, cache) -> dict:
    """The forward keyword that passes a KV cache: ``cache`` where the model's forward has it (transformers
    5.24 renamed ``past_key_values``, and warns on the old name), ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper takes **kwargs
    return {"cache" if "cache" in _forward_parameters(type(base)) else "past_key_values": cache}


@functools.cache
def _forward_parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


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
    share_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs [B, T] of the completion tokens (and their mask, and entropy)."""
    logits, targets, mask = completion_logits(model, prompts, completions, pad_id, share_prefix)
    logp = token_logprobs(logits, targets, temperature=temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits.detach(), temperature=temperature)
    return logp, mask, entropy


def completion_logits(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    share_prefix: bool = True,
    reads: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp32 logits [B, T, V] predicting each completion token, the targets [B, T] and their mask [B, T]
    (the vocabulary head runs on the completion positions only). ``reads``: prompt offsets c < 0 whose
    logits are also wanted (the position ``c`` before the one predicting the completion's first token);
    they come first, in the order given, so the logits are [B, len(reads) + T, V]. Only those positions
    pay for the head, not the whole prompt after the earliest one."""
    device = next(model.parameters()).device
    unique, row_of = unique_prompts(prompts)
    if share_prefix and not reads and len(unique) < len(prompts) and supports_shared_prefix(model):
        logits, targets, mask = _shared_prefix_logits(model, unique, row_of, completions, pad_id, device)
    else:
        input_ids, attention_mask, position_ids, targets, mask = build_inputs(prompts, completions, pad_id)
        P, T = input_ids.shape[1] - targets.shape[1], targets.shape[1]
        keep: int | torch.Tensor = T + 1
        if reads:  # every row is flush right at P (left padding), so an offset is one column for all rows
            keep = torch.tensor([P - 1 + c for c in reads] + list(range(P - 1, P + T)), device=device)
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            use_cache=False,
            logits_to_keep=keep,
        )
        logits = out.logits[:, :-1, :].float()
    return logits, targets.to(device), mask.to(device)


def read_logits(model, prompts: Sequence[Sequence[int]], reads: Sequence[Sequence[int]], choices: Sequence[Sequence[int]],
                pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over the distinct left-padded prompts (the n samples of a prompt share its pass), the
    vocabulary head at the read positions only: fp32 logits [B, R, C] of each row's ``choices`` (C of them, the
    same count in every row) at its prompt positions ``reads`` (R: the most reads of a row), and their mask [B, R]."""
    device = next(model.parameters()).device
    unique, row_of = unique_prompts(prompts)
    ids, attn = left_pad(unique, pad_id)
    cols = [[ids.shape[1] - len(p) + q for q in r] for p, r in zip(prompts, reads)]
    keep = sorted({c for row in cols for c in row})
    logits = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=(attn.cumsum(-1) - 1).clamp(min=0).to(device),
                   use_cache=False, logits_to_keep=torch.tensor(keep, device=device)).logits.float()
    R, C = max(len(r) for r in reads), len(choices[0])
    out, mask = logits.new_zeros(len(prompts), R, C), torch.zeros(len(prompts), R, device=device)
    where = {c: i for i, c in enumerate(keep)}
    for b, (row, ch) in enumerate(zip(cols, choices)):
        out[b, : len(row)] = logits[row_of[b], [where[c] for c in row]][:, list(ch)]
        mask[b, : len(row)] = 1.0
    return out, mask


def read_logprobs(
    model, prompts: Sequence[Sequence[int]], reads: Sequence[Sequence[int]], tokens: Sequence[Sequence[int]],
    choices: Sequence[Sequence[int]], pad_id: int, temperature: float = 1.0, with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-read logprobs [B, R] of ``tokens[b][j]`` chosen at prompt position ``reads[b][j]`` among
    ``choices[b]`` (the temperature-scaled distribution renormalised over them), their mask, and that
    distribution's entropy when asked: ``completion_logprobs`` for samples that are choices in the prompt."""
    logits, mask = read_logits(model, prompts, reads, choices, pad_id)
    logp_all = torch.log_softmax(logits / temperature, dim=-1)
    index = torch.zeros(mask.shape, dtype=torch.long, device=logits.device)
    for b, (toks, ch) in enumerate(zip(tokens, choices)):
        at = {t: i for i, t in enumerate(ch)}
        index[b, : len(toks)] = torch.tensor([at[t] for t in toks], dtype=torch.long)
    logp = logp_all.gather(-1, index[..., None]).squeeze(-1) * mask
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1) * mask
    return logp, mask, entropy


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask [B, P] with every prompt flush right."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p) :] = 1
    return ids, mask


def unique_prompts(prompts: Sequence[Sequence[int]]) -> tuple[list[Sequence[int]], list[int]]:
    """Distinct prompts in first-seen order, and for every row the index of its prompt among them."""
    index: dict[tuple[int, ...], int] = {}
    row_of = [index.setdefault(tuple(p), len(index)) for p in prompts]
    unique: list[Sequence[int]] = [()] * len(index)
    for p, u in zip(prompts, row_of):
        unique[u] = p
    return unique, row_of


def supports_shared_prefix(model) -> bool:
    """Full attention in every layer: a sliding-window cache would drop the shared prompt's start."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(t == "full_attention" for t in layer_types)
    return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))


def _shared_prefix_logits(model, unique, row_of, completions, pad_id, device):
    """Logits [B, T, V] predicting each completion token: prompts once, completions on their cache."""
    from transformers.cache_utils import DynamicCache

    B, T = len(completions), max(max((len(c) for c in completions), default=0), 1)
    prompt_ids, prompt_mask = left_pad(unique, pad_id)
    comp_ids = torch.full((B, T), pad_id, dtype=torch.long)
    comp_mask = torch.zeros((B, T), dtype=torch.long)
    for i, c in enumerate(completions):
        if c:
            comp_ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            comp_mask[i, : len(c)] = 1
    rows = torch.tensor(row_of, dtype=torch.long)
    cache = DynamicCache()
    first = model(
        input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
        position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0).to(device),
        **with_cache(model, cache), use_cache=True, logits_to_keep=1,
    ).logits[rows.to(device)]  # [B, 1, V]: predicts each row's first completion token
    if T == 1:
        return first.float(), comp_ids, comp_mask.float()
    cache.batch_select_indices(rows.to(device))  # differentiable indexing: gradients flow back to the prompt
    attention_mask = torch.cat([prompt_mask[rows], comp_mask[:, : T - 1]], dim=-1)
    prompt_len = prompt_mask.sum(-1)[rows]
    position_ids = prompt_len[:, None] + torch.arange(T - 1)[None, :]
    rest = model(
        input_ids=comp_ids[:, : T - 1].to(device), attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device), **with_cache(model, cache), use_cache=True,
    ).logits
    return torch.cat([first, rest], dim=1).float(), comp_ids, comp_mask.float()


@torch.no_grad()
def next_token_logprobs(
    model, prompts: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16, then: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities [B, V] of the token after each prompt (the LM head on the last position only) and,
    with ``then``, [B, V] of the token after the prompt followed by ``then`` (one more step on the KV cache)."""
    from transformers.cache_utils import DynamicCache

    device = next(model.parameters()).device
    first, second = [], []
    for start in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[start : start + batch_size], pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache() if then is not None else None
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
            use_cache=then is not None, logits_to_keep=1, **({} if cache is None else with_cache(model, cache)),
        ).logits[:, -1, :]
        first.append(torch.log_softmax(logits.float(), dim=-1).cpu())
        if then is not None:
            step = torch.full((len(ids), 1), then, dtype=torch.long)
            logits = model(
                input_ids=step.to(device), attention_mask=torch.cat([mask, torch.ones_like(step)], dim=1).to(device),
                position_ids=(positions[:, -1:] + 1).to(device), use_cache=True, **with_cache(model, cache),
            ).logits[:, -1, :]
            second.append(torch.log_softmax(logits.float(), dim=-1).cpu())
    return torch.cat(first), torch.cat(second) if then is not None else None
