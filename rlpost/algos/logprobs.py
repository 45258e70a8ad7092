"""Token log-probs and entropies from logits, chunked over the batch to bound memory.

Logits are [B, T, V] with V ~ 1e5, so every full-size temporary is large. Both functions work
on row chunks of at most ``chunk_elems`` logits, upcast to float32 per chunk. Without grad, at
most a few chunk-sized temporaries are alive at once; with grad, autograd keeps one float copy
of each chunk for the backward pass, i.e. at most one extra [B, T, V] float tensor in total.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

DEFAULT_CHUNK_ELEMS = 1 << 26  # 64M logits = 256 MiB in float32


def _scaled_chunks(logits: Tensor, temperature: float, chunk_elems: int) -> Iterator[tuple[slice, Tensor]]:
    """Yield (row slice, float32 logits / temperature) for row chunks of ``logits``."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits [B, T, V], got {tuple(logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, t, v = logits.shape
    rows = max(1, chunk_elems // max(1, t * v))
    for start in range(0, b, rows):
        rs = slice(start, start + rows)
        z = logits[rs].float()  # a view when already float32
        yield rs, z if temperature == 1.0 else z / temperature


def token_logprobs(
    logits: Tensor, targets: Tensor, temperature: float = 1.0, *, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> Tensor:
    """``log_softmax(logits / temperature)[b, t, targets[b, t]]`` as [B, T] float32.

    Computed as ``z[target] - logsumexp(z)`` with ``z = logits / temperature``, so no
    normalised [B, T, V] tensor is built.
    """
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"expected targets {tuple(logits.shape[:2])}, got {tuple(targets.shape)}")
    out = []
    for rs, z in _scaled_chunks(logits, temperature, chunk_elems):
        picked = z.gather(-1, targets[rs].long().unsqueeze(-1)).squeeze(-1)
        out.append(picked - torch.logsumexp(z, dim=-1))
    return torch.cat(out) if out else logits.new_zeros(logits.shape[:2], dtype=torch.float32)


def entropy_from_logits(
    logits: Tensor, temperature: float = 1.0, *, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> Tensor:
    """``H = -sum_v p_v log p_v = logsumexp(z) - sum_v p_v z_v`` as [B, T] float32.

    ``p = softmax(z)`` and ``z = logits / temperature``.
    """
    out = []
    for _, z in _scaled_chunks(logits, temperature, chunk_elems):
        p = torch.softmax(z, dim=-1)
        out.append(torch.logsumexp(z, dim=-1) - (p * z).sum(-1))
    return torch.cat(out) if out else logits.new_zeros(logits.shape[:2], dtype=torch.float32)
