"""The data that flows between components: requests, completions, weight payloads, train batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SamplingParams:
    n: int = 1
    max_new_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)


@dataclass
class Request:
    """Generate `n` samples for one prompt (n overrides SamplingParams.n when set)."""

    prompt_ids: list[int]
    n: int | None = None
    key: Any = None  # caller's handle, e.g. the prompt's index in the step batch


@dataclass
class Completion:
    key: Any
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    logprobs: list[float]  # of the sampled tokens, under the temperature-scaled policy
    finish_reason: str  # "stop" (EOS or stop string) | "length"
    policy_version: int


@dataclass
class WeightPayload:
    """Weights for a rollout engine: one flat float32 buffer plus (name, shape, offset) specs.

    One numpy buffer moves through Ray's object store zero-copy (pickled tensors are ~10x slower).
    """

    version: int
    buffer: np.ndarray
    specs: list[tuple[str, tuple[int, ...], int]]
    # Only some tensors: the rest did not change since the last sync (engines that can, apply just these).
    partial: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def tensors(self):
        import warnings

        import torch

        with warnings.catch_warnings():  # read-only buffers from the object store; we only read them
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.from_numpy(self.buffer)
        for name, shape, offset in self.specs:
            n = int(np.prod(shape)) if shape else 1
            yield name, flat[offset : offset + n].view(shape)


@dataclass
class TrainSample:
    prompt_ids: list[int]
    token_ids: list[int]
    rollout_logprobs: list[float]
    advantage: float
    weight: float = 1.0  # per-sample loss weight (a selector may down-weight)
    policy_version: int = 0


@dataclass
class TrainBatch:
    samples: list[TrainSample]
    temperature: float = 1.0
    max_new_tokens: int = 16
