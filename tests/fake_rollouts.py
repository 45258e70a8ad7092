"""Prompt items and scored completions with given rewards, for sampler tests without a model."""
from __future__ import annotations

from rlpost.types import Completion, PromptItem, Scored


def items(n: int) -> list[PromptItem]:
    """n prompts; key and dataset index are both the position."""
    return [PromptItem(k, k, {"question": f"q{k}", "answer": "1"}, [1, 2, k + 3], f"q{k}") for k in range(n)]


def scored(key: int, rewards: list[float], start: int = 0) -> list[Scored]:
    """Completions of prompt ``key`` with these rewards; token ids encode the draw order (start + i)."""
    out = []
    for i, r in enumerate(rewards):
        c = Completion(key, [1, 2, key + 3], [start + i], f"s{start + i}", [-0.5], "stop", 0)
        out.append(Scored(c, float(r), {"correctness": float(r)}, bool(r > 0)))
    return out
